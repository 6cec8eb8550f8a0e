"""V2-TSM: AdaFocusV2's two-stream Something-Something model (METHOD.md V2-6).

A TSM glance net sees Tg whole frames, a TSM focus net one patch of each
of Tf other frames, all at the same continuous position chosen once per
video by ``VideoPositionPolicy`` from the stop-gradient glance maps. Each
net has two linear heads after a shared dropout: ``head`` (the official
``new_fc``) reads the pooled feature with its gradient stopped, ``aux_head``
(``new_new_fc``) the feature itself. The prediction is the mean over frames
of the glance ``head`` plus the mean over patches of the focus ``head``, so
the backbones learn only through the ``aux_head`` losses and the policy only
through the focus ``aux_head`` loss of its branch (``V2TwoStreamRecognizer``).

It offers the two-stream model's interface (``two_stream.py``:
``glance_features``, ``glance_logits``, ``focus_logits``, ``combine``,
``head_logits``, ``glance_only_probs``), so ``TwoStreamRecognizer``'s
inference serves it.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import adafocus_v2
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.models import precision
from adafocus_tf.models import two_stream
from adafocus_tf.policy import video_position_policy

_GLANCE_DROPOUT_STREAM = 2
_FOCUS_DROPOUT_STREAM = 3


def _mean_heads(head, aux_head, pooled, rate, seeds, stream, training):
  """(mean ``head`` logits on the detached feature, mean ``aux_head``) [B, C].
  """
  pooled = adafocus_v2.head_dropout(pooled, rate, seeds, stream, training)
  return (tf.reduce_mean(head(tf.stop_gradient(pooled)), axis=1),
          tf.reduce_mean(aux_head(pooled), axis=1))


class TwoStreamAdaFocusV2(tf.keras.Model):
  """TSM glance and focus nets with two heads each, and the position policy.

  Args:
    cfg: the experiment config (``model.variant = v2_tsm``).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d = cfg.model, cfg.data
    self.frame_size = d.frame_size
    self.patch_size = m.patch_size
    self.glance_frames = d.glance_frames
    self.focus_frames = d.focus_frames
    self.rate = m.head_dropout
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(
        m.focus_backbone, d.num_classes, m.focus_weights,
        **two_stream.temporal_shift_args(m, d.focus_frames))
    self.glance_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=precision.output_dtype(), name="glance_aux_head")
    self.focus_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=precision.output_dtype(), name="focus_aux_head")
    self.policy = video_position_policy.VideoPositionPolicy(
        m.policy_conv_channels, m.policy_mlp)

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    maps, pooled = self.glance_features(
        tf.zeros([1, self.glance_frames, s, s, 3]))
    self.glance_means(pooled)
    self.focus_means(tf.zeros([1, self.focus_frames, s, s, 3]),
                     self.policy_offsets(maps))

  def glance_features(self, glance_frames, training=False):
    """Maps [B, Tg, h, w, C] and pooled [B, Tg, C] of the glance frames."""
    return adafocus.video_glance(self.glance, glance_frames, training)

  def policy_offsets(self, maps, training=False):
    """The real-valued patch offset [B, 1, 2] of each video (float32).

    Args:
      maps: [B, Tg, h, w, C] glance maps (gradient stopped).
      training: batch-norm mode of the policy.
    """
    return patches.continuous_offsets(self.policy(maps, training=training),
                                      self.frame_size, self.patch_size)

  def _focus_pooled(self, focus_frames, offsets, training):
    return adafocus.video_focus(self.focus, focus_frames, offsets,
                                self.patch_size, training)

  def glance_means(self, pooled, seeds=None, training=False):
    """The glance stream's (mean ``head``, mean ``aux_head``) logits [B, C].

    What V2-TSM's loss reads of the glance, once per batch: both branches
    share it (one dropout mask), as the official model runs its glance
    once.

    Args:
      pooled: [B, Tg, C] pooled glance features.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
    """
    return _mean_heads(self.glance.head, self.glance_aux_head, pooled,
                       self.rate, seeds, _GLANCE_DROPOUT_STREAM, training)

  def focus_means(self, focus_frames, offsets, seeds=None, training=False,
                  batchnorm=None):
    """The focus stream's (mean ``head``, mean ``aux_head``) logits [B, C]
    on one set of patches: what one branch of the loss reads.

    Args:
      focus_frames: [B, Tf, S, S, 3].
      offsets: [B, 1, 2] (float: bilinear) or [B, Tf, 2].
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: every part in training mode, except batch norm when
        ``batchnorm`` says otherwise.
      batchnorm: the focus net's batch-norm mode (None: ``training``).
    """
    batchnorm = training if batchnorm is None else batchnorm
    return _mean_heads(
        self.focus.head, self.focus_aux_head,
        self._focus_pooled(focus_frames, offsets, batchnorm), self.rate,
        seeds, _FOCUS_DROPOUT_STREAM, training)

  # -- the two-stream inference interface -----------------------------------
  def glance_logits(self, pooled, seeds=None, training=False):
    """[B, C]: the glance ``head``'s logits averaged over the glance frames."""
    return self.glance_means(pooled, seeds, training)[0]

  def focus_logits(self, focus_frames, offsets, seeds=None, training=False,
                   train_focus=None):
    """[B, C]: the focus ``head``'s logits averaged over the patches."""
    train_focus = training if train_focus is None else train_focus
    pooled = self._focus_pooled(focus_frames, offsets, train_focus)
    return _mean_heads(self.focus.head, self.focus_aux_head, pooled,
                       self.rate, seeds, _FOCUS_DROPOUT_STREAM, training)[0]

  def combine(self, glance_logits, focus_logits):
    """The prediction [B, 1, C] from the two [B, C] means."""
    return (glance_logits + focus_logits)[:, None, :]

  def head_logits(self, pooled, focus_frames, offsets, seeds=None,
                  training=False, train_focus=None):
    """The prediction [B, 1, C] after the glance."""
    return self.combine(
        self.glance_logits(pooled, seeds, training),
        self.focus_logits(focus_frames, offsets, seeds, training,
                          train_focus))

  def call(self, glance_frames, focus_frames, offsets=None, seeds=None,
           training=False):
    """The prediction [B, 1, C] (Keras' entry); the policy's patch by default.
    """
    maps, pooled = self.glance_features(glance_frames)
    if offsets is None:
      offsets = self.policy_offsets(maps)
    return self.head_logits(pooled, focus_frames, offsets, seeds, training)

  def glance_only_probs(self, pooled):
    """[B, 1, C]: the glance net alone, its ``aux_head`` (trained alone)."""
    return tf.nn.softmax(tf.reduce_mean(self.glance_aux_head(pooled),
                                        axis=1))[:, None, :]

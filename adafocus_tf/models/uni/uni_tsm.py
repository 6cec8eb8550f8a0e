"""The Uni-AdaFocus network, TSM family (docs/METHOD.md V2-6, V2-11.4).

Two frame streams, as V2-TSM's: a TSM glance net reads the G frames of
``glance_frames``; ``focus_frames`` holds N candidate frames (TSN segments
of the same video, sampled on their own), of which the temporal policy
picks K for a TSM focus net. The spatial policy gives one deformable region
per video (its last convolution spans all G glance maps), cut from every
selected frame and resampled to P x P.

Each net has V2-TSM's two heads after one dropout: ``head`` (the official
``new_fc``) on the pooled feature with its gradient stopped, and
``*_aux_head`` (``new_new_fc``) on the feature itself. The prediction is
the mean over frames of the glance ``head`` plus the mean over patches of
the focus ``head``; the glance-only exit is the mean of the glance
``aux_head``'s per-frame logits. The temporal policy reads the (dropped,
as the official net's) pooled glance features with their gradient stopped,
and its Monte-Carlo objective the stopped per-frame ``aux_head`` logits;
the spatial policy learns through ``aux_head`` (the official ``aux_fc``)
on its region of the stopped glance maps (the policies, plan, regions and
patches are ``single_region.py``'s). The policies' training is
``families/uni_tsm/loss.py``'s.

Under mixed precision the whole forward is half precision but for what
the official ``archs/uni_adafocus_tsm.py`` runs with autocast off: the
policies (built in full precision, ``models/precision.py``), their
Monte-Carlo objective, the frame selection, the regions and the cut of
the glance maps for ``aux_head`` (docs/METHOD.md V2-11.4); every head's
logits are full precision too.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import precision
from adafocus_tf.models import two_stream
from adafocus_tf.models.adafocus_v2 import head_dropout
from adafocus_tf.models.uni import single_region

# Added to a video's seed for the glance and focus dropout masks (V2-TSM's).
GLANCE_DROPOUT_STREAM = 2
FOCUS_DROPOUT_STREAM = 3


class UniAdaFocusTSM(single_region.SingleRegionUni):
  """TSM glance and focus nets with two heads each, both policies and the
  spatial policy's auxiliary head (module doc).

  Args:
    cfg: the experiment config (``model.variant = uni_tsm``;
      ``data.glance_frames`` G, ``data.focus_frames`` N candidates,
      ``uni.focus_frames`` K).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(cfg, name)
    m, d, u = cfg.model, cfg.data, cfg.uni
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(
        m.focus_backbone, d.num_classes, m.focus_weights,
        **two_stream.temporal_shift_args(m, u.focus_frames))
    out = precision.output_dtype()
    self.glance_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=out, name="glance_aux_head")
    self.focus_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=out, name="focus_aux_head")
    # The spatial policy's auxiliary classifier (the official ``aux_fc``).
    self.aux_head = tf.keras.layers.Dense(d.num_classes, dtype=out,
                                          name="aux_head")
    self.add_policies(cfg, self.glance.map_shape[0])

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    maps, pooled = self.glance_features(
        tf.zeros([1, self.num_glance, s, s, 3]))
    plan = self.policy_plan(maps, pooled)
    self.glance_logits(pooled)
    self.spatial_aux_logits(maps, self.video_actions(maps))
    self.focus_logits(tf.zeros([1, self.num_candidates, s, s, 3]), plan)

  # -- glance -----------------------------------------------------------------
  def glance_features(self, glance_frames, training=False):
    """Maps [B, G, h, w, C] and pooled [B, G, C] of the glance frames."""
    return adafocus.video_glance(self.glance, glance_frames, training)

  def glance_dropout(self, pooled, seeds=None, training=False):
    """The glance features after the heads' dropout (training only): what
    both glance heads and, in training, the temporal policy read."""
    return head_dropout(pooled, self.rate, seeds, GLANCE_DROPOUT_STREAM,
                        training)

  def glance_heads(self, dropped):
    """(mean ``head`` logits on the stopped features [B, C], the
    ``glance_aux_head``'s per-frame logits [B, G, C]) of dropped features.
    """
    head = tf.reduce_mean(self.glance.head(tf.stop_gradient(dropped)), 1)
    return head, self.glance_aux_head(dropped)

  def glance_logits(self, pooled, seeds=None, training=False):
    """[B, C]: the glance ``head``'s logits averaged over the glance frames
    (the prediction's glance summand)."""
    return self.glance_heads(self.glance_dropout(pooled, seeds, training))[0]

  def glance_only_logits(self, pooled):
    """[B, C]: the glance-only exit, the mean of the ``glance_aux_head``'s
    per-frame logits (the one trained with the glance net)."""
    return tf.reduce_mean(self.glance_aux_head(pooled), axis=1)

  # -- focus ------------------------------------------------------------------
  def focus_features(self, candidates, plan, training=False):
    """Focus features [B, K, D] of the plan's patches."""
    feats = self.focus(self.patches(candidates, plan), training=training)
    return tf.reshape(feats, [tf.shape(plan)[0], -1, feats.shape[-1]])

  def focus_heads(self, feats, seeds=None, training=False):
    """(mean ``head`` logits on the stopped features, mean
    ``focus_aux_head`` logits), each [B, C], of focus features [B, K, D]."""
    dropped = head_dropout(feats, self.rate, seeds, FOCUS_DROPOUT_STREAM,
                           training)
    return (tf.reduce_mean(self.focus.head(tf.stop_gradient(dropped)), 1),
            tf.reduce_mean(self.focus_aux_head(dropped), 1))

  def focus_logits(self, candidates, plan, seeds=None, training=False,
                   train_focus=None):
    """[B, C]: the focus ``head``'s logits averaged over the plan's patches
    (the prediction's focus summand)."""
    train_focus = training if train_focus is None else train_focus
    feats = self.focus_features(candidates, plan, training=train_focus)
    return self.focus_heads(feats, seeds, training)[0]

  def head_logits(self, pooled, candidates, plan, seeds=None, training=False,
                  train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's
    (glance ``head`` mean + focus ``head`` mean)."""
    prediction = (self.glance_logits(pooled, seeds, training)
                  + self.focus_logits(candidates, plan, seeds, training,
                                      train_focus))
    glance_only = self.glance_only_logits(pooled)
    return tf.stack([tf.cast(glance_only, prediction.dtype), prediction], 1)

  def call(self, glance_frames, candidates, training=False):
    """[B, 2, C] (``head_logits``) of the policies' plan (Keras' entry)."""
    maps, pooled = self.glance_features(glance_frames)
    return self.head_logits(pooled, candidates,
                            self.policy_plan(maps, pooled))

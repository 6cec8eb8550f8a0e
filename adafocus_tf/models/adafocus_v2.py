"""The AdaFocusV2 network (docs/METHOD.md V2-2 to V2-4).

glance (every frame) -> recurrent position policy (stop-gradient glance
maps) -> patches at continuous positions (bilinear, differentiable) ->
focus -> ``FrameExitClassifier`` (a prediction after every step). The
policy is part of the model and is trained with it, end to end.

Frame order: the model takes clips in chronological order and reads their
frames in ``model.frame_order`` (coarse to fine for the V2 presets). Per-step
outputs (logits, glance maps and pooled features) are in reading order;
patch offsets are indexed by chronological frame, like every other model
family's, so that baselines (random, centre, the object box) and pictures
need not know the order.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import frame_exit
from adafocus_tf.models import frame_order as frame_order_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.policy import recurrent_position_policy

# Added to a video's seed for the dropout masks of the glance and focus
# heads, independent of the classifier's (the seed itself) and of random
# patches (+1, ``patch_choice``).
_GLANCE_HEAD_STREAM = 2
_FOCUS_HEAD_STREAM = 3


class HeadOutputs(NamedTuple):
  """What training reads after the glance for one set of patches.

  Attributes:
    logits: [B, T, C] the classifier's logits after each step.
    focus_logits: [B, T, C] the focus head on every patch.
  """
  logits: tf.Tensor
  focus_logits: tf.Tensor


def head_dropout(x, rate: float, seeds, stream: int, training: bool):
  """Dropout before a glance/focus head, its mask keyed by the video seed."""
  if not training:
    return x
  return classifier_lib.per_video_dropout(
      x, rate, seeds + tf.constant([stream, 0], seeds.dtype))


class AdaFocusV2(tf.keras.Model):
  """Glance net, position policy, focus net and classifier of a V2 config.

  Args:
    cfg: the experiment config (``model.variant = v2``).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d = cfg.model, cfg.data
    self.frame_size = d.frame_size
    self.patch_size = m.patch_size
    self.num_frames = d.num_frames
    self.head_rate = m.head_dropout
    self.order = frame_order_lib.frame_order(m.frame_order, d.num_frames)
    self.inverse_order = frame_order_lib.inverse(self.order)
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(m.focus_backbone, d.num_classes,
                                    m.focus_weights)
    self.policy = recurrent_position_policy.RecurrentPositionPolicy(
        m.policy_conv_channels, m.policy_hidden)
    self.classifier = frame_exit.FrameExitClassifier(
        d.num_classes, m.classifier_hidden, d.num_frames, m.dropout)

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    frames = tf.zeros([1, self.num_frames, s, s, 3])
    maps, pooled = self.glance_features(frames)
    offsets = self.policy_offsets(maps)
    self.glance_head_logits(pooled)
    self.head_outputs(pooled, frames, offsets)

  # -- frame order ----------------------------------------------------------
  def in_reading_order(self, x):
    """[B, T, ...] chronological -> the order the model reads frames in."""
    return tf.gather(x, self.order, axis=1)

  def in_frame_order(self, x):
    """[B, T, ...] in reading order -> chronological."""
    return tf.gather(x, self.inverse_order, axis=1)

  # -- the pipeline ---------------------------------------------------------
  def glance_features(self, frames, training=False):
    """Glance maps [B, T, h, w, C] and pooled [B, T, C], in reading order.

    Args:
      frames: [B, T, S, S, 3] chronological clips.
      training: batch-norm mode of the glance backbone.
    """
    return adafocus.video_glance(self.glance, self.in_reading_order(frames),
                                 training)

  def policy_offsets(self, maps, training=False):
    """The policy's real-valued patch offsets [B, T, 2], chronological.

    Args:
      maps: [B, T, h, w, C] glance maps in reading order
        (``glance_features``); their gradient is stopped.
      training: batch-norm mode of the policy.
    """
    positions = self.policy(maps, training=training)
    return self.in_frame_order(patches.continuous_offsets(
        positions, self.frame_size, self.patch_size))

  def focus_features(self, frames, offsets, training=False):
    """Focus features [B, T, D] in reading order.

    Args:
      frames: [B, T, S, S, 3] chronological.
      offsets: [B, T, 2] chronological top-left pixels, float (bilinear
        sampling, differentiable) or integer (exact crops).
      training: batch-norm mode of the focus backbone.
    """
    return adafocus.video_focus(self.focus, self.in_reading_order(frames),
                                self.in_reading_order(offsets),
                                self.patch_size, training)

  def head_logits(self, pooled, frames, offsets, seeds=None, training=False,
                  train_focus=None):
    """Per-step logits [B, T, C] after the glance (the recognizer's form).

    Args:
      pooled: [B, T, C] pooled glance features in reading order.
      frames: [B, T, S, S, 3] chronological.
      offsets: [B, T, 2] chronological.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
      train_focus: focus backbone in training mode; default ``training``.
    """
    train_focus = training if train_focus is None else train_focus
    f = self.focus_features(frames, offsets, training=train_focus)
    return self.classifier(adafocus.fuse(pooled, f), seeds, training=training)

  def glance_head_logits(self, pooled, seeds=None, training=False):
    """The glance head on every frame [B, T, C] (V2's auxiliary glance loss).

    Computed once per batch: both branches of the loss share it (one
    dropout mask), as the official model runs its glance once.

    Args:
      pooled: [B, T, C] pooled glance features in reading order.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
    """
    return self.glance.logits(head_dropout(
        pooled, self.head_rate, seeds, _GLANCE_HEAD_STREAM, training))

  def head_outputs(self, pooled, frames, offsets, seeds=None,
                   training=False, batchnorm=None) -> HeadOutputs:
    """Step and focus logits of one set of patches: what one branch of V2's
    loss reads (``HeadOutputs``).

    Args: as ``head_logits``; every part in training mode when
      ``training``, except batch norm when ``batchnorm`` says otherwise.
    """
    batchnorm = training if batchnorm is None else batchnorm
    f = self.focus_features(frames, offsets, training=batchnorm)
    logits = self.classifier(adafocus.fuse(pooled, f), seeds, training=training,
                             batchnorm=batchnorm)
    focus_logits = self.focus.logits(head_dropout(
        f, self.head_rate, seeds, _FOCUS_HEAD_STREAM, training))
    return HeadOutputs(logits, focus_logits)

  def step_logits(self, pooled, frame, offsets, state, step: int):
    """Reading step ``step``: logits [n, C] and the classifier's next state.

    Args:
      pooled: [n, C] this frame's pooled glance features.
      frame: [n, S, S, 3] the frame read at this step.
      offsets: [n, 2] its patch's top-left pixels.
      state: the classifier's running maximum after the previous step.
      step: the reading step (each has its own head).
    """
    crops = patches.extract_patches(frame[:, None], offsets[:, None],
                                    self.patch_size)
    focus = self.focus(crops, training=False)
    return self.classifier.step(adafocus.fuse(pooled, focus), state, step)

  def call(self, frames, offsets: Optional[tf.Tensor] = None, seeds=None,
           training=False):
    """Per-step logits [B, T, C] of chronological clips (Keras' entry).

    With ``offsets`` None, the policy's patches.
    """
    maps, pooled = self.glance_features(frames)
    if offsets is None:
      offsets = self.policy_offsets(maps)
    return self.head_logits(pooled, frames, offsets, seeds, training=training)

  def glance_only_probs(self, pooled):
    """Step probabilities [B, T, C] of the glance head alone.

    Its per-frame softmax averaged over the frames read so far (the "glance
    only" row of the results table).

    Args:
      pooled: [B, T, C] pooled glance features in reading order.
    """
    return adafocus.running_mean_probs(self.glance.logits(pooled))

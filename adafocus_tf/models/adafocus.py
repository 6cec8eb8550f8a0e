"""The whole AdaFocus network: glance -> (policy) -> patches -> focus -> classifier.

The policy lives in ``adafocus_tf.policy``; this model takes the patch
offsets as an input, so stages 1 and 3 and the evaluation of random, centre,
oracle or policy patches all run the same code.
"""
from typing import Optional

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import classifier_factory
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches


def video_glance(glance, frames, training=False):
  """A glance net on every frame of a batch of clips, in one call.

  The backbone sees the frames video-major ([B * T, ...], each video's
  frames contiguous), the layout a temporal shift expects.

  Args:
    glance: a ``GlanceNet``.
    frames: [B, T, S, S, 3].
    training: batch-norm mode of the glance backbone.

  Returns:
    (feature maps [B, T, h, w, C], pooled [B, T, C]).
  """
  shape = tf.shape(frames)
  b, t = shape[0], shape[1]
  fmap, pooled = glance(tf.reshape(frames, tf.concat([[b * t], shape[2:]], 0)),
                        training=training)
  fmap = tf.reshape(fmap, tf.concat([[b, t], tf.shape(fmap)[1:]], 0))
  # The static feature size, kept for layers that read it (a batch of
  # unknown size would otherwise leave the -1 unknown).
  return fmap, tf.reshape(pooled, [b, t, pooled.shape[-1] or -1])


def video_focus(focus, frames, offsets, patch_size: int, training=False):
  """A focus net on one patch of every frame, all patches in one call.

  Args:
    focus: a ``FocusNet``.
    frames: [B, T, S, S, 3].
    offsets: [B, T, 2] top-left patch pixels, or [B, 1, 2] (one location
      per video, cropped from every frame).
    patch_size: P.
    training: batch-norm mode of the focus backbone.

  Returns:
    [B, T, D] pooled focus features.
  """
  shape = tf.shape(frames)
  # Crops come video-major, as the temporal shift of a TSM focus net needs.
  crops = patches.extract_patches(frames, offsets, patch_size)
  feats = focus(crops, training=training)
  return tf.reshape(feats, [shape[0], shape[1], feats.shape[-1] or -1])


def fuse(glance_pooled, focus_pooled):
  """The classifier's input: glance and focus features side by side.

  Args:
    glance_pooled: [..., Dg] pooled glance features.
    focus_pooled: [..., Df] pooled focus features (their dtype is kept).
  """
  return tf.concat([tf.cast(glance_pooled, focus_pooled.dtype),
                    focus_pooled], -1)


def running_mean_probs(logits):
  """Per-step softmaxes [B, T, C] averaged over the steps read so far.

  Args:
    logits: [B, T, C] per-frame logits.
  """
  probs = tf.nn.softmax(logits)
  steps = tf.cast(tf.range(1, tf.shape(probs)[1] + 1), probs.dtype)
  return tf.cumsum(probs, axis=1) / steps[None, :, None]


class AdaFocus(tf.keras.Model):
  """Glance net, focus net and classifier of one experiment config.

  Args:
    cfg: the experiment config (model and data sections are read).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d = cfg.model, cfg.data
    self.frame_size = d.frame_size
    self.patch_size = m.patch_size
    self.num_frames = d.num_frames
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(m.focus_backbone, d.num_classes,
                                    m.focus_weights)
    self.classifier = classifier_factory.build_classifier(
        m.classifier, d.num_classes, m.classifier_hidden, m.dropout)
    if m.patch_size > d.frame_size:
      raise ValueError(f"patch_size {m.patch_size} exceeds frame_size "
                       f"{d.frame_size}")

  def build_all(self, num_frames: Optional[int] = None):
    """Creates every variable (for checkpoint restore before any step).

    Args:
      num_frames: frames of the dummy clip; default the config's T.
    """
    num_frames = num_frames or self.num_frames
    frames = tf.zeros([1, num_frames, self.frame_size, self.frame_size, 3])
    offsets = tf.zeros([1, num_frames, 2], tf.int32)
    self(frames, offsets)
    _, pooled = self.glance(frames[0])
    self.glance.logits(pooled)
    self.focus.logits(self.focus(frames[0]))

  def glance_features(self, frames, training=False):
    """Glance of every frame in one call (see ``video_glance``)."""
    return video_glance(self.glance, frames, training)

  def focus_features(self, frames, offsets, training=False):
    """Focus features [B, T, D] of the patches at ``offsets``."""
    return video_focus(self.focus, frames, offsets, self.patch_size, training)

  def head_logits(self, pooled, frames, offsets, seeds=None, training=False,
                  train_focus=None):
    """Per-step logits [B, T, C] from the glance's pooled features.

    The part after the glance: focus net on the patches, classifier. The
    glance runs once, in the caller (``inference.recognizer``).

    Args:
      pooled: [B, T, C] pooled glance features (``glance_features``).
      frames: [B, T, S, S, 3] normalised frames (the patches' source).
      offsets: [B, T, 2] top-left patch pixels, or [B, 1, 2] (one per video).
      seeds: [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
      train_focus: focus backbone in training mode; defaults to ``training``.
    """
    if train_focus is None:
      train_focus = training
    f = self.focus_features(frames, offsets, training=train_focus)
    return self.classifier(fuse(pooled, f), seeds, training=training)

  def step_logits(self, pooled, frames, offsets, state):
    """One frame of the classifier: logits [n, C] and its next state.

    Args:
      pooled: [n, C] this frame's pooled glance features.
      frames: [n, S, S, 3] this frame.
      offsets: [n, 2] its patch's top-left pixels.
      state: the classifier state after the previous frame.
    """
    crops = patches.extract_patches(frames[:, None], offsets[:, None],
                                    self.patch_size)
    focus = self.focus(crops, training=False)
    return self.classifier.step(fuse(pooled, focus), state)

  def call(self, frames, offsets, seeds=None, training=False):
    """Per-step logits [B, T, C] (glance, focus, classifier; Keras' entry).

    Used to create the variables; inference and training go through
    ``inference.recognizer``, which runs the glance once per batch.
    """
    _, g = self.glance_features(frames)
    return self.head_logits(g, frames, offsets, seeds, training=training)

  def glance_only_probs(self, pooled):
    """Step probabilities [B, T, C] of the glance net alone.

    The stage-0 head's per-frame softmax averaged over the frames seen so
    far (the "glance only" row of the results table).

    Args:
      pooled: [B, T, C] pooled glance features.
    """
    return running_mean_probs(self.glance.logits(pooled))

"""The Something-Something model: two frame streams, one patch per video.

docs/METHOD.md section 3: a TSM glance net sees Tg whole frames (8), a TSM focus
net sees one P x P patch of each of Tf other frames (12) sampled
independently, and the prediction is the mean over the Tf patches of the
focus head's logits plus the mean over the Tg frames of the glance head's
(``logit_mean_classifier.LogitMeanClassifier``). The patch location comes
in as an input, [B, 1, 2] (one per video, the same crop from every focus
frame) or [B, Tf, 2], so that random, centre, oracle and policy patches all
run the same code, as with ``adafocus.AdaFocus``.

The temporal shift mixes neighbouring frames of a video, so each backbone
is built for its stream's frame count and always called on whole videos,
video-major ([B * T, ...]).
"""

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig, ModelConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import logit_mean_classifier


def temporal_shift_args(m: ModelConfig, num_frames: int) -> dict:
  """Keyword arguments of ``GlanceNet``/``FocusNet`` for a stream's shift.

  Args:
    m: the model config (``temporal_shift``, ``shift_div``).
    num_frames: frames per video of the stream the net sees.

  Returns:
    ``temporal_shift_frames`` (``num_frames``, or 0 without
    ``temporal_shift``: plain backbones) and ``shift_div``.
  """
  return {"temporal_shift_frames": num_frames if m.temporal_shift else 0,
          "shift_div": m.shift_div}


class TwoStreamAdaFocus(tf.keras.Model):
  """Glance net, focus net and logit-mean classifier of a two-stream config.

  Args:
    cfg: the experiment config; ``data.glance_frames`` and
      ``data.focus_frames`` give the streams' lengths.
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d = cfg.model, cfg.data
    if m.patch_size > d.frame_size:
      raise ValueError(f"patch_size {m.patch_size} exceeds frame_size "
                       f"{d.frame_size}")
    self.frame_size = d.frame_size
    self.patch_size = m.patch_size
    self.glance_frames = d.glance_frames
    self.focus_frames = d.focus_frames
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(
        m.focus_backbone, d.num_classes, m.focus_weights,
        **temporal_shift_args(m, d.focus_frames))
    self.classifier = logit_mean_classifier.LogitMeanClassifier(
        self.glance.head, self.focus.head, m.dropout)

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    self(tf.zeros([1, self.glance_frames, s, s, 3]),
         tf.zeros([1, self.focus_frames, s, s, 3]),
         tf.zeros([1, 1, 2], tf.int32))

  def glance_features(self, glance_frames, training=False):
    """The glance net on every glance frame, in one call.

    Args:
      glance_frames: [B, Tg, S, S, 3].
      training: batch-norm mode of the glance backbone.

    Returns:
      (feature maps [B, Tg, h, w, C], pooled [B, Tg, C]).
    """
    return adafocus.video_glance(self.glance, glance_frames, training)

  def glance_logits(self, pooled):
    """[B, C]: the glance head's logits averaged over the glance frames
    (no dropout: ``logit_mean_classifier.LogitMeanClassifier``).

    Args:
      pooled: [B, Tg, C] from ``glance_features``.
    """
    return self.classifier.glance_logits(pooled)

  def focus_logits(self, focus_frames, offsets, seeds=None, training=False,
                   train_focus=None):
    """[B, C]: the focus head's logits averaged over the Tf patches.

    All B * Tf patches are cropped and go through the focus net in one call.

    Args:
      focus_frames: [B, Tf, S, S, 3].
      offsets: [B, 1, 2] top-left patch pixels (one location per video,
        cropped from every focus frame) or [B, Tf, 2]; integer or float
        (bilinear, see ``patches.extract_patches``).
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
      train_focus: focus backbone in training mode; defaults to ``training``.
    """
    if train_focus is None:
      train_focus = training
    feats = adafocus.video_focus(self.focus, focus_frames, offsets,
                                 self.patch_size, training=train_focus)
    return self.classifier.focus_logits(feats, seeds, training=training)

  def combine(self, glance_logits, focus_logits):
    """The prediction [B, 1, C] (a time axis of 1) from two [B, C] means."""
    return self.classifier.combine(glance_logits, focus_logits)

  def head_logits(self, pooled, focus_frames, offsets, seeds=None,
                  training=False, train_focus=None):
    """Logits [B, 1, C] from the glance's pooled features.

    The part after the glance (run once, in ``inference.recognizer``): the
    focus net on the patches of every focus frame, the logit mean.

    Args:
      pooled: [B, Tg, C] pooled glance features (``glance_features``).
      focus_frames: [B, Tf, S, S, 3] normalised frames.
      offsets: [B, 1, 2] or [B, Tf, 2] top-left patch pixels.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: dropout on.
      train_focus: focus backbone in training mode; defaults to ``training``.
    """
    return self.combine(
        self.glance_logits(pooled),
        self.focus_logits(focus_frames, offsets, seeds, training=training,
                          train_focus=train_focus))

  def call(self, glance_frames, focus_frames, offsets, seeds=None,
           training=False):
    """Logits [B, 1, C] (Keras' entry, used to create the variables)."""
    _, pooled = self.glance_features(glance_frames)
    return self.head_logits(pooled, focus_frames, offsets, seeds,
                            training=training)

  def glance_only_probs(self, pooled):
    """Probabilities [B, 1, C] of the glance net alone.

    The softmax of the mean glance logits: this model's prediction rule
    without the focus term.

    Args:
      pooled: [B, Tg, C] pooled glance features.
    """
    return tf.nn.softmax(self.glance_logits(pooled))[:, None, :]

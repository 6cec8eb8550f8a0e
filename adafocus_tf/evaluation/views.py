"""Several views of each video in one evaluation (``DataConfig.test_crops``).

The pipeline gives each frame stream a view axis ([B, V, T, S, S, 3],
``data/pipeline.py``); the recognizer reads the B x V views as a batch of
clips, and each video's prediction is the mean of its views' logits, as
the official multi-view evaluation averages them (Uni-AdaFocus-X3D's
``main_nViewEval.py``, docs/METHOD.md V2-11.4).
"""
from typing import Iterable

import tensorflow as tf

from adafocus_tf.inference.outputs import Outputs


def per_view_batch(batch: dict, frame_keys: Iterable[str], views: int) -> dict:
  """A batch of B videos as one of B x V clips, video by video.

  Args:
    batch: the pipeline batch; the ``frame_keys`` streams [B, V, ...].
    frame_keys: the frame streams (``clips.frame_streams``' keys).
    views: V.

  Returns:
    The batch with each frame stream [B * V, ...] and every other field
    (label, seed, ...) repeated once per view.
  """
  frame_keys = set(frame_keys)
  return {k: (tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
              if k in frame_keys else tf.repeat(x, views, axis=0))
          for k, x in batch.items()}


def _view_mean(x, views: int):
  """[B * V, ...] -> the mean over each video's V rows, [B, ...]."""
  return tf.reduce_mean(
      tf.reshape(x, tf.concat([[-1, views], tf.shape(x)[1:]], 0)), axis=1)


def video_outputs(recognizer, out: Outputs, views: int) -> Outputs:
  """The videos' outputs from their views' (``per_view_batch`` order).

  Args:
    recognizer: the ``Recognizer`` that gave ``out`` (its ``step_probs``).
    out: outputs of B x V clips.
    views: V.

  Returns:
    Outputs of the B videos: the logits averaged over views and the
    prediction after each step from them (the classifier's rule); the
    glance-only probabilities averaged; the centre (first) view's offsets.
  """
  logits = _view_mean(out.logits, views)
  return Outputs(logits=logits,
                 probs=tf.cast(recognizer.step_probs(logits), out.probs.dtype),
                 offsets=out.offsets[::views],
                 glance_probs=_view_mean(out.glance_probs, views))

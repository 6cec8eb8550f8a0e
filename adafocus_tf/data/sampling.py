"""Which frames of a video are read: TSN segment sampling and dense sampling.

All randomness is stateless and keyed by a per-video seed, so a video gets
the same frames whatever worker, replica or resumed run reads it.
"""
import tensorflow as tf


def segment_indices(num_stored, num_segments, training, seed=None):
  """TSN sampling: one frame from each of ``num_segments`` equal segments.

  Args:
    num_stored: int scalar tensor, frames stored for the video.
    num_segments: T, frames to sample.
    training: a random offset inside each segment (else the segment centre).
    seed: int32/int64 [2] stateless seed, required when ``training``.

  Returns:
    int32 [num_segments] frame indices in [0, num_stored); when fewer frames
    are stored than segments, frames repeat in order.
  """
  n = tf.cast(num_stored, tf.float32)
  if training:
    offset = tf.random.stateless_uniform([num_segments], seed=seed)
  else:
    offset = tf.fill([num_segments], 0.5)
  position = (tf.range(num_segments, dtype=tf.float32) + offset) * (
      n / num_segments)
  idx = tf.cast(tf.floor(position), tf.int32)
  return tf.clip_by_value(idx, 0, tf.cast(num_stored, tf.int32) - 1)


def dense_indices(num_stored, num_frames, training, seed=None):
  """Dense sampling: ``num_frames`` consecutive frames.

  Args:
    num_stored: int scalar tensor, frames stored for the video.
    num_frames: frames to sample.
    training: a random start (else the clip centred in the video).
    seed: int [2] stateless seed, required when ``training``.

  Returns:
    int32 [num_frames] frame indices; the last frame repeats when the video
    is shorter than the clip.
  """
  n = tf.cast(num_stored, tf.int32)
  room = tf.maximum(n - num_frames, 0)
  if training:
    start = tf.random.stateless_uniform([], seed=seed, minval=0,
                                        maxval=room + 1, dtype=tf.int32)
  else:
    start = room // 2
  return tf.minimum(start + tf.range(num_frames, dtype=tf.int32), n - 1)


def sample_indices(num_stored, num_frames, training, dense, seed=None):
  """Dispatches to dense or segment sampling (see those functions)."""
  if dense:
    return dense_indices(num_stored, num_frames, training, seed)
  return segment_indices(num_stored, num_frames, training, seed)

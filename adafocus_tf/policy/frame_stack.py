"""The glance maps of a video stacked on channels: what the per-video
policies (the two-stream model's PPO actor, V2-TSM's position policy)
observe. A module of its own so that the V2-TSM policy and prediction do
not load tf-agents (``greedy``) for it."""
import tensorflow as tf


def stack_frames(maps):
  """[B, T, h, w, C] -> [B, 1, h, w, T * C]: frame t's channels at t * C.

  The order of concatenating the frames' maps on the channel axis.

  Args:
    maps: [B, T, h, w, C] glance maps (T and C static).

  Returns:
    The stacked maps [B, 1, h, w, T * C].
  """
  shape = tf.shape(maps)
  t, c = maps.shape[1], maps.shape[4]
  stacked = tf.transpose(maps, [0, 2, 3, 1, 4])
  return tf.reshape(stacked, [shape[0], 1, shape[2], shape[3], t * c])

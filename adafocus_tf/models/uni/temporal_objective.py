"""How the temporal policy learns: a Monte-Carlo auxiliary prediction
(docs/METHOD.md V2-11.3).

For each of S draws and each i = 0, ..., T1 - 1 (T1 = G // 3), i glance
frames are removed, drawn from w without replacement; the glance logits of
the rest are averaged with weights w, normalised by the (stopped) sum of
the remaining weights; the prediction is the mean over i and draws. Its
cross-entropy reaches w through the weighted average.
"""
import tensorflow as tf


def removal_masks(weights, seeds, num_draws: int, num_sizes: int):
  """Which frames each draw removes, float [B, S, T1, G] (row i: i ones).

  Drawing without replacement from w is taking the top i of
  log w + Gumbel noise (the Gumbel-top-k identity).

  Args:
    weights: [B, G] the temporal weights (read, not trained through).
    seeds: int [B, 2] per-video seeds.
    num_draws: S.
    num_sizes: T1.
  """
  w = tf.cast(tf.stop_gradient(weights), tf.float32)
  g = w.shape[1]
  noise = tf.map_fn(
      lambda s: tf.random.stateless_uniform([num_draws, g], s, 1e-20, 1.0),
      seeds, fn_output_signature=tf.float32)
  keys = tf.math.log(w)[:, None, :] - tf.math.log(-tf.math.log(noise))
  # Rank of each frame among its draw's keys (0 = largest).
  order = tf.argsort(keys, axis=-1, direction="DESCENDING")
  rank = tf.argsort(order, axis=-1)
  sizes = tf.range(num_sizes)[None, None, :, None]
  return tf.cast(rank[:, :, None, :] < sizes, weights.dtype)


def mc_logits(glance_logits, weights, removed):
  """The Monte-Carlo prediction [B, C].

  Args:
    glance_logits: [B, G, C] per glance frame.
    weights: [B, G] the temporal weights (trained through).
    removed: [B, S, T1, G] 0/1 (``removal_masks``).
  """
  removed = tf.cast(removed, weights.dtype)
  kept = weights[:, None, None, :] * (1.0 - removed)        # [B, S, T1, G]
  logits = tf.cast(glance_logits, weights.dtype)
  total = tf.einsum("bstg,bgc->bstc", kept, logits)
  norm = tf.stop_gradient(tf.reduce_sum(kept, -1, keepdims=True))
  return tf.reduce_mean(total / norm, axis=[1, 2])

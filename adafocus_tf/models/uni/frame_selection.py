"""Which candidate frames the glance and the focus nets read
(docs/METHOD.md V2-11.2).

Every video has N candidate frames (TSN segments). The glance reads G of
them, one per group of N / G consecutive candidates (a random one in
training, the middle one at test); the temporal policy's weights w over
the G glance frames, read as a piecewise-constant density on [0, 1], give
the focus net's K frames by stratified inverse-CDF sampling, made strictly
increasing and capped so that all K fit.
"""
import tensorflow as tf


def glance_indices(batch: int, num_candidates: int, num_glance: int,
                   draws=None):
  """[B, G] int32 candidate indices the glance reads.

  Args:
    batch: B.
    num_candidates: N (a multiple of G).
    num_glance: G.
    draws: int [B, G] in [0, N / G): the frame within each group
      (training); None: the second of each group (test), as the official
      ``arange(N)[1::N // G]`` (candidates 1, 4, ..., 46 for N = 48,
      G = 16: the middle of groups of 3), the first when groups are single.
  """
  group = num_candidates // num_glance
  base = tf.range(num_glance, dtype=tf.int32) * group
  if draws is None:
    return tf.tile(base[None] + min(1, group - 1), [batch, 1])
  return base[None] + tf.cast(draws, tf.int32)


def group_draws(seeds, num_candidates: int, num_glance: int):
  """Random frames within each group, int32 [B, G], keyed by video seed."""
  group = num_candidates // num_glance
  return tf.map_fn(
      lambda s: tf.random.stateless_uniform([num_glance], s, 0, group,
                                            dtype=tf.int32),
      seeds, fn_output_signature=tf.int32)


def quantile_draws(seeds, num_focus: int):
  """u_i ~ U[0, 1), float32 [B, K], keyed by video seed."""
  return tf.map_fn(lambda s: tf.random.stateless_uniform([num_focus], s),
                   seeds, fn_output_signature=tf.float32)


def select(weights, num_candidates: int, num_focus: int, draws=None):
  """The focus net's K candidate indices, int32 [B, K], increasing.

  The quantiles of w at levels (i + u_i) / K (u_i = 1/2 at test) read on
  the piecewise-linear CDF, scaled by N and floored; then each index not
  above its predecessor becomes predecessor + 1 (a running maximum of
  index - i, plus i), and the i-th is capped at N - K + i. Not
  differentiable (the weights are read, not trained through).

  Args:
    weights: [B, G] the temporal policy's weights (rows sum to 1).
    num_candidates: N.
    num_focus: K (at most N).
    draws: [B, K] u_i in [0, 1) (training), or None (test).
  """
  weights = tf.cast(tf.stop_gradient(weights), tf.float32)
  b, g = tf.shape(weights)[0], weights.shape[1]
  cdf = tf.concat([tf.zeros([b, 1]), tf.cumsum(weights, axis=1)], 1)
  # The last knot is 1 exactly, whatever the sum's rounding.
  cdf = tf.concat([cdf[:, :-1], tf.ones([b, 1])], 1)
  levels = tf.range(num_focus, dtype=tf.float32)[None]
  u = 0.5 if draws is None else tf.cast(draws, tf.float32)
  levels = (levels + u) / num_focus
  # The first knot at or above each level; its bin starts one knot before.
  reached = cdf[:, :, None] >= levels[:, None, :]
  first = tf.argmax(tf.cast(reached, tf.int32), axis=1, output_type=tf.int32)
  lower = tf.clip_by_value(first, 1, g) - 1
  y1 = tf.gather(cdf, lower, batch_dims=1)
  y2 = tf.gather(cdf, lower + 1, batch_dims=1)
  x1 = tf.cast(lower, tf.float32) / g
  x2 = tf.cast(lower + 1, tf.float32) / g
  quantile = (x2 * (levels - y1) - x1 * (levels - y2)) / (y2 - y1)
  index = tf.cast(tf.floor(quantile * num_candidates), tf.int32)
  step = tf.range(num_focus, dtype=tf.int32)[None]
  index = running_max(index - step) + step
  return tf.minimum(index, num_candidates - num_focus + step)


def running_max(x):
  """[B, K] -> the maximum of each row's first 1, 2, ..., K entries."""
  k = x.shape[1]
  earlier = tf.linalg.band_part(tf.ones([k, k], tf.bool), -1, 0)  # j <= i
  low = tf.reduce_min(x) - 1
  spread = tf.where(earlier[None], x[:, None, :], low)
  return tf.reduce_max(spread, axis=2)


def interpolate_in_time(x, num_candidates: int):
  """[B, G, D] per glance frame -> [B, N, D] per candidate: linear, with
  sample centres aligned (align_corners False), clamped at the ends."""
  g = x.shape[1]
  pos = (tf.range(num_candidates, dtype=tf.float32) + 0.5) * (
      g / num_candidates) - 0.5
  pos = tf.maximum(pos, 0.0)
  lo = tf.minimum(tf.cast(tf.floor(pos), tf.int32), g - 1)
  hi = tf.minimum(lo + 1, g - 1)
  frac = tf.cast(pos - tf.cast(lo, tf.float32), x.dtype)[None, :, None]
  return (tf.gather(x, lo, axis=1) * (1 - frac)
          + tf.gather(x, hi, axis=1) * frac)

"""The ``continuous`` action space (docs/METHOD.md section 3).

A position (ay, ax) in [0, 1]^2; a Gaussian whose mean is the actor's
sigmoid output and whose standard deviation is fixed (``policy_std``, 0.25
as in the reference); samples are clamped to [0, 1] to place the patch;
evaluation takes the mean. The stored action, whose log-probability PPO's
ratios use, is the sample *before* clamping: the density it was drawn from
(a clamped point carries all the mass beyond the border, which the
Gaussian's density there does not measure). With the standard deviation
fixed at 0.25, the mean that maximises the expected reward is not always
the best position: mass beyond a border lands on it, so for a reward
peaked at 0.8 (-(a - 0.8)^2) the best mean is 1.0, and at 0.6 it is 0.63.

The patch's top-left pixel is floor(a * (S - P))
(``patches.position_to_offset``). Sampling draws its noise from each
video's stateless seed, so a step takes the same actions on any number of
replicas and after a resume.
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.specs import tensor_spec

from adafocus_tf.models import patches

CONTINUOUS = "continuous"


class ContinuousActions:
  """A fixed-width Gaussian over patch positions, clamped to [0, 1]^2.

  Args:
    std: the Gaussian's standard deviation in position units.
  """

  kind = CONTINUOUS

  def __init__(self, std: float):
    if std <= 0:
      raise ValueError(f"policy_std must be positive, got {std}")
    self.std = std
    # The bounds are those of the positions; a stored sample may lie
    # outside them (it is clamped when it becomes a position).
    self.spec = tensor_spec.BoundedTensorSpec((patches.POSITION_DIMS,), tf.float32,
                                              0.0, 1.0, name="position")

  def sample(self, dist_params, seeds):
    """Mean plus Gaussian noise (not yet clamped: see the module doc).

    Args:
      dist_params: the collect policy's ``{"loc": [B, T, 2]}``.
      seeds: int [B, 2] per-video stateless seeds.

    Returns:
      float32 [B, T, 2] samples.
    """
    loc = tf.cast(dist_params["loc"], tf.float32)
    shape = tf.shape(loc)[1:]
    noise = tf.map_fn(lambda s: tf.random.stateless_normal(shape, s), seeds,
                      fn_output_signature=tf.float32)
    return loc + self.std * noise

  def greedy(self, distribution):
    """The mean, float32 [B, T, 2] (inside [0, 1]: a sigmoid)."""
    return tf.cast(distribution.mode(), tf.float32)

  def positions(self, actions):
    """Samples clamped to the square of positions [0, 1]^2."""
    return tf.clip_by_value(tf.cast(actions, tf.float32), 0.0, 1.0)

"""The ``discrete`` action space (docs/METHOD.md section 2).

An index into a g x g grid of patch positions (``num_actions`` = g * g, 16
to 100); a categorical over the grid, sampled in training, argmax in
evaluation. The patch's top-left pixel is floor(a * (S - P)) of the grid
point's position a (``patches.position_to_offset``). Sampling draws its
noise from each video's stateless seed, so a step takes the same actions on
any number of replicas and after a resume.
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.specs import tensor_spec

from adafocus_tf.models import patches

DISCRETE = "discrete"


def _per_video_uniform(shape, seeds, minval=0.0):
  return tf.map_fn(
      lambda s: tf.random.stateless_uniform(shape, s, minval, 1.0), seeds,
      fn_output_signature=tf.float32)


class DiscreteActions:
  """A categorical over a square grid of patch positions.

  Args:
    num_actions: grid size, a square number of at least 4.
  """

  kind = DISCRETE

  def __init__(self, num_actions: int):
    patches.grid_side(num_actions)  # validates
    self.num_actions = num_actions
    self.spec = tensor_spec.BoundedTensorSpec((), tf.int32, 0,
                                              num_actions - 1, name="patch")

  def sample(self, dist_params, seeds):
    """One categorical sample per video and step (Gumbel-max).

    argmax(logits + Gumbel noise) is distributed as Categorical(logits).

    Args:
      dist_params: the collect policy's ``{"logits": [B, T, A]}``.
      seeds: int [B, 2] per-video stateless seeds.

    Returns:
      int32 [B, T] grid indices.
    """
    logits = tf.cast(dist_params["logits"], tf.float32)
    u = _per_video_uniform(tf.shape(logits)[1:], seeds, minval=1e-20)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(logits + gumbel, -1, output_type=tf.int32)

  def greedy(self, distribution):
    """The argmax action, int32 [B, T]."""
    return tf.cast(distribution.mode(), tf.int32)

  def positions(self, actions):
    """Positions (ay, ax) in [0, 1]^2 of grid indices: float32 [..., 2]."""
    return patches.action_to_position(actions, self.num_actions)

"""What a policy action is: the action space of a config.

Two action spaces (``ModelConfig.policy``), each in its module:

  * ``discrete`` (``discrete_actions.DiscreteActions``, docs/METHOD.md
    section 2): an index into a g x g grid of patch positions, a
    categorical over the grid.
  * ``continuous`` (``continuous_actions.ContinuousActions``,
    docs/METHOD.md section 3): a position (ay, ax) in [0, 1]^2, a Gaussian
    of fixed standard deviation, clamped to place the patch.

Both sample, take the greedy action and turn actions into positions the
same way: ``sample(dist_params, seeds)``, ``greedy(distribution)``,
``positions(actions)``, with ``kind`` and ``spec``.
"""
from __future__ import annotations

from adafocus_tf.policy import continuous_actions
from adafocus_tf.policy import discrete_actions

KINDS = (discrete_actions.DISCRETE, continuous_actions.CONTINUOUS)


def from_config(model_cfg):
  """The action space of ``ModelConfig`` ``model_cfg``.

  Raises:
    ValueError: an unknown ``policy`` kind or a bad grid / width.
  """
  if model_cfg.policy == discrete_actions.DISCRETE:
    return discrete_actions.DiscreteActions(model_cfg.num_actions)
  if model_cfg.policy == continuous_actions.CONTINUOUS:
    return continuous_actions.ContinuousActions(model_cfg.policy_std)
  raise ValueError(f"unknown policy {model_cfg.policy!r}; choose one of "
                   f"{', '.join(KINDS)}")

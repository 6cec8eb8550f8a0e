"""What the policy's actor and critic share: a trunk under one dense head.

``ActorDistributionGruNetwork`` (``actor_network.py``) and
``ValueGruNetwork`` (``value_network.py``) each hold a
``policy_trunk.PolicyTrunk`` (one, shared by both, by default) and a dense
head; this mixin runs them on single-step or sequence inputs.
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.utils import nest_utils

from adafocus_tf.policy import policy_trunk


def _with_time_axis(observation, step_type, spec):
  """Adds a time axis of 1 to single-step inputs; says whether it did."""
  outer_rank = nest_utils.get_outer_rank(observation, spec)
  if outer_rank not in (1, 2):
    raise ValueError("observations must have [batch] or [batch, time] outer "
                     f"dimensions, got outer rank {outer_rank}")
  if outer_rank == 2:
    return observation, step_type, False
  return observation[:, None], step_type[:, None], True


class TrunkAndHead:
  """What the actor and the critic share: a trunk under one dense head."""

  @property
  def trunk(self) -> policy_trunk.PolicyTrunk:
    """The encoder and GRU (one, shared by actor and critic, by default)."""
    return self._trunk

  @property
  def head(self) -> tf.keras.layers.Dense:
    """The last layer: the actor's logits or pre-sigmoid mean, or the value."""
    return self._head

  def _trunk_and_head(self, observation, step_type, network_state, training):
    """The head's output on single-step or sequence inputs, and the state.

    Returns:
      ([B, ...] or [B, T, ...] head outputs, state [B, hidden]).
    """
    observation, step_type, single = _with_time_axis(
        observation, step_type, self.input_tensor_spec)
    h, state = self._trunk(observation, step_type, network_state,
                           training=training)
    out = self._head(h)
    return (out[:, 0] if single else out), state

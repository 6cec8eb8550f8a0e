"""The policy's critic: the trunk, then a dense layer to one value per step.

  trunk (``policy_trunk.PolicyTrunk``) -> dense -> 1 (the value)

docs/METHOD.md 2, 3.
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.networks import network

from adafocus_tf.policy import policy_trunk
from adafocus_tf.policy import trunk_and_head


class ValueGruNetwork(trunk_and_head.TrunkAndHead, network.Network):
  """The critic: the trunk, then a dense layer to one value per step.

  Args:
    input_tensor_spec: spec of one observation (a glance map [h, w, C]).
    trunk: the ``PolicyTrunk`` (shared with the actor or not).
    name: network name.
  """

  def __init__(self, input_tensor_spec, trunk: policy_trunk.PolicyTrunk,
               name: str = "ValueGruNetwork"):
    super().__init__(input_tensor_spec=input_tensor_spec,
                     state_spec=trunk.state_spec, name=name)
    self._trunk = trunk
    self._head = tf.keras.layers.Dense(1, dtype=tf.float32, name="value")

  def call(self, observation, step_type=None, network_state=(),
           training=False):
    """Value predictions and next GRU state.

    Args:
      observation: [B, h, w, C] or [B, T, h, w, C].
      step_type: [B] or [B, T] step types (``FIRST`` resets the state).
      network_state: [B, hidden] GRU state.
      training: Keras training flag.

    Returns:
      (values [B] or [B, T], state [B, hidden]).
    """
    value, state = self._trunk_and_head(observation, step_type,
                                        network_state, training)
    return tf.squeeze(value, -1), state

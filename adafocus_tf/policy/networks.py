"""The recurrent patch policy as tf-agents networks (SPEC.md section 2).

  observation (glance map [h, w, C] of frame t)
    -> 1x1 conv to ``conv_channels`` (no bias) -> ReLU -> flatten
    -> dense ``hidden`` -> ReLU
    -> GRU (``hidden`` units; its state is the tf-agents network state,
       carried from frame to frame and reset to zeros at ``StepType.FIRST``)
    -> actor: dense -> ``num_actions`` logits (a ``tfp`` Categorical)
    -> critic: dense -> 1 (the value)

The reference implementation has one encoder and GRU under both heads, so
the value loss also shapes the shared features; ``PolicyTrunk`` is that
shared part, held by both networks (tf-agents keeps separate actor and value
networks with separate states, so with a shared trunk each network unrolls
the same GRU over the same frames; the policy is cheap next to the backbones).

tf-agents' stock recurrent networks are LSTM-based, and the
``rnn_construction_fn`` route to a Keras GRU loses the reset at episode
starts, so the GRU here is a ``GRUCell`` under tf-agents' ``DynamicUnroll``
with a reset mask, as ``LSTMEncodingNetwork`` does for its LSTM.

Every layer computes in float32 whatever the global mixed-precision policy:
the policy is small and its log-probabilities feed PPO's importance ratios.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.keras_layers import dynamic_unroll_layer
from tf_agents.networks import network
from tf_agents.networks import utils as network_utils
from tf_agents.specs import distribution_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import nest_utils

# tf-agents' default for categorical heads (CategoricalProjectionNetwork):
# small initial logits, so the untrained policy is close to uniform over the
# patch grid (exploration).
LOGITS_INIT_FACTOR = 0.1


class PolicyTrunk(tf.keras.layers.Layer):
  """Encoder and GRU shared by the actor and the critic.

  Args:
    conv_channels: output channels of the 1x1 convolution.
    hidden: units of the dense layer and of the GRU.
    name: layer name.
  """

  def __init__(self, conv_channels: int, hidden: int,
               name: str = "policy_trunk"):
    super().__init__(name=name, dtype=tf.float32)
    self.hidden = hidden
    self.encoder = tf.keras.Sequential([
        tf.keras.layers.Conv2D(conv_channels, 1, use_bias=False,
                               dtype=tf.float32, name="conv1x1"),
        tf.keras.layers.ReLU(dtype=tf.float32),
        tf.keras.layers.Flatten(dtype=tf.float32),
        tf.keras.layers.Dense(hidden, activation="relu", dtype=tf.float32,
                              name="fc"),
    ], name="encoder")
    # reset_after=True is PyTorch's GRU formulation.
    self.rnn = dynamic_unroll_layer.DynamicUnroll(
        tf.keras.layers.GRUCell(hidden, reset_after=True, dtype=tf.float32,
                                name="gru"), dtype=tf.float32)

  @property
  def state_spec(self) -> tf.TensorSpec:
    return tf.TensorSpec([self.hidden], tf.float32, name="gru_state")

  def call(self, observation, step_type, network_state, training=False):
    """Encodes a sequence of observations and runs the GRU over it.

    Args:
      observation: float [B, T, h, w, C] glance feature maps.
      step_type: int [B, T] tf-agents step types; the GRU state is reset to
        zeros before every ``StepType.FIRST`` step.
      network_state: [B, hidden] GRU state before the first step.
      training: Keras training flag (no layer here depends on it).

    Returns:
      (outputs [B, T, hidden], final state [B, hidden]).
    """
    squash = network_utils.BatchSquash(2)
    x = self.encoder(squash.flatten(tf.cast(observation, tf.float32)),
                     training=training)
    x = squash.unflatten(x)
    reset = tf.equal(step_type, ts.StepType.FIRST)
    return self.rnn(x, initial_state=network_state, reset_mask=reset,
                    training=training)


def _with_time_axis(observation, step_type, spec):
  """Adds a time axis of 1 to single-step inputs; says whether it did."""
  outer_rank = nest_utils.get_outer_rank(observation, spec)
  if outer_rank not in (1, 2):
    raise ValueError("observations must have [batch] or [batch, time] outer "
                     f"dimensions, got outer rank {outer_rank}")
  if outer_rank == 2:
    return observation, step_type, False
  return observation[:, None], step_type[:, None], True


class ActorDistributionGruNetwork(network.DistributionNetwork):
  """The actor: the trunk, then a categorical head over the patch grid.

  Called on ``[B, ...]`` (one step) or ``[B, T, ...]`` (a sequence) inputs,
  like tf-agents' ``ActorDistributionRnnNetwork``.

  Args:
    input_tensor_spec: spec of one observation (a glance map [h, w, C]).
    output_tensor_spec: the action spec, a scalar ``BoundedTensorSpec``.
    trunk: the ``PolicyTrunk`` (shared with the critic or not).
    name: network name.
  """

  def __init__(self, input_tensor_spec, output_tensor_spec,
               trunk: PolicyTrunk, name: str = "ActorDistributionGruNetwork"):
    if output_tensor_spec.shape.rank != 0:
      raise ValueError("the patch action is one index into the grid, got "
                       f"action shape {output_tensor_spec.shape}")
    num_actions = int(output_tensor_spec.maximum -
                      output_tensor_spec.minimum + 1)
    # tf-agents' CategoricalProjectionNetwork, but pinned to float32 (its
    # dense layer follows the global mixed-precision policy).
    output_spec = distribution_spec.DistributionSpec(
        tfp.distributions.Categorical,
        {"logits": tf.TensorSpec([num_actions], tf.float32, name="logits")},
        sample_spec=output_tensor_spec, dtype=output_tensor_spec.dtype)
    super().__init__(input_tensor_spec=input_tensor_spec,
                     state_spec=trunk.state_spec, output_spec=output_spec,
                     name=name)
    self._trunk = trunk
    self._head = tf.keras.layers.Dense(
        num_actions, dtype=tf.float32, name="logits",
        kernel_initializer=tf.keras.initializers.VarianceScaling(
            scale=LOGITS_INIT_FACTOR),
        bias_initializer="zeros")
    self._output_tensor_spec = output_tensor_spec

  @property
  def output_tensor_spec(self):
    return self._output_tensor_spec

  def call(self, observation, step_type=None, network_state=(),
           training=False):
    """Action distribution and next GRU state.

    Args:
      observation: [B, h, w, C] or [B, T, h, w, C].
      step_type: [B] or [B, T] step types (``FIRST`` resets the state).
      network_state: [B, hidden] GRU state.
      training: Keras training flag.

    Returns:
      (Categorical with batch shape [B] or [B, T], state [B, hidden]).
    """
    observation, step_type, single = _with_time_axis(
        observation, step_type, self.input_tensor_spec)
    h, state = self._trunk(observation, step_type, network_state,
                           training=training)
    logits = self._head(h)
    if single:
      logits = logits[:, 0]
    return self.output_spec.build_distribution(logits=logits), state


class ValueGruNetwork(network.Network):
  """The critic: the trunk, then a dense layer to one value per step.

  Args:
    input_tensor_spec: spec of one observation (a glance map [h, w, C]).
    trunk: the ``PolicyTrunk`` (shared with the actor or not).
    name: network name.
  """

  def __init__(self, input_tensor_spec, trunk: PolicyTrunk,
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
    observation, step_type, single = _with_time_axis(
        observation, step_type, self.input_tensor_spec)
    h, state = self._trunk(observation, step_type, network_state,
                           training=training)
    value = tf.squeeze(self._head(h), -1)
    if single:
      value = value[:, 0]
    return value, state


def specs(map_shape, num_actions: int):
  """The observation and action specs of the patch policy.

  Args:
    map_shape: (h, w, C) of the glance feature map.
    num_actions: size of the patch grid.

  Returns:
    (observation spec, action spec).
  """
  observation_spec = tf.TensorSpec(tuple(map_shape), tf.float32,
                                   name="glance_map")
  action_spec = tensor_spec.BoundedTensorSpec((), tf.int32, 0,
                                              num_actions - 1, name="patch")
  return observation_spec, action_spec


def build_networks(observation_spec, action_spec, conv_channels: int,
                   hidden: int, share_trunk: bool = True
                   ) -> Tuple[ActorDistributionGruNetwork, ValueGruNetwork]:
  """Builds the actor and the critic (variables created).

  Args:
    observation_spec: spec of one glance map.
    action_spec: scalar bounded int spec of the patch index.
    conv_channels: 1x1 conv channels of the encoder.
    hidden: dense and GRU units.
    share_trunk: one encoder and GRU under both heads (the reference
      implementation); otherwise the critic has its own.

  Returns:
    (actor network, value network).
  """
  trunk = PolicyTrunk(conv_channels, hidden)
  actor = ActorDistributionGruNetwork(observation_spec, action_spec, trunk)
  critic_trunk = trunk if share_trunk else PolicyTrunk(
      conv_channels, hidden, name="value_trunk")
  critic = ValueGruNetwork(observation_spec, critic_trunk)
  actor.create_variables()
  critic.create_variables()
  return actor, critic

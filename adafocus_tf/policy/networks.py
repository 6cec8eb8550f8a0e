"""The recurrent patch policy as tf-agents networks (docs/METHOD.md 2, 3).

  observation (a glance map [h, w, C]: of frame t, or of all glance frames
               stacked on channels when there is one patch per video)
    -> 1x1 conv to ``conv_channels`` (no bias) [-> batch norm] -> ReLU
    -> flatten -> dense ``hidden`` [-> batch norm] -> ReLU
    -> GRU (``hidden`` units; its state is the tf-agents network state,
       carried from frame to frame and reset to zeros at ``StepType.FIRST``)
    -> actor: discrete: dense -> ``num_actions`` logits (a Categorical);
              continuous: dense -> 2 -> sigmoid, the mean of a Gaussian of
              fixed standard deviation (``action_space.py``)
    -> critic: dense -> 1 (the value)

The batch norms are the Something-Something encoder's (section 3); the V1
encoder (section 2) has none.

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
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import nest_utils

from adafocus_tf.models import gru_inference
from adafocus_tf.models import precise_batchnorm

# tf-agents' default for categorical heads (CategoricalProjectionNetwork):
# small initial logits, so the untrained policy is close to uniform over the
# patch grid (exploration).
LOGITS_INIT_FACTOR = 0.1
# PyTorch's batch-norm defaults (the reference's encoder): eps 1e-5,
# running-average momentum 0.1.
_TORCH_BN = dict(epsilon=1e-5, momentum=0.9)


def gaussian_builder(std: float):
  """Builds the continuous head's distribution from its mean.

  A ``MultivariateNormalDiag`` with a constant (non-tensor) scale, so that
  tf-agents stores only ``loc`` as the policy's distribution parameters and
  rebuilds the same distribution from it in PPO's update.

  Args:
    std: the fixed standard deviation of each coordinate.
  """
  def build(loc):
    return tfp.distributions.MultivariateNormalDiag(
        loc=loc, scale_diag=[std] * int(loc.shape[-1]))
  return build


class PolicyTrunk(tf.keras.layers.Layer):
  """Encoder and GRU shared by the actor and the critic.

  Args:
    conv_channels: output channels of the 1x1 convolution.
    hidden: units of the dense layer and of the GRU.
    batchnorm: batch norm after the convolution and the dense layer.
    name: layer name.
  """

  def __init__(self, conv_channels: int, hidden: int,
               batchnorm: bool = False, name: str = "policy_trunk"):
    super().__init__(name=name, dtype=tf.float32)
    self.hidden = hidden
    f32 = dict(dtype=tf.float32)

    def norm(name):
      return ([precise_batchnorm.PreciseBatchNormalization(
          name=name, **_TORCH_BN, **f32)]
              if batchnorm else [])
    self.encoder = tf.keras.Sequential(
        [tf.keras.layers.Conv2D(conv_channels, 1, use_bias=False,
                                name="conv1x1", **f32)]
        + norm("conv_bn") + [
            tf.keras.layers.ReLU(**f32),
            tf.keras.layers.Flatten(**f32),
            tf.keras.layers.Dense(hidden, name="fc", **f32)]
        + norm("fc_bn") + [tf.keras.layers.ReLU(**f32)], name="encoder")
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
      training: Keras training flag (batch norm, when there is one, uses
        the batch's statistics).

    Returns:
      (outputs [B, T, hidden], final state [B, hidden]).
    """
    squash = network_utils.BatchSquash(2)
    x = self.encoder(squash.flatten(tf.cast(observation, tf.float32)),
                     training=training)
    x = squash.unflatten(x)
    reset = tf.equal(step_type, ts.StepType.FIRST)
    if not gru_inference.applies(x, training):
      return self.rnn(x, initial_state=network_state, reset_mask=reset,
                      training=training)
    # Whole videos at inference: the same GRU, faster.
    if not self.rnn.cell.built:
      self.rnn.cell.build(x.shape[-1:])
    return gru_inference.gru_sequence(self.rnn.cell, x, network_state, reset)


def _with_time_axis(observation, step_type, spec):
  """Adds a time axis of 1 to single-step inputs; says whether it did."""
  outer_rank = nest_utils.get_outer_rank(observation, spec)
  if outer_rank not in (1, 2):
    raise ValueError("observations must have [batch] or [batch, time] outer "
                     f"dimensions, got outer rank {outer_rank}")
  if outer_rank == 2:
    return observation, step_type, False
  return observation[:, None], step_type[:, None], True


class _TrunkAndHead:
  """What the actor and the critic share: a trunk under one dense head."""

  @property
  def trunk(self) -> PolicyTrunk:
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


class ActorDistributionGruNetwork(_TrunkAndHead, network.DistributionNetwork):
  """The actor: the trunk, then a categorical or a Gaussian head.

  Called on ``[B, ...]`` (one step) or ``[B, T, ...]`` (a sequence) inputs,
  like tf-agents' ``ActorDistributionRnnNetwork``.

  Args:
    input_tensor_spec: spec of one observation (a glance map [h, w, C]).
    output_tensor_spec: the action spec: a scalar int ``BoundedTensorSpec``
      (a grid index: categorical head) or a float one of shape [2] (a
      position: Gaussian head).
    trunk: the ``PolicyTrunk`` (shared with the critic or not).
    std: standard deviation of the Gaussian head.
    name: network name.
  """

  def __init__(self, input_tensor_spec, output_tensor_spec,
               trunk: PolicyTrunk, std: float = 0.25,
               name: str = "ActorDistributionGruNetwork"):
    rank = output_tensor_spec.shape.rank
    if rank == 0 and output_tensor_spec.dtype.is_integer:
      units = int(output_tensor_spec.maximum - output_tensor_spec.minimum + 1)
      # tf-agents' CategoricalProjectionNetwork, but pinned to float32 (its
      # dense layer follows the global mixed-precision policy).
      output_spec = distribution_spec.DistributionSpec(
          tfp.distributions.Categorical,
          {"logits": tf.TensorSpec([units], tf.float32, name="logits")},
          sample_spec=output_tensor_spec, dtype=output_tensor_spec.dtype)
      head = dict(name="logits", kernel_initializer=(
          tf.keras.initializers.VarianceScaling(scale=LOGITS_INIT_FACTOR)))
    elif rank == 1 and output_tensor_spec.dtype.is_floating:
      units = int(output_tensor_spec.shape[0])
      output_spec = distribution_spec.DistributionSpec(
          gaussian_builder(std),
          {"loc": tf.TensorSpec([units], tf.float32, name="loc")},
          sample_spec=output_tensor_spec)
      head = dict(name="mean", activation="sigmoid")
    else:
      raise ValueError("the patch action is a grid index (int scalar) or a "
                       f"position (float [2]), got {output_tensor_spec}")
    super().__init__(input_tensor_spec=input_tensor_spec,
                     state_spec=trunk.state_spec, output_spec=output_spec,
                     name=name)
    self._trunk = trunk
    self._continuous = rank == 1
    self._head = tf.keras.layers.Dense(units, dtype=tf.float32,
                                       bias_initializer="zeros", **head)
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
      (distribution with batch shape [B] or [B, T], state [B, hidden]).
    """
    params, state = self._trunk_and_head(observation, step_type,
                                         network_state, training)
    if self._continuous:
      return self.output_spec.build_distribution(loc=params), state
    return self.output_spec.build_distribution(logits=params), state


class ValueGruNetwork(_TrunkAndHead, network.Network):
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
    value, state = self._trunk_and_head(observation, step_type,
                                        network_state, training)
    return tf.squeeze(value, -1), state


def observation_spec(map_shape) -> tf.TensorSpec:
  """Spec of one observation: a glance map (h, w, C)."""
  return tf.TensorSpec(tuple(map_shape), tf.float32, name="glance_map")


def build_networks(observation_spec, action_spec, conv_channels: int,
                   hidden: int, batchnorm: bool = False, std: float = 0.25,
                   share_trunk: bool = True
                   ) -> Tuple[ActorDistributionGruNetwork, ValueGruNetwork]:
  """Builds the actor and the critic (variables created).

  Args:
    observation_spec: spec of one glance map.
    action_spec: the action space's spec (``action_space.py``).
    conv_channels: 1x1 conv channels of the encoder.
    hidden: dense and GRU units.
    batchnorm: batch norm in the encoder (Something-Something's).
    std: standard deviation of a continuous policy.
    share_trunk: one encoder and GRU under both heads (the reference
      implementation); otherwise the critic has its own.

  Returns:
    (actor network, value network).
  """
  trunk = PolicyTrunk(conv_channels, hidden, batchnorm)
  actor = ActorDistributionGruNetwork(observation_spec, action_spec, trunk,
                                      std)
  critic_trunk = trunk if share_trunk else PolicyTrunk(
      conv_channels, hidden, batchnorm, name="value_trunk")
  critic = ValueGruNetwork(observation_spec, critic_trunk)
  actor.create_variables()
  critic.create_variables()
  return actor, critic


def from_config(model_cfg, map_shape, actions):
  """The actor and critic of a ``ModelConfig``.

  Args:
    model_cfg: the model section of the run's config.
    map_shape: (h, w, C) of one observation.
    actions: the run's action space (``action_space.from_config``).

  Returns:
    (observation spec, actor network, value network).
  """
  obs_spec = observation_spec(map_shape)
  actor, critic = build_networks(
      obs_spec, actions.spec, model_cfg.policy_conv_channels,
      model_cfg.policy_hidden, model_cfg.policy_batchnorm,
      model_cfg.policy_std)
  return obs_spec, actor, critic


"""The policy's actor: the trunk, then a categorical or a Gaussian head.

  trunk (``policy_trunk.PolicyTrunk``)
    -> discrete: dense -> ``num_actions`` logits (a Categorical);
       continuous: dense -> 2 -> sigmoid, the mean of a Gaussian of fixed
       standard deviation (``continuous_actions.py``)

docs/METHOD.md 2, 3.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.networks import network
from tf_agents.specs import distribution_spec

from adafocus_tf.policy import policy_trunk
from adafocus_tf.policy import trunk_and_head

# tf-agents' default for categorical heads (CategoricalProjectionNetwork):
# small initial logits, so the untrained policy is close to uniform over the
# patch grid (exploration).
LOGITS_INIT_FACTOR = 0.1


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


class ActorDistributionGruNetwork(trunk_and_head.TrunkAndHead,
                                  network.DistributionNetwork):
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
               trunk: policy_trunk.PolicyTrunk, std: float = 0.25,
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

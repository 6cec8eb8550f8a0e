"""The recurrent patch policy as tf-agents networks (docs/METHOD.md 2, 3).

``from_config`` builds a run's actor and critic:

  observation (a glance map [h, w, C]: of frame t, or of all glance frames
               stacked on channels when there is one patch per video)
    -> encoder and GRU (``policy_trunk.py``; by default one, shared)
    -> actor: a categorical or a Gaussian head (``actor_network.py``)
    -> critic: dense -> 1 (the value; ``value_network.py``)

Every layer computes in float32 whatever the global mixed-precision policy:
the policy is small and its log-probabilities feed PPO's importance ratios.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from adafocus_tf.policy import actor_network
from adafocus_tf.policy import policy_trunk
from adafocus_tf.policy import value_network


def observation_spec(map_shape) -> tf.TensorSpec:
  """Spec of one observation: a glance map (h, w, C)."""
  return tf.TensorSpec(tuple(map_shape), tf.float32, name="glance_map")


def build_networks(observation_spec, action_spec, conv_channels: int,
                   hidden: int, batchnorm: bool = False, std: float = 0.25,
                   share_trunk: bool = True
                   ) -> Tuple[actor_network.ActorDistributionGruNetwork,
                              value_network.ValueGruNetwork]:
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
  trunk = policy_trunk.PolicyTrunk(conv_channels, hidden, batchnorm)
  actor = actor_network.ActorDistributionGruNetwork(
      observation_spec, action_spec, trunk, std)
  critic_trunk = trunk if share_trunk else policy_trunk.PolicyTrunk(
      conv_channels, hidden, batchnorm, name="value_trunk")
  critic = value_network.ValueGruNetwork(observation_spec, critic_trunk)
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

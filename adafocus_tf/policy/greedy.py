"""The trained patch policy acting greedily: what a run uses at inference.

Only the actor network is built and restored (from the stage-2 checkpoint's
``actor``); no PPO agent, critic or optimiser. The greedy action is the
argmax of the discrete policy or the mean of the continuous one
(``action_space.py``), turned into top-left patch pixels.

Two ways to act, giving the same patches:
  * ``offsets(observations)``: whole videos, the GRU run over all K steps;
  * ``step(observation, first, state)``: one step, the GRU state carried by
    the caller (early exit drops videos between steps).
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import patches
from adafocus_tf.policy import action_space
from adafocus_tf.policy import networks


def observation_shape(cfg: ExperimentConfig, map_shape):
  """(h, w, C') of one policy observation.

  Args:
    cfg: the run's config.
    map_shape: (h, w, C) of one glance feature map.

  Returns:
    ``map_shape`` (one patch per frame), or (h, w, Tg * C): the glance maps
    of all Tg glance frames stacked on channels (one patch per video).
  """
  h, w, c = map_shape
  if cfg.model.patch_per_video:
    return (h, w, cfg.data.glance_frames * c)
  return (h, w, c)


def action_offsets(actions, values, cfg: ExperimentConfig):
  """Top-left patch pixels, int32 [..., 2], of actions.

  Args:
    actions: the action space (``action_space.from_config``).
    values: actions of that space (grid indices or positions).
    cfg: the run's config (frame and patch sizes).
  """
  return patches.position_to_offset(actions.positions(values),
                                    cfg.data.frame_size, cfg.model.patch_size)


class GreedyPolicy:
  """The actor network of a run, acting greedily.

  Args:
    cfg: the run's config (action space, policy network sizes, frame and
      patch sizes).
    actor: the actor network (``networks.from_config``); the one a
      ``PolicyTrainer`` trains, or one restored by ``restore``.
  """

  def __init__(self, cfg: ExperimentConfig, actor):
    self.cfg, self.actor = cfg, actor
    self.actions = action_space.from_config(cfg.model)

  @classmethod
  def build(cls, cfg: ExperimentConfig, map_shape) -> "GreedyPolicy":
    """A policy with fresh (untrained) actor weights.

    Args:
      cfg: the run's config.
      map_shape: (h, w, C) of one glance feature map
        (``model.glance.map_shape``).
    """
    actions = action_space.from_config(cfg.model)
    _, actor, _ = networks.from_config(
        cfg.model, observation_shape(cfg, map_shape), actions)
    return cls(cfg, actor)

  def restore(self, checkpoint: str) -> None:
    """Loads the actor's weights from a stage-2 checkpoint (prefix).

    Raises:
      ValueError: the checkpoint holds no actor of this shape.
    """
    status = tf.train.Checkpoint(actor=self.actor).restore(checkpoint)
    status.expect_partial()
    try:
      status.assert_existing_objects_matched()
    except AssertionError as e:
      raise ValueError(f"{checkpoint} holds no policy actor matching the "
                       f"config ({self.cfg.model.policy} policy): {e}") from e

  @property
  def variables(self):
    return self.actor.variables

  def initial_state(self, n):
    """The GRU state of ``n`` videos before their first step."""
    return self.actor.get_initial_state(n)

  def distribution(self, observations):
    """The actor's action distribution over whole videos.

    Args:
      observations: [B, K, h, w, C'] glance maps (or one stack of them per
        video: ``frame_stack.stack_frames``).

    Returns:
      A distribution with batch shape [B, K]: a categorical over the grid,
      or the Gaussian over positions.
    """
    b, k = tf.shape(observations)[0], observations.shape[1]
    step_type = tf.concat(
        [tf.fill([b, 1], ts.StepType.FIRST),
         tf.fill([b, k - 1], ts.StepType.MID)], 1)
    dist, _ = self.actor(tf.cast(observations, tf.float32), step_type,
                         self.initial_state(b), training=False)
    return dist

  def offsets(self, observations):
    """Greedy patch offsets of whole videos.

    Args:
      observations: see ``distribution``.

    Returns:
      int32 [B, K, 2] top-left patch offsets.
    """
    greedy = self.actions.greedy(self.distribution(observations))
    return action_offsets(self.actions, greedy, self.cfg)

  def step(self, observation, first: bool, state):
    """Greedy offsets of one step.

    Args:
      observation: [n, h, w, C'] this step's observation.
      first: the videos' first step (the GRU state is reset).
      state: the GRU state after the previous step.

    Returns:
      (int32 [n, 2] offsets, the GRU state after this step).
    """
    n = tf.shape(observation)[0]
    kind = ts.StepType.FIRST if first else ts.StepType.MID
    dist, state = self.actor(tf.cast(observation, tf.float32),
                             tf.fill([n], kind), state, training=False)
    return (action_offsets(self.actions, self.actions.greedy(dist),
                           self.cfg), state)


def load(cfg: ExperimentConfig, map_shape,
         checkpoint: Optional[str]) -> Optional[GreedyPolicy]:
  """The greedy policy of a stage-2 checkpoint, or None without one.

  Args:
    cfg: the run's config.
    map_shape: (h, w, C) of one glance feature map.
    checkpoint: stage-2 checkpoint prefix, or None.
  """
  if not checkpoint:
    return None
  policy = GreedyPolicy.build(cfg, map_shape)
  policy.restore(checkpoint)
  return policy

"""Videos as tf-agents episodes: one video is one episode of the PPO stage.

Each video is an episode of K steps (one patch per frame), or of one step
with one patch per video; these build the step types, discounts and time
steps of such episodes, and per-video seed streams for the stage's own
randomness (``training/tasks/policy_task.py``).
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.trajectories import time_step as ts


def seed_stream(seeds, stream: int):
  """Per-video seeds of an independent random stream.

  Args:
    seeds: int [B, 2] per-video stateless seeds (the pipeline's ``seed``).
    stream: which stream (a small integer folded into each seed).

  Returns:
    int [B, 2] seeds.
  """
  return tf.map_fn(
      lambda s: tf.random.experimental.stateless_fold_in(s, stream), seeds)


def episode_step_types(batch_size, num_steps: int):
  """Step types and discounts of episodes that are one video each.

  Args:
    batch_size: B, videos (episodes).
    num_steps: T, frames (steps) per video.

  Returns:
    (step_type, next_step_type, discount), each [B, T]: FIRST then MID;
    MID then LAST; 1 then 0 on the last step.
  """
  first = tf.fill([batch_size, 1], ts.StepType.FIRST)
  mid = tf.fill([batch_size, num_steps - 1], ts.StepType.MID)
  last = tf.fill([batch_size, 1], ts.StepType.LAST)
  step_type = tf.concat([first, mid], 1)
  next_step_type = tf.concat([mid, last], 1)
  # The discount of the step after the last frame is 0: the episode ends.
  discount = tf.concat([tf.ones([batch_size, num_steps - 1]),
                        tf.zeros([batch_size, 1])], 1)
  return step_type, next_step_type, discount


def episode_time_steps(glance_maps):
  """tf-agents time steps of whole videos: one episode per video.

  Args:
    glance_maps: [B, T, h, w, C] glance feature maps (the observations).
  """
  b = tf.shape(glance_maps)[0]
  step_type, _, _ = episode_step_types(b, glance_maps.shape[1])
  shape = tf.shape(step_type)
  return ts.TimeStep(step_type=step_type, reward=tf.zeros(shape),
                     discount=tf.ones(shape),
                     observation=tf.cast(glance_maps, tf.float32))

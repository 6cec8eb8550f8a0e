"""Finding and restoring a run's stage checkpoints (model weights only).

Training saves through ``Checkpointer``; tools that use a trained run read
the model (and the policy's actor, ``policy.greedy``) back from the prefixes
found here, building nothing else.
"""
from typing import Optional

import tensorflow as tf

from adafocus_tf.training import run_dir

NUM_STAGES = 4


def latest_stage_checkpoint(run: str, stage: int) -> Optional[str]:
  """The newest checkpoint prefix of stage ``stage``, or None."""
  return tf.train.latest_checkpoint(run_dir.checkpoint_dir(run, stage))


def previous_checkpoint(run: str, stage: int) -> Optional[str]:
  """The last checkpoint of the latest stage before ``stage`` that has one."""
  for earlier in range(stage - 1, -1, -1):
    ckpt = latest_stage_checkpoint(run, earlier)
    if ckpt:
      return ckpt
  return None


def final_checkpoint(run: str) -> str:
  """The checkpoint of the run's latest stage.

  Raises:
    FileNotFoundError: the run has no stage checkpoint.
  """
  ckpt = previous_checkpoint(run, NUM_STAGES)
  if not ckpt:
    raise FileNotFoundError(f"{run} has no stage checkpoint")
  return ckpt


def restore_model(model, path: str) -> None:
  """Loads only the model's weights from a stage checkpoint (prefix path)."""
  tf.train.Checkpoint(model=model).restore(path).expect_partial()


def restore_glance(glance, path: str) -> None:
  """Loads only the glance net's weights of a stage checkpoint's model."""
  tf.train.Checkpoint(model=tf.train.Checkpoint(glance=glance)).restore(
      path).expect_partial()

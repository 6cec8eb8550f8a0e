"""Saving, finding and restoring a run's stage checkpoints.

Training saves through ``Checkpointer`` (model, optimiser, step; resumed
whole); tools that use a trained run read the model (and the policy's
actor, ``policy.greedy``) back from the prefixes found here, building
nothing else.
"""
from typing import Optional

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.runs import run_dir
from adafocus_tf.training import strategy as strategy_lib

_CHECKPOINTS_KEPT = 3


class Checkpointer:
  """Model + optimizer + step checkpoints of one stage.

  Non-chief workers of a multi-worker run also write (every worker must take
  part in saving) but into a scratch directory.

  Args:
    strategy: the run's strategy.
    directory: the stage's checkpoint directory.
    **objects: trackables to save (model, optimizer, step).
  """

  def __init__(self, strategy, directory: str, **objects):
    self.checkpoint = tf.train.Checkpoint(**objects)
    if not strategy_lib.is_chief(strategy):
      directory = io_utils.join(f"{directory}-scratch",
                                f"worker{strategy_lib.task_id(strategy)}")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=_CHECKPOINTS_KEPT)

  def restore_latest(self) -> bool:
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    return bool(latest)

  def save(self, step: int) -> None:
    self.manager.save(checkpoint_number=step)


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
  ckpt = previous_checkpoint(run, len(run_dir.STAGES))
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

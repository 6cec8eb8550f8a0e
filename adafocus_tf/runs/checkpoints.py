"""Saving, finding, identifying and restoring a run's stage checkpoints.

Training saves through ``Checkpointer`` (model, optimiser, step; resumed
whole); tools that use a trained run read the model (and the policy's
actor, ``policy.greedy``) back from the prefixes found here (which ones:
``final_weights``), building nothing else. ``checkpoint_digest`` names a
checkpoint's content, for what is derived from it (caches, thresholds).
"""
import hashlib
import re
from typing import Optional

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.runs import run_dir
from adafocus_tf.training import strategy as strategy_lib

_CHECKPOINTS_KEPT = 3
# CheckpointManager names a checkpoint ``ckpt-<step>``.
_STEP_OF_PREFIX = re.compile(r"ckpt-(\d+)$")
# The temporary names TensorFlow writes the state file ``checkpoint`` under.
_STATE_FILE_TEMPS = "checkpoint.tmp*"


class Checkpointer:
  """Model + optimizer + step checkpoints of one stage.

  Non-chief workers of a multi-worker run also write (every worker must take
  part in saving) but into a scratch directory, and every worker resumes
  from the chief's checkpoints: a worker killed mid-save may have scratch
  checkpoints one behind, and the workers must resume at one step with one
  set of weights.

  Args:
    strategy: the run's strategy.
    directory: the stage's checkpoint directory.
    **objects: trackables to save (model, optimizer, step).
  """

  def __init__(self, strategy, directory: str, **objects):
    self.checkpoint = tf.train.Checkpoint(**objects)
    self.directory = directory
    self.chief = strategy_lib.is_chief(strategy)
    if not self.chief:
      directory = io_utils.join(f"{directory}-scratch",
                                f"worker{strategy_lib.task_id(strategy)}")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=_CHECKPOINTS_KEPT)

  def restore_latest(self) -> bool:
    """Restores the chief's latest checkpoint; whether there was one.

    The chief first removes what a killed save of the state file left:
    CheckpointManager writes ``checkpoint`` through a temporary
    ``checkpoint.tmp<hex>`` and a rename, which on object storage is a
    copy and a delete that a kill can cut between (the run's lock keeps
    any other writer out meanwhile).
    """
    if self.chief:
      for stray in io_utils.glob(io_utils.join(self.directory,
                                               _STATE_FILE_TEMPS)):
        tf.io.gfile.remove(stray)
    latest = tf.train.latest_checkpoint(self.directory)
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    return bool(latest)

  def save(self, step: int) -> None:
    self.manager.save(checkpoint_number=step)


def latest_stage_checkpoint(run: str, stage: int) -> Optional[str]:
  """The newest checkpoint prefix of stage ``stage``, or None."""
  return tf.train.latest_checkpoint(run_dir.checkpoint_dir(run, stage))


def previous_checkpoint(run: str, stage: int) -> Optional[str]:
  """The last checkpoint of the latest finished stage before ``stage``.

  An earlier stage that has checkpoints but no ``done.json`` is passed
  over: its weights are not what that stage ends with.
  """
  for earlier in range(stage - 1, -1, -1):
    if run_dir.stage_done(run, earlier):
      ckpt = latest_stage_checkpoint(run, earlier)
      if ckpt:
        return ckpt
  return None


def step_of(prefix: str) -> Optional[int]:
  """The step in a ``ckpt-<step>`` prefix's name, or None."""
  match = _STEP_OF_PREFIX.search(prefix)
  return int(match.group(1)) if match else None


def checkpoint_digest(prefix: str) -> str:
  """A digest of a checkpoint's content (hex SHA-256).

  TensorFlow's ``<prefix>.index`` records, for every saved tensor, its
  dtype, shape, place in the data files and a CRC32C of its bytes, so its
  digest changes whenever any weight does, without reading the data files
  (hundreds of MB for a ResNet-50 checkpoint, a few KB of index). Two
  checkpoints saved under one name with other weights get other digests.

  Args:
    prefix: a checkpoint prefix (``.../ckpt-40``).

  Raises:
    FileNotFoundError: ``<prefix>.index`` does not exist.
  """
  index = f"{prefix}.index"
  if not io_utils.exists(index):
    raise FileNotFoundError(f"{index} not found: {prefix} is not a "
                            "checkpoint")
  with tf.io.gfile.GFile(index, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def restore_model(model, path: str) -> None:
  """Loads only the model's weights from a stage checkpoint (prefix path)."""
  tf.train.Checkpoint(model=model).restore(path).expect_partial()


def restore_glance(glance, path: str) -> None:
  """Loads only the glance net's weights of a stage checkpoint's model."""
  tf.train.Checkpoint(model=tf.train.Checkpoint(glance=glance)).restore(
      path).expect_partial()

"""What one training stage is: the protocol ``StageTrainer`` drives.

In the spirit of TF Model Garden's ``Task``: a stage builds its networks
and learner (``build``), names what its checkpoint holds, reads its data
(``build_inputs``) and takes one replica's step (``replica_step``); the
generic trainer (``training/stage_trainer.py``) owns everything else once:
the strategy's scope, checkpoints and resuming, the step loop, progress
bars, TensorBoard writers and profiling. A family's stage plan
(``ModelFamily.stage_plan``) lists its tasks by stage number.
"""
from __future__ import annotations

import abc
from typing import Dict, Optional

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.runs import checkpoints
from adafocus_tf.training import stage_inputs


class Task(abc.ABC):
  """One stage of a run.

  Args:
    cfg: the run's config; the stage reads its ``stage<N>`` section
      (``epochs``, ``batch_size``, ``steps_per_epoch`` at least).
    stage: the stage number.
    policy_run: the run whose finished stage 2 gives a stage its policy
      (default: the run trained).

  Attributes:
    model: the family's model, once ``build`` ran.
  """

  # Whether the compiled step converts Python control flow (AutoGraph).
  autograph = True

  def __init__(self, cfg: ExperimentConfig, stage: int,
               policy_run: Optional[str] = None):
    self.cfg, self.stage, self.policy_run = cfg, stage, policy_run
    self.family = registry.of(cfg)
    self.section = getattr(cfg, f"stage{stage}")
    self.model = None

  # -- built once, inside the strategy's scope ------------------------------
  @abc.abstractmethod
  def build(self) -> None:
    """Creates the model and the learner's state (optimizer, policy)."""

  @abc.abstractmethod
  def checkpoint_objects(self) -> Dict[str, tf.Module]:
    """What the stage's checkpoints hold besides the step counter."""

  def initialize_from(self, init_from: str) -> None:
    """Starts from an earlier stage's checkpoint: its ``model``."""
    checkpoints.restore_model(self.model, init_from)

  def fresh_start(self) -> str:
    """What the log says when the stage starts from nothing."""
    return f"stage {self.stage} starts from random initialisation"

  # -- data ------------------------------------------------------------------
  def build_inputs(self, strategy, split_dir: str, epoch: int,
                   skip_steps: int):
    """The training data of one epoch from ``skip_steps`` on, distributed.

    Args:
      strategy: the ``tf.distribute`` strategy.
      split_dir: the training split.
      epoch: the epoch (0-based).
      skip_steps: steps of the epoch already done.
    """
    return stage_inputs.distributed_epoch(strategy, self.cfg, split_dir,
                                        self.section.batch_size, epoch,
                                        skip_steps)

  # -- one step --------------------------------------------------------------
  @abc.abstractmethod
  def replica_step(self, batch, global_batch: int, with_terms: bool = False):
    """One replica's share of a step.

    Args:
      batch: this replica's batch.
      global_batch: videos per step over every replica.
      with_terms: also return the details ``one_step`` reports.

    Returns:
      (dict of tensors to sum over replicas, dict of details or {}).
    """

  def step_outputs(self, sums, global_batch: int) -> Dict[str, float]:
    """A step's summed outputs as the floats the loop adds up per epoch."""
    del global_batch
    return {k: float(v) for k, v in sums.items()}

  def epoch_start(self, epoch: int) -> None:
    """Called before each epoch (e.g. the learning rates of its schedule)."""

  # -- what the trainer reports ----------------------------------------------
  @abc.abstractmethod
  def progress_fields(self, sums: Dict[str, float],
                      videos: int) -> Dict[str, str]:
    """Progress-bar fields from the epoch's sums over ``videos``."""

  @abc.abstractmethod
  def write_scalars(self, step: int, out: Dict[str, float],
                    rate: float) -> None:
    """Writes one step's TensorBoard scalars (inside the writer)."""

  def write_images(self, writer, step: int, dist_batch, strategy) -> None:
    """Writes pictures at an epoch's end; default none.

    Called on every worker of a multi-worker job, with the chief's writer
    there and a no-op writer on the others: what it computes must be the
    same on all (the model's batch-norm statistics, read outside a step,
    are all-reduced over the workers).
    """

  @abc.abstractmethod
  def stats(self, result) -> dict:
    """The stage's result from the last epoch's
    ``stage_trainer.EpochResult``."""

"""Runs the stages of an experiment in order.

A run directory holds every stage (``run_dir``). The run's model family
says which stages it trains and what each is (``ModelFamily.stage_plan``):
V1 runs have stages 0-3 (backbones, random patches, the PPO policy, policy
patches), V2 runs stages 0 and 1 (backbones, then everything end to end).
``run_stages`` trains the requested stages; a finished stage (``done.json``) is skipped, an
interrupted one resumes from its last checkpoint, and a stage that has not
started takes its model weights from the latest earlier stage's last
checkpoint (or from ``init_from``).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterable, Optional

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.families import registry
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import data_check
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_config
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import run_lock
from adafocus_tf.training import cluster
from adafocus_tf.training import stage_inputs
from adafocus_tf.training import stage_trainer
from adafocus_tf.training import strategy as strategy_lib

STAGES = run_dir.STAGES
# What a worker's collectives raise when another worker stopped (its
# heartbeats missed, its connection reset).
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.AbortedError,
                  tf.errors.CancelledError)


def _stage_epochs(cfg: ExperimentConfig, stage: int) -> int:
  return getattr(cfg, f"stage{stage}").epochs


def run_stages(cfg: ExperimentConfig, run: str, stages: Iterable[int],
               strategy, init_from: Optional[str] = None,
               progress: bool = True, max_steps: int = 0,
               checkpoint_every: int = 50, profile_steps: str = "",
               on_start: Optional[Callable[[], None]] = None) -> dict:
  """Trains ``stages`` of the run in order.

  The chief holds the run's lock throughout (``run_lock``: one trainer per
  run directory). Before any step: the prepared data is checked against the
  config (``check_data``) and the config against the run's ``config.json``
  (``run_config.reconcile``: a run's weights keep their settings); half-
  written checkpoints of a killed save are deleted (chief only). A stage
  starts from the last finished stage before it, never from an unfinished
  one.

  Args:
    cfg: the experiment config (written to the run directory).
    run: run directory (local or ``s3://``).
    stages: stage numbers to run, a subset of 0-3.
    strategy: a ``tf.distribute`` strategy.
    init_from: model checkpoint for the first stage that is not resuming.
    progress: progress bars.
    max_steps: stop each stage after this many steps (tests, smoke runs).
    checkpoint_every: steps between checkpoints of every stage.
    profile_steps: ``"A,B"``: a TensorBoard profile of steps A..B of every
      stage run.
    on_start: called on the chief once the run is held and its config
      accepted, before anything else is written (where the command keeps
      its log).

  Returns:
    dict stage -> the stage's training stats.

  Raises:
    run_lock.RunLockedError: another trainer holds the run (nothing is
      written).
    final_weights.UnfinishedStageError: a stage to start comes after an
      unfinished one (and ``init_from`` is not given).
    data_check.DataMismatchError: the data's classes are not the config's
      or the run's.
    run_config.ConfigChangeError: the command changes a field that the
      run's trained weights depend on.
    cluster.WorkerLostError: another worker of a multi-worker job stopped
      (the same command on every worker resumes).
  """
  stages = sorted(stages)
  for stage in stages:
    if stage not in STAGES:
      raise ValueError(f"no stage {stage}; stages are {STAGES}")
  chief = strategy_lib.is_chief(strategy)
  splits = [cfg.data.train_split]
  # The held-out split, when there is one, gives TensorBoard's patch images.
  if io_utils.exists(io_utils.join(
      pipeline.split_dir(cfg.data, cfg.data.eval_split), shards.META)):
    splits.append(cfg.data.eval_split)
  class_names = data_check.check_data(cfg, splits, run)
  # The chief holds the run while it trains; its workers write only their
  # scratch checkpoints.
  with run_lock.RunLock(run) if chief else contextlib.nullcontext():
    try:
      return _run_locked(cfg, run, stages, strategy, chief, class_names,
                         init_from, progress, max_steps, checkpoint_every,
                         profile_steps, on_start)
    except _PEER_FAILURES as e:
      if strategy_lib.task_id(strategy) is None:
        raise
      raise cluster.lost_worker(e, _last_checkpoint(run, stages)) from None


def _last_checkpoint(run: str, stages) -> str:
  """Where a stopped multi-worker job resumes, for its error line."""
  for stage in reversed(stages):
    last = checkpoints.latest_stage_checkpoint(run, stage)
    if last:
      return f"(last checkpoint: {last})"
  return "(no checkpoint of these stages yet)"


def check_stage(cfg: ExperimentConfig, stage: int) -> None:
  """Refuses a stage the config's model family does not train.

  Raises:
    ValueError: naming the stage and the family's stages.
  """
  if stage not in STAGES:
    raise ValueError(f"no stage {stage}; stages are {STAGES}")
  family = registry.of(cfg)
  if stage not in family.stage_plan():
    raise ValueError(f"stage {stage}: an {family.title} run trains stages "
                     f"{family.stages_text()} only")


def make_task(cfg: ExperimentConfig, stage: int,
              policy_run: Optional[str] = None):
  """The task of one stage of the config's family's plan (not yet built).

  Args:
    cfg: the run's config.
    stage: the stage.
    policy_run: the run whose finished stage 2 gives a stage its policy.

  Raises:
    ValueError: a stage the config's family does not train.
  """
  check_stage(cfg, stage)
  return registry.of(cfg).stage_plan()[stage](cfg, stage, policy_run)


def make_trainer(cfg: ExperimentConfig, stage: int, strategy, run: str,
                 policy_run: Optional[str] = None, checkpoint_every: int = 50,
                 progress: bool = True) -> stage_trainer.StageTrainer:
  """The trainer of one stage of a run (not yet initialised).

  Args:
    cfg: the run's config.
    stage: the stage (one of the family's plan).
    strategy: a ``tf.distribute`` strategy.
    run: the run directory the trainer writes (checkpoints, logs).
    policy_run: the run whose finished stage 2 gives stage 3's patches
      (default ``run``).
    checkpoint_every: steps between checkpoints.
    progress: progress bars.

  Raises:
    ValueError: a stage the config's family does not train.
  """
  return stage_trainer.StageTrainer(
      make_task(cfg, stage, policy_run or run), strategy, run,
      checkpoint_every=checkpoint_every, progress=progress)


def _check_earlier_stages(cfg: ExperimentConfig, run: str, stage: int,
                          init_from: Optional[str]) -> None:
  """Refuses to start ``stage`` after an unfinished earlier stage.

  Its weights would come from a half-trained checkpoint, or, passing it
  over, from an older stage than the user expects.

  Raises:
    final_weights.UnfinishedStageError: naming the stage and its progress.
  """
  if init_from:
    return
  for u in final_weights.unfinished_stages(run):
    if u.stage < stage and _stage_epochs(cfg, u.stage) > 0:
      raise final_weights.UnfinishedStageError(
          f"stage {u.stage} of {run} is unfinished (its latest checkpoint is "
          f"at {u.progress()}), so stage {stage} cannot start from it: "
          f"train stage {u.stage} to its end first (--stage=all or "
          f"--stage={u.stage}), or start stage {stage} from a checkpoint "
          "with --init_from")


def _run_locked(cfg, run, stages, strategy, chief, class_names, init_from,
                progress, max_steps, checkpoint_every, profile_steps,
                on_start) -> dict:
  """``run_stages`` once the data is checked (``class_names``: its classes)
  and the run is held (the other arguments: ``run_stages``')."""
  run_config.reconcile(run, cfg, chief)
  if chief and on_start is not None:
    on_start()
  if chief and not io_utils.exists(io_utils.join(run, run_dir.CLASSES)):
    io_utils.write_json(io_utils.join(run, run_dir.CLASSES),
                        {"class_names": class_names})
  # The workers read what the chief wrote (config, done.json) after it.
  cluster.barrier(strategy)
  results = {}
  for stage in stages:
    if run_dir.stage_done(run, stage):
      logging.info("stage %d already done in %s", stage, run)
      results[stage] = io_utils.read_json(run_dir.done_path(run, stage))
      continue
    if _stage_epochs(cfg, stage) == 0:
      logging.info("stage %d has 0 epochs in this config; skipped", stage)
      continue
    _check_earlier_stages(cfg, run, stage, init_from)
    if chief:
      run_dir.remove_checkpoint_temps(run, stage)
    start = init_from or checkpoints.previous_checkpoint(run, stage)
    init_from = None
    stats = _train_stage(cfg, run, stage, strategy, start, progress,
                         max_steps, checkpoint_every, profile_steps)
    results[stage] = stats
    goal = stage_inputs.total_steps(cfg, stage)
    if max_steps:
      goal = min(goal, max_steps)
    if chief and stats.get("step", 0) >= goal:
      io_utils.write_json(run_dir.done_path(run, stage), stats)
    cluster.barrier(strategy)
  return results


def _train_stage(cfg, run, stage, strategy, start, progress, max_steps,
                 checkpoint_every, profile_steps) -> dict:
  """Builds, initialises (``start``: the checkpoint a new stage starts
  from) and trains one stage (the other arguments: ``run_stages``');
  its stats."""
  trainer = make_trainer(cfg, stage, strategy, run,
                         checkpoint_every=checkpoint_every, progress=progress)
  logging.info(trainer.initialize(start))
  return trainer.train(max_steps=max_steps, profile_steps=profile_steps)

"""Exactly one optimizer step of a stage, its random draws given.

  result = one_step.train_one_step(run, stage=1, batch=batch, out=out_dir)
  result.terms            # every loss term's batch mean
  result.gradient_norms   # each variable group's gradient norm
  result.checkpoint       # the weights after the step, a stage checkpoint

This is how training is compared with the official code step by step
(``tests/convert/test_train_parity.py``): from the same weights (a run,
e.g. one the converter wrote from an official checkpoint) and the same
batch, one step of the stage's own task and trainer (``experiment.make_task``,
``stage_trainer.StageTrainer``):
its loss, its optimizer with the per-group learning rates, the cosine
schedule at ``epoch``, weight decay, gradient clipping and batch-norm
updates; the step is the one the trainer runs in training
(``StageTrainer.make_train_fn``), not a copy. What training draws at
random is given instead:

  * the frames themselves (sampling, crops and flips are the caller's);
  * V1's random patches: ``patch_choice.RANDOM_OFFSETS``, int [B, K, 2]
    top-left pixels;
  * AdaFocusV2's random branch: ``patch_choice.RANDOM_POSITIONS``, float
    [B, K, 2] in [0, 1] (Uni-AdaFocus: [B, N, 2], one per candidate frame,
    with its other draws under the keys of ``families/uni/loss.py``);
  * dropout: switched off by the run's config (``model.dropout``,
    ``model.head_dropout``), or keyed by the batch's ``seed``.

The weights after the step are written as a new run, ``out``, whose stage
checkpoint restores like any run's (``checkpoints.restore_model``), so the
converter's key mapping compares it with a PyTorch state dict. The step
starts from the stage's latest checkpoint in ``run`` (or the last finished
stage before it) with a fresh optimizer: zero momentum, as a PyTorch
optimizer made for a loaded state dict.

Stage 2 (V1's PPO) updates from rollouts, not batches: its update on a
recorded rollout is ``training.ppo.one_update``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from adafocus_tf import errors
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.inference import clips
from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.training import experiment
from adafocus_tf.training import stage_trainer
from adafocus_tf.training import tasks



class StepInputError(errors.RefusedError, ValueError):
  """A step asked of a stage the run does not train, or a batch or draw of
  the wrong shape (the message names it)."""


@dataclasses.dataclass
class StepResult:
  """What one step did.

  Attributes:
    loss: the loss minimised (the weighted sum of ``terms``).
    terms: every loss term's mean over the batch (``step_loss.StepLoss``).
    weights: each term's weight in ``loss``.
    gradient_norms: each variable group's gradient norm (before weight
      decay and clipping).
    learning_rates: each group's learning rate in the step.
    run: the run written (``out``).
    checkpoint: its stage checkpoint: the weights after the step.
  """
  loss: float
  terms: Dict[str, float]
  weights: Dict[str, float]
  gradient_norms: Dict[str, float]
  learning_rates: Dict[str, float]
  run: str
  checkpoint: str


def check_shape(name: str, value, want, dtype_kind: str) -> None:
  """Refuses ``value`` unless its shape is ``want`` and its kind ``dtype_kind``.

  Args:
    name: what the value is, for the message (a batch key, a draw).
    value: an array or tensor.
    want: the shape needed; None for a dimension of any size.
    dtype_kind: ``float`` or ``int``.

  Raises:
    StepInputError: naming ``name``, its shape or kind and the one needed.
  """
  shape = tuple(np.shape(value))
  if len(shape) != len(want) or any(
      w is not None and s != w for s, w in zip(shape, want)):
    raise StepInputError(f"{name}: shape {list(shape)}, but the step needs "
                         f"{[('any' if w is None else w) for w in want]}")
  kind = tf.as_dtype(tf.convert_to_tensor(value).dtype)
  if (dtype_kind == "float") != kind.is_floating:
    need = "floating-point" if dtype_kind == "float" else "integer"
    raise StepInputError(f"{name}: {kind.name}, but the step needs {need} "
                         "values")


def complete_batch(task: tasks.SupervisedTask, batch: dict) -> dict:
  """The batch a trainer reads, from the frames, labels and draws given.

  Args:
    task: the stage stepped (its config, and its ``random_draw``: the draw
      it takes).
    batch: the frame streams the model reads (``clips.frame_streams``:
      ``frames`` [B, T, S, S, 3], or ``glance_frames`` and
      ``focus_frames``), normalised as the pipeline gives them, in
      chronological order; ``label`` int [B]; optionally ``multi_hot``
      [B, C] (default: one-hot of ``label``), ``seed`` int [B, 2] (default
      zeros: dropout masks and any draw not given) and the random draws
      (module doc).

  Returns:
    The batch with ``seed`` and ``multi_hot`` filled in, as tensors.

  Raises:
    StepInputError: a missing stream, or a stream, label or draw of the
      wrong shape (named).
  """
  cfg = task.cfg
  d = cfg.data
  streams = clips.frame_streams(cfg)
  missing = sorted(set(streams) - set(batch) | ({"label"} - set(batch)))
  if missing:
    raise StepInputError(f"the batch lacks {missing} (a {cfg.model.variant} "
                         f"run's step reads {sorted(streams)} and label)")
  size = int(np.shape(batch["label"])[0])
  for key, count in streams.items():
    check_shape(key, batch[key], (size, count, d.frame_size, d.frame_size,
                                   3), "float")
  check_shape("label", batch["label"], (size,), "int")
  positions = (1 if cfg.model.patch_per_video
               else patch_choice.patch_steps(cfg))
  draws = {patch_choice.RANDOM_OFFSETS: ("int", positions),
           patch_choice.RANDOM_POSITIONS: (
               "float", registry.of(cfg).random_position_steps(cfg))}
  for key, (kind, count) in draws.items():
    if key in batch:
      check_shape(key, batch[key], (size, count, 2), kind)
  wanted = task.random_draw
  for key in draws:
    if key in batch and key != wanted:
      raise StepInputError(f"{key} given, but stage {task.stage} of a "
                           f"{cfg.model.variant} run draws {wanted}")
  out = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
  out["label"] = tf.cast(out["label"], tf.int32)
  out.setdefault("seed", tf.zeros([size, 2], tf.int64))
  out.setdefault("multi_hot", tf.one_hot(out["label"], d.num_classes))
  return out


def train_one_step(run: str, stage: int, batch: dict, out: str,
                   epoch: int = 0,
                   strategy: Optional[tf.distribute.Strategy] = None
                   ) -> StepResult:
  """One optimizer step of ``stage`` of ``run`` on ``batch`` (module doc).

  Args:
    run: the run directory whose weights the step starts from.
    stage: the stage whose trainer takes the step (0, 1 or 3 of a V1 or
      two-stream run; 0 or 1 of an AdaFocusV2 run).
    batch: see ``complete_batch``.
    out: a new run directory for the weights after the step (must not
      exist).
    epoch: the epoch whose learning rate the step takes (the cosine
      schedule of the stage).
    strategy: a ``tf.distribute`` strategy (default: one device).

  Returns:
    The ``StepResult``.

  Raises:
    StepInputError: a stage the run does not train, ``out`` exists, or a
      batch or draw of the wrong shape.
    FileNotFoundError: the run has no checkpoint to start the stage from.
  """
  cfg = run_dir.read_config(run)
  start = stage_start(cfg, run, stage, out)
  task = experiment.make_task(cfg, stage, policy_run=run)
  if not isinstance(task, tasks.SupervisedTask):
    raise StepInputError(f"stage {stage} (PPO) learns from rollouts, not "
                         "from a batch: its update on a rollout given is "
                         "training.ppo.one_update.update_once")
  inputs = complete_batch(task, batch)
  run_dir.write_config(out, cfg)
  trainer = stage_trainer.StageTrainer(
      task, strategy or tf.distribute.get_strategy(), out, progress=False)
  trainer.initialize(start)
  task.epoch_start(epoch)
  size = int(inputs["label"].shape[0])
  sums, details = trainer.make_train_fn(size, with_terms=True)(inputs)
  return StepResult(
      loss=float(sums["loss"]),
      terms={k: float(v) for k, v in details["terms"].items()},
      weights=dict(task.term_weights),
      gradient_norms={k: float(v) for k, v in details["norms"].items()},
      learning_rates=task.optimizer.learning_rates(), run=out,
      checkpoint=save_step(trainer, out, stage))


def stage_start(cfg: ExperimentConfig, run: str, stage: int,
                out: str) -> str:
  """The checkpoint one step (or update) of ``stage`` of ``run`` starts
  from, once the request is checked.

  Args:
    cfg: the run's config.
    run: the run directory.
    stage: the stage stepped.
    out: the new run directory the step will write.

  Returns:
    The stage's latest checkpoint in ``run``, or the last finished stage's
    before it.

  Raises:
    StepInputError: a stage the run does not train, or ``out`` exists.
    FileNotFoundError: the run has no checkpoint to start the stage from.
  """
  try:
    experiment.check_stage(cfg, stage)
  except ValueError as e:
    raise StepInputError(str(e)) from None
  if io_utils.exists(out):
    raise StepInputError(f"{out} exists: the step writes a new run")
  start = (checkpoints.latest_stage_checkpoint(run, stage)
           or checkpoints.previous_checkpoint(run, stage))
  if start is None:
    raise FileNotFoundError(f"{run} has no checkpoint to start stage "
                            f"{stage} from")
  return start


def save_step(trainer, out: str, stage: int) -> str:
  """Saves the weights after the one step as step 1 of ``out``'s stage.

  Args:
    trainer: the stage's trainer, after its step.
    out: the run directory it writes.
    stage: the stage stepped.

  Returns:
    The checkpoint written.
  """
  trainer.step.assign(1)
  trainer.ckpt.save(1)
  return checkpoints.latest_stage_checkpoint(out, stage)

"""The one trainer of every stage: a ``Task`` driven under a strategy.

What every stage shares lives here once: the seeded initial weights, the
strategy's scope, checkpoints (every ``checkpoint_every`` steps and at each
epoch's end) and resuming at the same step with the same data (the
pipeline's randomness is keyed by video and epoch), the compiled step
(each replica's share, sums all-reduced), the step loop with its progress
bar, TensorBoard scalars and pictures (the chief's) and profiling. What differs between stages is the task's
(``training/tasks``).

One loop serves every strategy: the global batch is split by the input
pipeline's input context, losses are summed over the replica's videos and
divided by the global batch, and the optimizer all-reduces the gradients.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, Optional

import tensorflow as tf
import tqdm

from adafocus_tf.data import pipeline
from adafocus_tf.data import record_integrity
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.training import stage_inputs
from adafocus_tf.training import strategy as strategy_lib


@dataclasses.dataclass
class EpochResult:
  """What the last epoch run did (``Task.stats`` reads it).

  Attributes:
    step: global step reached.
    epoch: 1-based number of that epoch.
    sums: each step output summed over the epoch's steps run here.
    videos: videos seen in those steps.
    steps: steps run in that epoch by this call.
    seconds: their wall-clock time.
  """
  step: int
  epoch: int
  sums: Dict[str, float]
  videos: int
  steps: int
  seconds: float


def seed_initial_weights(cfg, stage: int) -> None:
  """Seeds the weights a stage's trainer creates by the run seed and stage.

  Keras initialisers take their seeds from the process's global Python and
  TensorFlow generators, so without this a stage's starting weights (those
  no checkpoint or ``init_from`` sets, e.g. the policy's) would depend on
  what ran earlier in the process: a stage resumed in a new process would
  not start where an uninterrupted run's did. Reseeds the global Python,
  NumPy and TensorFlow generators.

  Args:
    cfg: the run's config (its ``seed``).
    stage: the stage about to build its networks.
  """
  tf.keras.utils.set_random_seed(
      (len(run_dir.STAGES) * cfg.seed + stage) % 2**32)


class StageTrainer:
  """Trains one stage of a run.

  Args:
    task: the stage's ``Task`` (built here, in the strategy's scope).
    strategy: a ``tf.distribute`` strategy.
    run: the run directory (checkpoints, logs).
    checkpoint_every: steps between checkpoints (and at each epoch's end).
    log_every: steps between TensorBoard scalar writes.
    progress: show per-epoch progress bars (chief only).

  Attributes:
    task: the task.
    step: the checkpointed step counter.
    ckpt: the stage's ``checkpoints.Checkpointer``.
  """

  def __init__(self, task, strategy: tf.distribute.Strategy, run: str,
               checkpoint_every: int = 50, log_every: int = 10,
               progress: bool = True):
    self.task, self.strategy, self.run = task, strategy, run
    self.cfg, self.stage = task.cfg, task.stage
    self.checkpoint_every, self.log_every = checkpoint_every, log_every
    self.chief = strategy_lib.is_chief(strategy)
    self.progress = progress and self.chief
    self.train_dir = pipeline.split_dir(self.cfg.data,
                                        self.cfg.data.train_split)
    seed_initial_weights(self.cfg, self.stage)
    with strategy.scope():
      task.build()
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name="step")
    self.ckpt = checkpoints.Checkpointer(
        strategy, run_dir.checkpoint_dir(run, self.stage), step=self.step,
        **task.checkpoint_objects())
    self._writer = None

  @property
  def writer(self):
    # Created on first use: a trainer built only to take or inspect a
    # step writes no logs.
    if self._writer is None:
      self._writer = (
          tf.summary.create_file_writer(run_dir.log_dir(self.run, self.stage))
          if self.chief else tf.summary.create_noop_writer())
    return self._writer

  def initialize(self, init_from: Optional[str]) -> str:
    """Resumes the stage, or starts it from ``init_from``'s weights.

    Returns:
      What happened, for the log.
    """
    if self.ckpt.restore_latest():
      return f"resumed stage {self.stage} at step {int(self.step.numpy())}"
    if init_from:
      self.task.initialize_from(init_from)
      return f"stage {self.stage} initialised from {init_from}"
    return self.task.fresh_start()

  def make_train_fn(self, global_batch: int, with_terms: bool = False):
    """The compiled step.

    Args:
      global_batch: videos per step.
      with_terms: also return the task's details (``one_step``; one
        replica only).

    Returns:
      distributed batch -> {name: sum over replicas}, and with
      ``with_terms`` (that, the details).
    """
    def train_fn(dist_batch):
      sums, details = self.strategy.run(
          self.task.replica_step,
          args=(dist_batch, global_batch, with_terms))
      sums = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v,
                                      axis=None) for k, v in sums.items()}
      return (sums, details) if with_terms else sums
    return tf.function(train_fn,
                       autograph=self.task.autograph)

  def train(self, max_steps: int = 0, profile_steps: str = "") -> dict:
    """Trains from the step counter to the end of the stage (or
    ``max_steps`` steps in total).

    Each epoch: the task's ``epoch_start``, its data from the step reached
    (a resumed epoch skips what it did), the compiled step with a progress
    bar, TensorBoard scalars every ``log_every`` steps, a checkpoint every
    ``checkpoint_every`` steps and at the epoch's end, then the task's
    pictures (written by the chief). A corrupt shard stops it with an
    ``errors.RefusedError`` naming the record, or with
    ``data.skip_bad_records`` the records skipped are listed at each
    epoch's end (``record_integrity``).

    Args:
      max_steps: stop at this global step (0: train all epochs).
      profile_steps: ``"A,B"``: write a TensorBoard profile of steps A..B.

    Returns:
      The task's stats of the last epoch (``Task.stats``), or the step
      alone when nothing was left to train.
    """
    result = self._run_epochs(max_steps, step_profiler.StepProfiler(
        run_dir.log_dir(self.run, self.stage), profile_steps))
    # Entry points may end with os._exit (io_utils.exit_process).
    self.writer.flush()
    if result is None:
      return {"step": int(self.step.numpy())}
    return self.task.stats(result)

  def _run_epochs(self, max_steps: int, profiler) -> Optional[EpochResult]:
    """The epochs of ``train``; the last one's ``EpochResult``, or None."""
    task, section = self.task, self.task.section
    global_batch = section.batch_size
    compiled = self.make_train_fn(global_batch)
    steps_per_epoch = stage_inputs.steps_per_epoch(self.cfg, section,
                                                   self.train_dir)
    step = int(self.step.numpy())
    total = steps_per_epoch * section.epochs
    if max_steps:
      total = min(total, max_steps)
    result = None
    profiler.step(step)
    try:
      while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        task.epoch_start(epoch)
        data = iter(task.build_inputs(self.strategy, self.train_dir, epoch,
                                      skip))
        end = min(steps_per_epoch, total - epoch * steps_per_epoch)
        bar = tqdm.tqdm(total=end, initial=skip, unit="step",
                        desc=f"stage {self.stage} epoch {epoch + 1}/"
                        f"{section.epochs}", disable=not self.progress)
        sums, videos, batch = {}, 0, None
        start = time.perf_counter()
        for _ in range(skip, end):
          with record_integrity.refuse_corrupt_shards():
            batch = next(data)
          with profiler.trace(step + 1):
            out = task.step_outputs(compiled(batch), global_batch)
          step += 1
          self.step.assign(step)
          profiler.step(step)
          videos += global_batch
          for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v
          rate = videos / (time.perf_counter() - start)
          bar.update(1)
          bar.set_postfix(**task.progress_fields(sums, videos),
                          videos_per_s=f"{rate:.1f}")
          if step % self.log_every == 0:
            with self.writer.as_default():
              task.write_scalars(step, out, rate)
          if step % self.checkpoint_every == 0:
            self.ckpt.save(step)
        bar.close()
        record_integrity.log_skipped(f"epoch {epoch + 1}")
        self.ckpt.save(step)
        # On every worker (the others' writer writes nothing): reading the
        # model's batch-norm statistics outside a step all-reduces them
        # over the workers, which a chief alone would wait for forever.
        task.write_images(self.writer, step, batch, self.strategy)
        result = EpochResult(step, epoch + 1, sums, videos, end - skip,
                             time.perf_counter() - start)
    finally:
      profiler.stop()
    return result

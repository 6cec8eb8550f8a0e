"""The epoch and step loop shared by every training stage.

It resumes mid-epoch from the step counter, shows a progress bar, writes
checkpoints every ``checkpoint_every`` steps and at each epoch's end, calls
the stage's logging hooks, and profiles the steps asked for. A corrupt
shard stops it with an ``errors.RefusedError`` naming the record, or with
``data.skip_bad_records`` the records skipped are listed at each epoch's
end (``record_integrity``).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Iterator, Optional

import tqdm

from adafocus_tf.data import record_integrity
from adafocus_tf.profiling import step_profiler


@dataclasses.dataclass
class EpochResult:
  """What the last epoch run did.

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


def run(*, step_var, epochs: int, steps_per_epoch: int, max_steps: int,
        global_batch: int, epoch_data: Callable[[int, int], Iterator],
        train_step: Callable[[object], Dict[str, float]],
        save: Callable[[int], None], checkpoint_every: int, log_every: int,
        log: Callable[[int, Dict[str, float], float], None],
        postfix: Callable[[Dict[str, float], int], Dict[str, str]],
        epoch_start: Optional[Callable[[int], None]] = None,
        epoch_end: Optional[Callable[[int, object], None]] = None,
        desc: str = "train", progress: bool = True,
        profiler: Optional[step_profiler.StepProfiler] = None
        ) -> Optional[EpochResult]:
  """Trains from ``step_var``'s step to the end of the stage.

  Args:
    step_var: the checkpointed step counter (a ``tf.Variable``).
    epochs: epochs of the stage.
    steps_per_epoch: steps in one epoch.
    max_steps: stop at this global step (0: at the end of the last epoch).
    global_batch: videos per step.
    epoch_data: (epoch, steps to skip) -> iterator of distributed batches.
    train_step: batch -> dict of floats for this step (summed per epoch).
    save: step -> writes a checkpoint.
    checkpoint_every: steps between checkpoints.
    log_every: steps between ``log`` calls.
    log: (step, this step's outputs, videos/s) -> writes scalars.
    postfix: (epoch sums, videos) -> progress-bar fields.
    epoch_start: epoch -> called before the epoch (learning rates).
    epoch_end: (step, last batch) -> called after the epoch's checkpoint.
    desc: progress-bar label.
    progress: show the progress bar.
    profiler: profiles the steps it was given (``--profile_steps``).

  Returns:
    The last epoch's ``EpochResult``, or None when nothing was left to run.

  Raises:
    errors.RefusedError: the input pipeline met a corrupt shard (without
      ``data.skip_bad_records``).
  """
  profiler = profiler or step_profiler.StepProfiler("", None)
  step = int(step_var.numpy())
  total = steps_per_epoch * epochs
  if max_steps:
    total = min(total, max_steps)
  result = None
  profiler.step(step)
  try:
    while step < total:
      epoch, skip = divmod(step, steps_per_epoch)
      if epoch_start:
        epoch_start(epoch)
      data = epoch_data(epoch, skip)
      end = min(steps_per_epoch, total - epoch * steps_per_epoch)
      bar = tqdm.tqdm(total=end, initial=skip, unit="step",
                      desc=f"{desc} epoch {epoch + 1}/{epochs}",
                      disable=not progress)
      sums, videos, batch = {}, 0, None
      start = time.perf_counter()
      for _ in range(skip, end):
        with record_integrity.refuse_corrupt_shards():
          batch = next(data)
        with profiler.trace(step + 1):
          out = train_step(batch)
        step += 1
        step_var.assign(step)
        profiler.step(step)
        videos += global_batch
        for k, v in out.items():
          sums[k] = sums.get(k, 0.0) + v
        rate = videos / (time.perf_counter() - start)
        bar.update(1)
        bar.set_postfix(**postfix(sums, videos),
                        videos_per_s=f"{rate:.1f}")
        if step % log_every == 0:
          log(step, out, rate)
        if step % checkpoint_every == 0:
          save(step)
      bar.close()
      record_integrity.log_skipped(f"epoch {epoch + 1}")
      save(step)
      if epoch_end:
        epoch_end(step, batch)
      result = EpochResult(step, epoch + 1, sums, videos, end - skip,
                           time.perf_counter() - start)
  finally:
    profiler.stop()
  return result

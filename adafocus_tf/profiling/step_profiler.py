"""A TensorBoard profile of a window of training steps (``--profile_steps``).

Profiles are XSpace files (``<logdir>/plugins/profile/<date>/<host>.xplane.pb``)
that TensorBoard's profile plugin shows (``pip install -e ".[profile]"``,
then ``tensorboard --logdir <run>/logs``, tab "Profile").

Training: ``StepProfiler`` traces steps A..B of a loop. How a trainer uses
it (``--profile_steps=A,B``)::

  profiler = step_profiler.StepProfiler(run_dir.log_dir(run, stage), "20,25")
  profiler.step(step)               # once before the loop: steps already done
  try:
    while step < total:
      with profiler.trace(step + 1):  # optional: marks the step in the trace
        ...one training step...
      step += 1
      profiler.step(step)           # after every step: steps done so far
  finally:
    profiler.stop()                 # the loop may end inside the window

Steps count from 1: the profile starts before step A runs and stops once
step B has finished. A resumed stage that is already past A profiles
nothing; one resumed inside the window profiles from where it resumed.

The inference profiler (``launch/profile.py``) times the recognizer's
stages (``inference_parts``) under the same trace levels.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf

# Host tracing of every TensorFlow op, cheap ones included: level 2 (the
# profiler's default) leaves out small CPU ops such as CropAndResize.
VERBOSE_HOST_TRACER = 3


def parse_steps(text: Optional[str]) -> Optional[Tuple[int, int]]:
  """Parses ``--profile_steps``: ``"A,B"`` -> (A, B); empty or None -> None.

  Args:
    text: ``"A,B"`` with 1 <= A <= B (a single ``"A"`` means A,A).

  Raises:
    ValueError: not of that form.
  """
  if text is None or not str(text).strip():
    return None
  parts = [p.strip() for p in str(text).split(",")]
  try:
    numbers = [int(p) for p in parts]
  except ValueError:
    numbers = []
  if len(numbers) == 1:
    numbers *= 2
  if len(numbers) != 2 or not 1 <= numbers[0] <= numbers[1]:
    raise ValueError(f"profile steps {text!r}: use A,B with 1 <= A <= B "
                     "(training steps, counted from 1)")
  return numbers[0], numbers[1]


class StepProfiler:
  """Profiles training steps A..B into ``logdir`` (see the module docstring).

  Args:
    logdir: where the profile goes (``<logdir>/plugins/profile/...``);
      typically the stage's TensorBoard directory.
    steps: ``"A,B"``, an (A, B) pair, or None/"" for a profiler that does
      nothing.
    host_tracer_level: 1 (user annotations), 2 (default: plus expensive
      ops) or 3 (every op).
    python_tracer_level: 1 traces Python function calls too (slow).

  Raises:
    ValueError: bad ``steps``.
  """

  def __init__(self, logdir: str, steps=None, host_tracer_level: int = 2,
               python_tracer_level: int = 0):
    self.logdir = logdir
    self.window = (tuple(steps) if isinstance(steps, (tuple, list))
                   else parse_steps(steps))
    if self.window is not None:
      parse_steps(",".join(map(str, self.window)))
    self.options = tf.profiler.experimental.ProfilerOptions(
        host_tracer_level=host_tracer_level,
        python_tracer_level=python_tracer_level)
    self.active = False
    self.done = False

  @property
  def enabled(self) -> bool:
    return self.window is not None

  def step(self, completed: int) -> None:
    """Reports that ``completed`` steps are done; starts or stops the profile.

    Args:
      completed: training steps finished so far (0 before the first one).
    """
    if not self.enabled or self.done:
      return
    first, last = self.window
    if self.active and completed >= last:
      self.stop()
    elif not self.active and first - 1 <= completed < last:
      self._start()

  def _start(self) -> None:
    try:
      tf.profiler.experimental.start(self.logdir, options=self.options)
    except tf.errors.AlreadyExistsError:
      # Another profile (a user's, or another helper's) is running: skip
      # rather than break training.
      logging.warning("a profiler is already running; steps %s not "
                      "profiled", self.window)
      self.done = True
      return
    self.active = True
    logging.info("profiling steps %d-%d into %s", *self.window, self.logdir)

  def stop(self) -> None:
    """Ends the profile (writes it) if one is running; safe to repeat."""
    if self.active:
      tf.profiler.experimental.stop()
      self.active = False
      self.done = True

  def trace(self, step_number: int):
    """A context marking one step in the trace (a no-op when not profiling).

    Args:
      step_number: the step about to run (1-based).
    """
    if not self.active:
      return contextlib.nullcontext()
    return tf.profiler.experimental.Trace("train", step_num=step_number, _r=1)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.stop()
    return False

"""TensorFlow profiler helpers: a window of training steps, inference parts.

Profiles are XSpace files (``<logdir>/plugins/profile/<date>/<host>.xplane.pb``)
that TensorBoard's profile plugin shows (``pip install -e ".[profile]"``,
then ``tensorboard --logdir <run>/logs``, tab "Profile").

Training: ``StepProfiler`` traces steps A..B of a loop. How a trainer uses
it (``--profile_steps=A,B``)::

  profiler = profiling.StepProfiler(run_dir.log_dir(run, stage), "20,25")
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

Inference: ``inference_parts`` splits whole-clip inference of a run's
``Recognizer`` (either model family) into its stages (glance, policy, head),
each a compiled function run under its own ``Trace`` and name scope, so the
trace viewer shows where the time goes (used by ``launch/profile.py``).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, List, Optional, Tuple

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


def inference_parts(recognizer, choice: Optional[str] = None
                    ) -> List[Tuple[str, Callable]]:
  """Whole-clip inference of a recognizer as named, compiled parts.

  The parts are the recognizer's own stages (``Recognizer.stages``: glance;
  policy, the patch offsets; head, the patches cropped, the focus network
  and the classifier), for either model family. Each takes and returns a
  dict of tensors (a batch in; ``offsets`` and per-step ``probs`` added on
  the way) and runs its ops under a name scope of its own name.

  Args:
    recognizer: a ``Recognizer`` (``inference.loading``).
    choice: the patch choice (``policy``, ``centre``, ...); default the
      recognizer's (its policy when it has one, else the centre).

  Returns:
    ``[(name, fn)]`` in the order they run, names from
    ``recognizer.STAGES``.
  """
  def scoped(name, stage):
    def fn(x):
      with tf.name_scope(name):
        return stage(x)
    # autograph=False: tf-agents networks are written for plain graph mode.
    return name, tf.function(fn, autograph=False)

  return [scoped(name, stage) for name, stage in recognizer.stages(choice)]


def run_parts(parts, batch, step_num: Optional[int] = None,
              timings: Optional[Dict[str, List[float]]] = None):
  """Runs the parts in order, each under a profiler ``Trace`` of its name.

  Args:
    parts: from ``inference_parts``.
    batch: a pipeline batch: the recognizer's normalised frames
      (``Recognizer.input_keys``), and ``seed`` [B, 2].
    step_num: marks the whole pass as this step in the trace (None: no
      step marker).
    timings: if given, each part's wall time in seconds is appended to
      ``timings[name]`` (each part waits for its outputs, so the figure is
      the part's own time on an asynchronous device too).

  Returns:
    The final dict (per-step ``probs`` [B, S, C], ``offsets`` [B, K, 2],
    ...; see ``Recognizer.stages``).
  """
  outer = (tf.profiler.experimental.Trace("inference", step_num=step_num,
                                          _r=1)
           if step_num is not None else contextlib.nullcontext())
  x = dict(batch)
  with outer:
    for name, fn in parts:
      start = time.perf_counter()
      with tf.profiler.experimental.Trace(name):
        x = fn(x)
        # Waiting for the device keeps each part's time its own.
        tf.test.experimental.sync_devices()
      if timings is not None:
        timings.setdefault(name, []).append(time.perf_counter() - start)
  return x

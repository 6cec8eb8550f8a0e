"""``Predictor``'s ``auto`` backend: the fastest on this machine, measured.

Which backend is fastest depends on the CPU (docs/BENCHMARKS.md, issue 27:
TensorFlow's kernels beat the TFLite model on a faster CPU than the one
issue 15 measured). So ``auto`` times each backend that can run the run
(``tflite``, ``hybrid``, ``tf``) on the run's own input shapes (zeros;
``measure``) at each of ``BATCH_SIZES`` and keeps, per batch size, the one
with the smallest median time per video (``fastest``); a call on N videos
runs on the choice of the nearest batch size measured (``for_batch``). The
choices are cached beside the run's ready
forms (``ready_form.cache_dir``) in ``backend-<patches>-<key>.json``, the
key digesting the ready form's key fields, the candidates, the CPU model
(``/proc/cpuinfo``'s ``model name``) and the thread count: a run copied to
another machine measures again. A forced backend never measures.

``$ADAFOCUS_AUTO_BACKEND=order`` makes ``auto`` take the first backend of
the preference order that runs, unmeasured (``measure``, the default,
measures): for runs that must choose alike on every machine and under any
load, such as the test suite (on a CPU other processes share, a backend's
time, XNNPACK's threads above all, varies several-fold).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from adafocus_tf.inference import ready_form
from adafocus_tf.serving import tflite_model

# The calibration's calls (``measure``): a few rounds of a large model's
# ~1 s calls, more of a small one's, short beside the ready form's build.
WARMUP_CALLS = 2
MIN_ROUNDS = 3
MAX_ROUNDS = 30
MIN_SECONDS = 2.0
# A later backend of ``order`` replaces an earlier one only when its median
# is faster by more than this fraction: a near tie is noise on a shared CPU,
# and the order is the one measured in docs/BENCHMARKS.md (issue 15).
MARGIN = 0.1
# The batch sizes timed (videos per call): one clip, as ``predict`` runs,
# and a batch, as evaluation and batched serving run. The TFLite models
# hold batch 1 fixed and loop over a batch's videos while TensorFlow's
# kernels take the batch whole, so the fastest backend can differ: V2's
# hybrid won at batch 1 and lost by 25% to ``tf`` at batch 8
# (docs/BENCHMARKS.md, stop 36).
BATCH_SIZES = (1, 8)
# Changes when the measurement or the file changes (2: a choice per batch
# size).
VERSION = 2
_CPUINFO = "/proc/cpuinfo"
# The environment variable choosing how ``auto`` chooses, and its values.
MODE_ENV = "ADAFOCUS_AUTO_BACKEND"
MEASURE = "measure"
ORDER = "order"


def measuring() -> bool:
  """Whether ``auto`` measures (``MODE_ENV``; module doc).

  Raises:
    ValueError: another value (named).
  """
  mode = os.environ.get(MODE_ENV, MEASURE)
  if mode not in (MEASURE, ORDER):
    raise ValueError(f"${MODE_ENV}={mode!r}: choose {MEASURE!r} or "
                     f"{ORDER!r}")
  return mode == MEASURE


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
  try:
    with open(_CPUINFO, encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def choice_path(run, patches: str, candidates: Sequence[str],
                threads: int) -> str:
  """The file caching the choice (module doc).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice.
    candidates: the backends measured, in preference order.
    threads: the TFLite interpreter's threads.
  """
  key = tflite_model.cache_key(
      weights=run.weights.digest, config=run.cfg.to_json(), patches=patches,
      part="backend", candidates=list(candidates), cpu=cpu_model(),
      threads=threads, calibration_version=VERSION,
      ready_version=ready_form.CACHE_VERSION)
  return os.path.join(ready_form.cache_dir(run),
                      f"{_stem(patches)}{key}.json")


def _stem(patches: str) -> str:
  return f"backend-{patches}-"


def forget(run, patches: str, threads: int) -> None:
  """Deletes the run's cached choices for ``patches`` made on this CPU
  model with ``threads`` threads (the next ``auto`` measures again).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice.
    threads: the TFLite interpreter's threads.
  """
  directory = ready_form.cache_dir(run)
  if not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if not (name.startswith(_stem(patches)) and name.endswith(".json")):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        record = json.load(f)
      if (record.get("cpu") == cpu_model()
          and record.get("threads") == threads):
        os.remove(path)
    except (OSError, ValueError, AttributeError):
      pass  # another process's file, or one being replaced


def cached_choice(path: str, candidates: Sequence[str]
                  ) -> Optional[Tuple[Dict[int, str], str]]:
  """({batch size: the backend the file chose}, the note it recorded), or
  None (no file, unreadable, or a backend not among ``candidates``)."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
    choices = {int(b): name for b, name in record["backends"].items()}
    note = record["note"]
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None
  if not choices or not set(choices.values()) <= set(candidates):
    return None
  return choices, note


def for_batch(batch_sizes: Iterable[int], n: int) -> int:
  """The batch size measured whose choice runs a call on ``n`` videos: the
  nearest on a log scale (the smaller on a tie).

  Args:
    batch_sizes: the batch sizes with a choice.
    n: videos in the call.
  """
  return min(batch_sizes,
             key=lambda b: (abs(math.log(max(n, 1)) - math.log(b)), b))


def measure(calls: Dict[str, Callable[[], object]]) -> Dict[str, float]:
  """{backend: median seconds per call}, the backends taking turns.

  Each is called ``WARMUP_CALLS`` times untimed (first-call work: graph
  optimisation, XNNPACK's set-up), then once per round, in turns so that
  load from other processes falls on every backend alike: at least
  ``MIN_ROUNDS`` rounds, more while the rounds took under
  ``MIN_SECONDS``, at most ``MAX_ROUNDS``.

  Args:
    calls: {backend: a call predicting the calibration input}.
  """
  for call in calls.values():
    for _ in range(WARMUP_CALLS):
      call()
  times = {name: [] for name in calls}
  start = time.perf_counter()
  for round_ in range(MAX_ROUNDS):
    if (round_ >= MIN_ROUNDS
        and time.perf_counter() - start >= MIN_SECONDS):
      break
    for name, call in calls.items():
      t = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - t)
  return {name: float(np.median(t)) for name, t in times.items()}


def fastest(seconds: Dict[str, float], order: Sequence[str]) -> str:
  """The backend to use: the first of ``order`` measured, replaced by each
  later one faster by more than ``MARGIN``.

  Args:
    seconds: {backend: median seconds per call}.
    order: the backends in preference order.
  """
  best = None
  for name in order:
    if name in seconds and (best is None or
                            seconds[name] < (1 - MARGIN) * seconds[best]):
      best = name
  return best


def choose(calls: Dict[int, Dict[str, Callable[[], object]]],
           order: Sequence[str], where: str
           ) -> Tuple[Dict[int, str], Dict[int, Dict[str, float]]]:
  """Measures the backends at each batch size.

  Args:
    calls: {batch size: {backend: a call predicting that many videos of
      the calibration input}}.
    order: the backends in preference order.
    where: the directory the choice is cached in (said in the progress
      line).

  Returns:
    ({batch size: the backend to use}, {batch size: {backend: median
    seconds per video}}).
  """
  names = next(iter(calls.values()))
  logging.info("timing the backends %s on this CPU at %s video(s) per call "
               "(once: cached in %s)", ", ".join(names),
               " and ".join(str(b) for b in calls), where)
  choices, seconds = {}, {}
  for batch, batch_calls in calls.items():
    seconds[batch] = {name: t / batch
                      for name, t in measure(batch_calls).items()}
    choices[batch] = fastest(seconds[batch], order)
    logging.info("batch %d: backend %s (median s per video: %s)", batch,
                 choices[batch], ", ".join(
                     f"{k} {v:.3f}" for k, v in seconds[batch].items()))
  return choices, seconds


def describe(choices: Dict[int, str]) -> str:
  """The choices in words: ``tf``, or ``hybrid at 1 video per call, tf at
  8`` when they differ by batch size.

  Args:
    choices: {batch size: backend chosen}.
  """
  if len(set(choices.values())) == 1:
    return next(iter(choices.values()))
  return ", ".join(f"{name} at {b}" + (" video per call" if b == 1 else "")
                   for b, name in sorted(choices.items()))


def passed_over(choices: Dict[int, str], measured: Sequence[str]) -> str:
  """What the choices passed over for speed (part of
  ``Predictor.backend_note``), or "".

  Args:
    choices: {batch size: backend chosen}.
    measured: the backends measured, in preference order.
  """
  said = []
  for batch, choice in sorted(choices.items()):
    passed = list(measured)[:list(measured).index(choice)]
    if passed:
      said.append(f"{choice} measured faster on this CPU than "
                  f"{' and '.join(passed)} at {batch} video(s) per call")
  return "; ".join(said)


def store(path: str, choices: Dict[int, str], note: str,
          seconds: Dict[int, Dict[str, float]], threads: int) -> None:
  """Caches choices in ``path`` (``choice_path``), atomically; a warning
  when it cannot be written.

  Args:
    path: the file.
    choices: {batch size: backend chosen}.
    note: ``Predictor.backend_note`` of the choices.
    seconds: {batch size: {backend: median seconds per video}}.
    threads: the TFLite interpreter's threads.
  """
  record = {"backends": {str(b): c for b, c in choices.items()},
            "note": note,
            "seconds": {str(b): t for b, t in seconds.items()},
            "cpu": cpu_model(), "threads": threads}
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("could not cache the backend choice at %s (%s)", path, e)

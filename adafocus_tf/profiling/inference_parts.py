"""Whole-clip inference of a recognizer as named, compiled parts.

``inference_parts`` splits a ``Recognizer``'s whole-clip inference (either
model family) into its stages (glance, policy, head), each a compiled
function run under its own ``Trace`` and name scope, so the trace viewer
shows where the time goes (``launch/profile.py``, ``benchmarks/``).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf


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

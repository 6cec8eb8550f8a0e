"""The optional ability of step-by-step inference, for early exit.

A recognizer that can stop a video before it has read all of it derives
from ``StepwiseRecognizer``: at *exit step* e it has spent
``exit_step_macs(cost)[e]`` more and gives a prediction, carrying explicit
state from one step to the next. The V1 model's exit steps are its frames;
the two-stream models' are (0) the glance and the policy, predicting with
the glance alone, and (1) the focus network on the patch, giving the full
prediction. ``early_exit.runner`` runs them; a recognizer without this
ability is refused there by name.
"""
from __future__ import annotations

import abc
import functools
from typing import Any, Dict

import tensorflow as tf

from adafocus_tf.inference import recognizer


class StepwiseRecognizer(recognizer.Recognizer):
  """A ``Recognizer`` that also runs exit step by exit step (module doc).

  Args: as ``Recognizer``.
  """

  def __init__(self, cfg, model, policy=None, policy_glance=None):
    super().__init__(cfg, model, policy, policy_glance)
    self._compiled_steps: Dict[Any, Any] = {}

  @abc.abstractmethod
  def step_inputs(self, batch, e: int) -> dict:
    """The part of whole-clip inputs that exit step ``e`` reads."""

  @abc.abstractmethod
  def initial_state(self, n: int):
    """The state of ``n`` videos before exit step 0 (a nest of [n, ...])."""

  @abc.abstractmethod
  def _step(self, inputs, state, e_kind):
    """One exit step (see ``step``), traced once per ``e_kind``."""

  def step_kind(self, e: int):
    """Exit steps with the same kind share one compiled step (default:
    each step its own)."""
    return e

  def offset_slots(self, e: int, first: int, count: int):
    """Where exit step ``e``'s ``count`` offsets go among the K of a video:
    by default the steps fill the slots in order (V1: frame e; two-stream:
    the one patch at step 0).

    Args:
      e: the exit step.
      first: slots the earlier steps filled.
      count: offsets this step gave.
    """
    del e
    return list(range(first, first + count))

  def compiled(self, key, fn):
    """``fn`` compiled once per ``key``; batches shrink as videos exit, so
    one trace serves every size.

    Args:
      key: what tells the compiled functions apart.
      fn: (inputs, state) -> the step's outputs.
    """
    compiled = self._compiled_steps.get(key)
    if compiled is None:
      compiled = tf.function(fn, autograph=False, reduce_retracing=True)
      self._compiled_steps[key] = compiled
    return compiled

  def step(self, inputs, state, e: int):
    """Exit step ``e`` on the videos still running, compiled.

    Args:
      inputs: ``step_inputs(batch, e)`` of the running videos.
      state: the running videos' state after step e - 1
        (``initial_state`` before step 0).
      e: the exit step.

    Returns:
      (probabilities [n, C] after step e, offsets [n, k, 2] chosen at this
      step (k may be 0), the state after step e).
    """
    kind = self.step_kind(e)
    return self.compiled(kind, functools.partial(self._step, e_kind=kind))(
        inputs, state)

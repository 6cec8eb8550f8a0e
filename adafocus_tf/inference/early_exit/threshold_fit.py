"""Fitting early-exit thresholds to a profile, and what they achieve.

Thresholds are fitted without retraining, on the training split (evaluation
transform): a *profile* (``exit_cost``) says which fraction of videos
should exit at each step, and eta_e is the quantile of the confidences of
the videos still running at step e that lets that many of them go
(``fit_thresholds``, for ``exit_rule.MAX_PROB``).

AdaFocusV2's ``MAX_LOGIT`` thresholds (docs/METHOD.md V2-7) are fitted by
the official rule (``fit_top_thresholds``: the top floor(N p_e) of the
videos still running exit at step e) on training videos under the training
transform. ``fit`` dispatches on the criterion (``exit_rule.criterion_of``);
``summarize`` measures accuracy and cost of thresholds on some videos.
"""
from __future__ import annotations

import numpy as np

from adafocus_tf.evaluation import metrics
from adafocus_tf.inference.early_exit.exit_cost import measured_gflops
from adafocus_tf.inference.early_exit.exit_rule import (
    ALWAYS_LOGIT, MAX_LOGIT, MAX_PROB, NEVER, NEVER_LOGIT, _float_dtype,
    confidences, exit_predictions, exit_steps_from_confidences)


def _fitting_inputs(conf, profile):
  """Checked (conf [N, E] in a float dtype, profile float64 [E]).

  Thresholds are rounded to the confidences' precision, so that they mean
  the same in exit_steps, in float32 JSON round trips and in a graph.
  """
  conf = np.asarray(conf)
  conf = conf.astype(_float_dtype(conf))
  n, e_max = conf.shape
  if n == 0:
    raise ValueError("no videos to fit thresholds on")
  profile = np.asarray(profile, dtype=np.float64)
  if profile.shape != (e_max,):
    raise ValueError(f"profile has {profile.shape} steps, confidences "
                     f"{e_max}")
  return conf, profile


def fit_thresholds(conf, profile) -> np.ndarray:
  """Thresholds under which ``profile[e]`` of the videos exit at step e.

  Walks the steps in order. The target number exited by the end of step e
  is round(N x cumsum(profile)[e]); k_e, the videos still missing from it,
  are let go from those still running: eta_e is the midpoint between the
  k_e-th and (k_e+1)-th largest running confidence (the 1 - k_e / n_e
  quantile of the running confidences), ``NEVER`` when k_e = 0, 0 when all
  remaining must go. Counting the cumulative target keeps rounding (and
  ties, which let a few more go) from drifting away from the profile.

  Args:
    conf: float [N, E] confidences of the fitting videos (``confidences``).
    profile: float [E] fractions exiting at each step (sums to 1).

  Returns:
    float64 [E] thresholds; the last is 0.
  """
  conf, profile = _fitting_inputs(conf, profile)
  dtype = conf.dtype.type
  n, e_max = conf.shape
  target = np.round(n * np.cumsum(profile) / profile.sum()).astype(np.int64)
  thresholds = np.zeros(e_max)
  running = np.ones(n, bool)
  exited = 0
  for e in range(e_max - 1):
    c = conf[running, e]
    k = int(np.clip(target[e] - exited, 0, len(c)))
    if k == 0:
      thresholds[e] = NEVER
    elif k == len(c):
      thresholds[e] = 0.0
    else:
      desc = np.sort(c)[::-1]
      thresholds[e] = dtype(0.5 * (np.float64(desc[k - 1]) + desc[k]))
    leaving = running & (conf[:, e] >= dtype(thresholds[e]))
    exited += int(leaving.sum())
    running &= ~leaving
  return thresholds


def fit_top_thresholds(conf, profile) -> np.ndarray:
  """AdaFocusV2's fitting rule (docs/METHOD.md V2-7) for ``MAX_LOGIT``.

  For each step e but the last, among the videos still running, the
  floor(N x profile[e]) with the highest confidence at step e are let go
  (all of them when fewer are left), and eta_e is the lowest confidence
  among those let go (``NEVER_LOGIT`` when none is); every running video
  whose confidence reaches eta_e leaves (ties may let a few more go). The
  last threshold is ``ALWAYS_LOGIT``. Unlike ``fit_thresholds`` each step's
  count is its own (no cumulative target).

  Args:
    conf: float [N, E] confidences of the fitting videos.
    profile: float [E] fractions exiting at each step (normalised here).

  Returns:
    float64 [E] thresholds, each a value of ``conf``'s dtype.
  """
  conf, profile = _fitting_inputs(conf, profile)
  dtype = conf.dtype.type
  n, e_max = conf.shape
  counts = np.floor(n * profile / profile.sum()).astype(np.int64)
  thresholds = np.full(e_max, ALWAYS_LOGIT)
  running = np.ones(n, bool)
  for e in range(e_max - 1):
    k = int(min(counts[e], running.sum()))
    if k == 0:
      thresholds[e] = NEVER_LOGIT
    else:
      thresholds[e] = np.sort(conf[running, e])[::-1][k - 1]
    running &= ~(conf[:, e] >= dtype(thresholds[e]))
  return thresholds


def fit(conf, profile, criterion: str = MAX_PROB) -> np.ndarray:
  """Thresholds for ``profile`` by the criterion's fitting rule.

  Args:
    conf: float [N, E] confidences under ``criterion``.
    profile: float [E] fractions exiting at each step.
    criterion: ``MAX_PROB`` (``fit_thresholds``) or ``MAX_LOGIT``
      (``fit_top_thresholds``).
  """
  if criterion == MAX_LOGIT:
    return fit_top_thresholds(conf, profile)
  return fit_thresholds(conf, profile)


def summarize(exit_probs, labels, thresholds, step_macs, conf=None) -> dict:
  """Accuracy and cost of early exit with ``thresholds`` on some videos.

  Args:
    exit_probs: float [N, E, C], the prediction after each exit step.
    labels: int [N] class ids or [N, C] multi-hot.
    thresholds: float [E].
    step_macs: float [E] MACs each exit step adds.
    conf: float [N, E] the confidences the thresholds apply to (default
      ``confidences(exit_probs)``, the ``MAX_PROB`` criterion).

  Returns:
    JSON-serialisable dict: ``top1``, ``top5``, ``mAP`` (x100, of the
    predictions at exit), ``gflops`` (measured average per video),
    ``mean_steps`` (mean exit step + 1: frames, for the V1 model) and
    ``exits`` (videos exiting at each step).
  """
  conf = confidences(exit_probs) if conf is None else conf
  steps = exit_steps_from_confidences(conf, thresholds)
  probs = exit_predictions(exit_probs, steps)
  return {
      "top1": metrics.topk_accuracy(probs, labels, 1),
      "top5": metrics.topk_accuracy(probs, labels, 5),
      "mAP": metrics.mean_average_precision(probs, labels),
      "gflops": measured_gflops(steps, step_macs),
      "mean_steps": float(np.mean(steps + 1.0)),
      "exits": np.bincount(steps, minlength=np.shape(exit_probs)[1]).tolist(),
  }

"""The cost of early exit, and exit profiles.

Exit step e adds ``step_macs[e]`` MACs (``Recognizer.exit_step_macs``), so
a video exiting at e costs ``step_macs[0] + ... + step_macs[e]``: for the
V1 model (e + 1) x the per-frame cost.

A *profile* says which fraction of videos should exit at each step. The
profile is geometric (fraction at step e proportional to q^e), with q
either given or chosen by bisection so that the expected cost, sum_e
profile_e x cumulative cost after step e, meets a budget in GFLOPs per
video. Costs and profiles are shared by every criterion
(``exit_rule.MAX_PROB``, ``exit_rule.MAX_LOGIT``).
"""
from __future__ import annotations

import math

import numpy as np

from adafocus_tf.profiling import flops


def geometric_profile(q: float, num_steps: int) -> np.ndarray:
  """Fractions of videos exiting at each step, proportional to q^e.

  Args:
    q: ratio, >= 0. q < 1 front-loads exits, q = 1 is uniform, q > 1 keeps
      most videos to the end; 0 and ``inf`` put everyone at the first and
      at the last step.
    num_steps: E.

  Returns:
    float [E] summing to 1.
  """
  if q < 0 or math.isnan(q):
    raise ValueError(f"geometric ratio must be >= 0, got {q}")
  if q == 0:
    return np.eye(num_steps)[0]
  if math.isinf(q):
    return np.eye(num_steps)[-1]
  # In log space: q^e overflows for large q and E.
  logw = np.arange(num_steps) * math.log(q)
  w = np.exp(logw - logw.max())
  return w / w.sum()


def check_step_macs(step_macs) -> np.ndarray:
  """``step_macs`` as float64 [E], or a ValueError showing them.

  Args:
    step_macs: the MACs each exit step adds
      (``Recognizer.exit_step_macs``): finite, non-negative, at least one.
  """
  step_macs = np.asarray(step_macs, dtype=np.float64)
  if (step_macs.ndim != 1 or not step_macs.size
      or not np.all(np.isfinite(step_macs)) or (step_macs < 0).any()):
    raise ValueError("step_macs must be [E] finite non-negative MACs per "
                     f"exit step, got {step_macs!r}")
  return step_macs


def cumulative_macs(step_macs) -> np.ndarray:
  """MACs a video has spent by the end of each exit step.

  Args:
    step_macs: float [E], the MACs each exit step adds.

  Returns:
    float64 [E]: ``step_macs[0] + ... + step_macs[e]``.
  """
  return np.cumsum(check_step_macs(step_macs))


def expected_gflops(profile, step_macs) -> float:
  """Expected GFLOPs per video: sum_e profile_e x cumulative cost after e.

  Args:
    profile: float [E] fractions exiting at each step.
    step_macs: float [E] MACs each exit step adds.

  Returns:
    G MACs per video (the papers' GFLOPs).
  """
  profile = np.asarray(profile, dtype=np.float64)
  cum = cumulative_macs(step_macs)
  if profile.shape != cum.shape:
    raise ValueError(f"profile has {profile.shape} steps, step_macs "
                     f"{cum.shape}")
  return float(np.sum(profile * cum)) / flops.G


def measured_gflops(steps, step_macs) -> float:
  """Average GFLOPs per video of videos that exited at ``steps``.

  Args:
    steps: int [N] exit steps.
    step_macs: float [E] MACs each exit step adds.
  """
  return float(np.mean(cumulative_macs(step_macs)[np.asarray(steps)])) / flops.G


def ratio_for_budget(budget_gflops: float, step_macs,
                     iterations: int = 200) -> float:
  """The geometric ratio q whose profile's expected cost meets a budget.

  The expected cost grows monotonically with q (a larger q moves exits to
  later steps, whose cumulative cost is no smaller), from the cost of step 0
  at q = 0 to the full cost as q -> inf, so bisection on log q finds it.

  Args:
    budget_gflops: target average GFLOPs per video.
    step_macs: float [E] MACs each exit step adds.
    iterations: bisection steps.

  Returns:
    q; 0 for a budget of step 0's cost or less, ``inf`` for the full cost or
    more.
  """
  cum = cumulative_macs(step_macs)
  num_steps = len(cum)
  target = budget_gflops * flops.G
  if target <= cum[0]:
    return 0.0
  if target >= cum[-1]:
    return math.inf
  lo, hi = -50.0, 50.0
  for _ in range(iterations):
    mid = 0.5 * (lo + hi)
    if np.sum(geometric_profile(math.exp(mid), num_steps) * cum) < target:
      lo = mid
    else:
      hi = mid
  return math.exp(0.5 * (lo + hi))


def parse_profile(text: str, num_steps: int) -> np.ndarray:
  """A profile from the command line.

  Args:
    text: ``geometric:Q`` (fractions proportional to Q^e) or E
      comma-separated non-negative weights (normalised to sum to 1).
    num_steps: E.

  Returns:
    float [E] summing to 1.

  Raises:
    ValueError: the text is neither form.
  """
  if text.startswith("geometric:"):
    return geometric_profile(float(text.split(":", 1)[1]), num_steps)
  try:
    w = np.array([float(x) for x in text.split(",")])
  except ValueError:
    raise ValueError(f"profile {text!r}: use geometric:Q or E comma-separated "
                     "weights") from None
  if w.shape != (num_steps,) or (w < 0).any() or w.sum() <= 0:
    raise ValueError(f"profile {text!r}: need {num_steps} non-negative "
                     "weights, not all zero")
  return w / w.sum()

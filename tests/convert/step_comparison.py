"""Comparisons shared by the training-parity tests (ours against the
official code's step, on converted weights)."""
import numpy as np


def relative(a, b) -> float:
  """Largest absolute difference, relative to the largest entry of ``b``."""
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def assert_weights_after(before, ours, theirs, rtol: float, what: str):
  """Ours after the step equal theirs, and nothing moved that theirs kept.

  Args:
    before: {name: array} the weights both started from.
    ours: {name: array} ours after the step.
    theirs: {name: array} the official weights after it (converted).
    rtol: the largest ``relative`` error allowed on any tensor.
    what: the official step's name, for the messages.
  """
  assert set(ours) == set(theirs) and ours
  worst_weight = max(relative(ours[k], theirs[k]) for k in theirs)
  updates = {k: relative(ours[k] - before[k], theirs[k] - before[k])
             for k in theirs if np.any(theirs[k] != before[k])}
  untouched = [k for k in theirs if np.all(theirs[k] == before[k])
               and np.any(ours[k] != before[k])]
  worst = sorted(updates.items(), key=lambda kv: -kv[1])[:5]
  print(f"weights after: {worst_weight:.2e}; worst updates: {worst}")
  assert not untouched, (f"ours changed what the official {what} did not: "
                         f"{untouched[:5]}")
  assert worst_weight <= rtol

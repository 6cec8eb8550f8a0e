"""The order a V2 model feeds a clip's frames in (docs/METHOD.md V2-3).

AdaFocusV2 does not read the T frames chronologically: it starts with the
middle, first and last frames and then fills in the midpoints of ever
finer halvings of the clip, so that a prediction after k frames (early exit)
has seen the whole clip coarsely. For T = 16 this is the official order
7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14.
"""
from __future__ import annotations

import collections
from typing import Tuple

import numpy as np

CHRONOLOGICAL = "chronological"
COARSE_TO_FINE = "coarse_to_fine"


def coarse_to_fine(num_frames: int) -> Tuple[int, ...]:
  """Frame indices 0..T-1 in coarse-to-fine order.

  The middle of [0, T-1] (rounded down), its ends, then breadth first the
  midpoint of every interval between frames already taken.

  Args:
    num_frames: T >= 1.
  """
  if num_frames < 1:
    raise ValueError(f"num_frames must be at least 1, got {num_frames}")
  last = num_frames - 1
  order = [last // 2, 0, last]
  intervals = collections.deque([(0, last // 2), (last // 2, last)])
  while intervals:
    lo, hi = intervals.popleft()
    if hi - lo < 2:
      continue
    mid = (lo + hi) // 2
    order.append(mid)
    intervals.extend([(lo, mid), (mid, hi)])
  seen = []
  for i in order:
    if i not in seen:
      seen.append(i)
  return tuple(seen)


def frame_order(kind: str, num_frames: int) -> np.ndarray:
  """int32 [T]: step s reads frame ``order[s]``.

  Args:
    kind: ``chronological`` or ``coarse_to_fine`` (``model.frame_order``).
    num_frames: T.

  Raises:
    ValueError: an unknown kind.
  """
  if kind == CHRONOLOGICAL:
    return np.arange(num_frames, dtype=np.int32)
  if kind == COARSE_TO_FINE:
    return np.asarray(coarse_to_fine(num_frames), np.int32)
  raise ValueError(f"unknown frame order {kind!r}; choose {CHRONOLOGICAL} or "
                   f"{COARSE_TO_FINE}")


def inverse(order: np.ndarray) -> np.ndarray:
  """int32 [T]: the step at which each frame is read."""
  inv = np.empty_like(order)
  inv[order] = np.arange(len(order), dtype=order.dtype)
  return inv

"""Evaluation metrics (docs/METHOD.md section 2, "metrics"): pure numpy.

* ``mean_average_precision``: mean over classes of the average precision
  (AP) of each class's scores (softmax probabilities), x100. Labels are
  either class ids (single-label; ActivityNet uses each video's first label)
  or a multi-hot matrix (FCVID's multi-label videos).
* ``topk_accuracy``: top-1 / top-5, x100.
* ``map_per_step``: the mAP of the prediction after each frame (the
  recurrent classifier predicts after every frame; early exit reads these).

Conventions:

* AP is the non-interpolated AP over the ranking by descending score,
  computed as scikit-learn's ``average_precision_score``:
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds n,
  with P_n and R_n the precision and recall of "score >= threshold n".
  Without ties this is the mean, over the positives, of the precision at
  each positive's rank. Tied scores form one threshold, so a tie group's
  positives share the group's precision, whatever order the tied items come
  in: the result does not depend on input order (the reference PyTorch code
  instead ranks ties in ``torch.sort``'s order).
* A class with no positive example has no AP (``nan``) and is left out of
  the mean (the reference code counts it as AP 0, which only matters on an
  evaluation subset that misses classes).
* Top-k ranks classes by descending probability, ties broken towards the
  lower class index. With multi-hot labels a video is a hit if any of its
  top k classes is one of its labels.
"""
from __future__ import annotations

from typing import Dict

import numpy as np


def average_precision(scores, positives) -> float:
  """Average precision of one class.

  Args:
    scores: float [N] scores of the N examples for the class (finite).
    positives: bool or 0/1 [N], whether each example belongs to the class.

  Returns:
    The AP in [0, 1] (see the module docstring for the tie rule), or
    ``nan`` when no example is positive.

  Raises:
    ValueError: the two arrays differ in shape or are not 1-D.
  """
  scores = np.asarray(scores, dtype=np.float64)
  positives = np.asarray(positives).astype(bool)
  if scores.ndim != 1 or scores.shape != positives.shape:
    raise ValueError(f"scores {scores.shape} and positives "
                     f"{positives.shape} must be matching 1-D arrays")
  num_pos = int(positives.sum())
  if num_pos == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  s = scores[order]
  tp = np.cumsum(positives[order])
  # The last index of each run of equal scores is one threshold.
  ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
  tp_at = tp[ends].astype(np.float64)
  precision = tp_at / (ends + 1)
  recall_gain = np.diff(np.r_[0.0, tp_at]) / num_pos
  return float(np.sum(recall_gain * precision))


def _multi_hot(labels, num_classes: int) -> np.ndarray:
  """[N] class ids or [N, C] multi-hot -> bool [N, C]."""
  labels = np.asarray(labels)
  if labels.ndim == 1:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f"class ids must lie in [0, {num_classes})")
    out = np.zeros((labels.shape[0], num_classes), bool)
    out[np.arange(labels.shape[0]), labels.astype(np.int64)] = True
    return out
  if labels.ndim == 2:
    if labels.shape[1] != num_classes:
      raise ValueError(f"multi-hot labels have {labels.shape[1]} classes, "
                       f"the scores {num_classes}")
    return labels > 0
  raise ValueError(f"labels must be [N] class ids or [N, C] multi-hot, got "
                   f"shape {labels.shape}")


def _check_probs(probs) -> np.ndarray:
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 2:
    raise ValueError(f"probs must be [N, C], got shape {probs.shape}")
  return probs


def per_class_average_precision(probs, labels) -> np.ndarray:
  """AP of every class.

  Args:
    probs: float [N, C] class scores (softmax probabilities).
    labels: int [N] class ids, or [N, C] multi-hot (bool or 0/1).

  Returns:
    float [C]: each class's AP in [0, 1], ``nan`` for a class without
    positives.
  """
  probs = _check_probs(probs)
  gt = _multi_hot(labels, probs.shape[1])
  if gt.shape[0] != probs.shape[0]:
    raise ValueError(f"{probs.shape[0]} score rows but {gt.shape[0]} labels")
  return np.array([average_precision(probs[:, c], gt[:, c])
                   for c in range(probs.shape[1])])


def mean_average_precision(probs, labels) -> float:
  """mAP x 100: the mean AP over the classes that have a positive.

  Args:
    probs: float [N, C] class scores (softmax probabilities).
    labels: int [N] class ids (single-label), or [N, C] multi-hot.

  Returns:
    The mAP in [0, 100]; ``nan`` when no class has a positive (no videos).
  """
  ap = per_class_average_precision(probs, labels)
  ap = ap[~np.isnan(ap)]
  if ap.size == 0:
    return float("nan")
  return float(ap.mean() * 100.0)


def topk_accuracy(probs, labels, k: int) -> float:
  """Top-k accuracy x 100.

  Args:
    probs: float [N, C] class scores.
    labels: int [N] class ids, or [N, C] multi-hot (a hit if any of the top
      k classes is positive; a row without positives is a miss).
    k: number of top classes (clipped to C).

  Returns:
    The percentage of videos whose label is among their top k classes;
    ``nan`` for no videos.
  """
  probs = _check_probs(probs)
  n, num_classes = probs.shape
  gt = _multi_hot(labels, num_classes)
  if gt.shape[0] != n:
    raise ValueError(f"{n} score rows but {gt.shape[0]} labels")
  if n == 0:
    return float("nan")
  k = max(1, min(int(k), num_classes))
  # Stable sort of -p: ties go to the lower class index.
  top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  hits = np.take_along_axis(gt, top, axis=1).any(axis=1)
  return float(hits.mean() * 100.0)


def map_per_step(step_probs, labels) -> np.ndarray:
  """mAP x 100 of the prediction after each frame.

  Args:
    step_probs: float [N, T, C]: the class probabilities after frames
      1..T of each video.
    labels: int [N] class ids, or [N, C] multi-hot.

  Returns:
    float [T]: the mAP of each step.
  """
  step_probs = np.asarray(step_probs, dtype=np.float64)
  if step_probs.ndim != 3:
    raise ValueError(f"step_probs must be [N, T, C], got shape "
                     f"{step_probs.shape}")
  return np.array([mean_average_precision(step_probs[:, t], labels)
                   for t in range(step_probs.shape[1])])


def summarize(probs, step_probs, labels) -> Dict[str, object]:
  """The figures of one evaluation row.

  Args:
    probs: float [N, C]: the final prediction of each video.
    step_probs: float [N, T, C]: the prediction after each frame.
    labels: int [N] class ids, or [N, C] multi-hot.

  Returns:
    dict with ``top1``, ``top5``, ``mAP`` (floats, x100) and
    ``mAP_per_step`` (a list of T floats), JSON-serialisable.
  """
  return {
      "top1": topk_accuracy(probs, labels, 1),
      "top5": topk_accuracy(probs, labels, 5),
      "mAP": mean_average_precision(probs, labels),
      "mAP_per_step": [float(x) for x in map_per_step(step_probs, labels)],
  }

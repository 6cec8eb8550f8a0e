"""What one training step's loss is made of (``StepLoss``)."""
from __future__ import annotations

from typing import Dict, NamedTuple

import tensorflow as tf


class StepLoss(NamedTuple):
  """A batch's training loss, per video, and the terms it is made of.

  Attributes:
    total: [B] the per-video loss the optimizer minimises (its sum over the
      global batch, divided by the global batch size).
    probs: [B, C] the prediction whose accuracy the step reports.
    terms: name -> [B] each term, per video, before the family's weights
      (``weights``); ``total`` is their weighted sum.
    weights: name -> the weight of each term in ``total`` (1 unless the
      family says otherwise, e.g. 0.5 for each of V2's two branches).
  """
  total: tf.Tensor
  probs: tf.Tensor
  terms: Dict[str, tf.Tensor]
  weights: Dict[str, float]


def of_terms(terms: Dict[str, tf.Tensor], probs: tf.Tensor,
             weights: Dict[str, float] = None) -> StepLoss:
  """The ``StepLoss`` whose total is the weighted sum of ``terms``.

  Args:
    terms: name -> [B] per-video term.
    probs: [B, C] the prediction.
    weights: name -> weight; a term not named weighs 1.
  """
  weights = {k: (weights or {}).get(k, 1.0) for k in terms}
  total = tf.add_n([weights[k] * v for k, v in terms.items()])
  return StepLoss(total, probs, dict(terms), weights)

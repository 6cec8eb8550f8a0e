"""What whole-clip inference of a batch returns (``Recognizer.__call__``)."""
from typing import NamedTuple

import tensorflow as tf


class Outputs(NamedTuple):
  """Whole-clip inference of a batch.

  Attributes:
    logits: [B, S, C] logits after each prediction step (S = T for the V1
      model, 1 for the two-stream model).
    probs: [B, S, C] the prediction after each step (the classifier's rule:
      softmax, or running means of softmaxes).
    offsets: [B, K, 2] top-left patch pixels (K = T patches, one per
      frame in chronological order, or 1 per video): int32, or float32
      sub-pixel positions from a V2 policy.
    glance_probs: [B, S, C] the glance network alone.
  """
  logits: tf.Tensor
  probs: tf.Tensor
  offsets: tf.Tensor
  glance_probs: tf.Tensor

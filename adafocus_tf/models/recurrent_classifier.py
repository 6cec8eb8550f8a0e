"""The V1 model's "gru" classifier: a GRU over the fused features.

The classifiers' shared interface and dropout are in ``classifier.py``
(docs/METHOD.md 2).
"""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import gru_inference
from adafocus_tf.models import precision


class RecurrentClassifier(tf.keras.Model):
  """"gru": a GRU over the fused features and a linear layer at every step.

  Trained with cross-entropy on every step's logits; the prediction is the
  last step's (or step t's, for early exit).

  Args:
    num_classes: C.
    hidden: GRU units.
    dropout: dropout rate before the output layer.
  """

  def __init__(self, num_classes: int, hidden: int, dropout: float,
               name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    # reset_after=True is PyTorch's GRU formulation (and cuDNN's).
    self.gru = tf.keras.layers.GRU(hidden, return_sequences=True,
                                   reset_after=True, name="gru")
    self.fc = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(), name="fc")
    self.hidden = hidden

  def call(self, features, seeds=None, training=False):
    if gru_inference.applies(features, training):  # the same GRU, faster
      if not self.gru.built:
        self.gru.build(features.shape)
      h, _ = gru_inference.gru_sequence(
          self.gru.cell, features, self.initial_state(tf.shape(features)[0]))
    else:
      h = self.gru(features)
    if training:
      h = classifier_lib.per_video_dropout(h, self.rate, seeds)
    return self.fc(h)

  def initial_state(self, batch_size):
    return tf.zeros([batch_size, self.hidden], self.gru.cell.compute_dtype)

  def step(self, x, state):
    """One frame: [B, D] fused features and [B, H] state -> logits, state."""
    h, _ = self.gru.cell(x, [state])
    return self.fc(h), h

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

  def loss(self, logits, targets):
    """Mean over steps of the cross-entropy; ``targets`` [B, C] distributions."""
    return classifier_lib.per_step_loss(logits, targets)

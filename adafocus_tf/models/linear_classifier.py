"""The V1 model's "fc" classifier: a linear layer on every frame.

The classifiers' shared interface and dropout are in ``classifier.py``
(docs/METHOD.md 2).
"""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import precision


class LinearClassifier(tf.keras.Model):
  """"fc": a per-frame linear layer; softmax averaged over frames, NLL loss.

  Args:
    num_classes: C.
    dropout: dropout rate before the linear layer.
  """

  def __init__(self, num_classes: int, dropout: float,
               name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    self.fc = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(), name="fc")

  def call(self, features, seeds=None, training=False):
    if training:
      features = classifier_lib.per_video_dropout(features, self.rate, seeds)
    return self.fc(features)

  def initial_state(self, batch_size):
    """The running sum of probabilities and the frame count."""
    return tf.zeros([batch_size, self.fc.units + 1])

  def step(self, x, state):
    probs = tf.nn.softmax(self.fc(x))
    total = state[:, :-1] + probs
    count = state[:, -1:] + 1.0
    # Logits whose softmax is the running mean of the frames' softmaxes.
    return tf.math.log(total / count + 1e-12), tf.concat([total, count], 1)

  def step_probs(self, logits):
    probs = tf.nn.softmax(logits, axis=-1)
    steps = tf.cast(tf.range(1, tf.shape(logits)[1] + 1), probs.dtype)
    return tf.cumsum(probs, axis=1) / steps[None, :, None]

  def loss(self, logits, targets):
    mean = self.step_probs(logits)[:, -1]
    return -tf.reduce_sum(targets * tf.math.log(mean + 1e-12), axis=-1)

"""Uni-AdaFocus's temporal policy (docs/METHOD.md V2-11.2): where in time the
focus net looks."""
import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision


class TemporalPolicy(tf.keras.Model):
  """Pooled glance features [B, G, C] -> weights w [B, G] (a softmax over
  the glance frames).

  Two temporal convolutions (kernel 3 along time, no bias) each with batch
  norm and ReLU, then a kernel-1 convolution to one score per frame. Built
  in full precision (``precision.full_precision``): float32 under mixed
  precision, as the official policies (docs/METHOD.md V2-11.4).

  Args:
    hidden: channels of the hidden convolutions (64 in the paper).
    name: model name.
  """

  def __init__(self, hidden: int, name: str = "temporal_policy"):
    with precision.full_precision():
      super().__init__(name=name)
      bn = precise_batchnorm.TORCH_DEFAULTS
      self.conv1 = tf.keras.layers.Conv1D(hidden, 3, padding="same",
                                          use_bias=False, name="conv1")
      self.bn1 = precise_batchnorm.PreciseBatchNormalization(name="bn1", **bn)
      self.conv2 = tf.keras.layers.Conv1D(hidden, 3, padding="same",
                                          use_bias=False, name="conv2")
      self.bn2 = precise_batchnorm.PreciseBatchNormalization(name="bn2", **bn)
      self.score = tf.keras.layers.Conv1D(1, 1, use_bias=False, name="score")

  def call(self, pooled, training=False):
    """Weights w [B, G] (float32, or float64 in a float64 model) of pooled
    glance features [B, G, C] (cast to that on entry)."""
    x = tf.nn.relu(self.bn1(self.conv1(pooled), training=training))
    x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
    return tf.nn.softmax(self.score(x)[..., 0], axis=-1)

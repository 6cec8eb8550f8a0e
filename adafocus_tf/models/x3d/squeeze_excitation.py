"""X3D's squeeze-excitation (docs/METHOD.md V2-11.4; official
``slowfast/models/operators.py`` ``SE`` with its ReLU)."""
import tensorflow as tf


class SqueezeExcitation(tf.keras.layers.Layer):
  """Rescales each channel of [B, T, H, W, C] by a gate of the clip's mean:
  mean over (T, H, W), dense ``squeeze`` units (with bias), ReLU, dense C
  (with bias), sigmoid.

  Args:
    channels: C.
    squeeze: the hidden units.
    name: layer name (the official module ``se``: ``fc1``, ``fc2``).
  """

  def __init__(self, channels: int, squeeze: int, name: str = "se"):
    super().__init__(name=name)
    self.fc1 = tf.keras.layers.Dense(squeeze, name="fc1")
    self.fc2 = tf.keras.layers.Dense(channels, name="fc2")

  def call(self, x):
    gate = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    gate = tf.sigmoid(self.fc2(tf.nn.relu(self.fc1(gate))))
    return x * gate

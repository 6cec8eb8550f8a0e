"""X3D's head (docs/METHOD.md V2-11.4; official ``slowfast/models/
head_helper.py`` ``X3DHead`` without batch norm after ``lin_5``)."""
import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision
from adafocus_tf.models.x3d import conv as conv_lib


class X3DHead(tf.keras.layers.Layer):
  """The feature map and the classifier.

  ``feature_map``: 1x1x1 conv of the last stage's output to
  ``feature_dim`` channels, batch norm, ReLU. ``classify``: the map's mean
  over time and space (the official ``AvgPool3d`` of the whole map at the
  clip size it was built for), dense ``hidden`` units without bias
  (``lin_5``), ReLU, dropout, dense to the classes (``projection``).

  Args:
    feature_dim: the feature map's channels (``conv_5``).
    hidden: ``lin_5``'s units (``DIM_C5``, 2048).
    num_classes: classes.
    dropout: the rate before ``projection``.
    name: layer name (``head``).
  """

  def __init__(self, feature_dim: int, hidden: int, num_classes: int,
               dropout: float, name: str = "head"):
    super().__init__(name=name)
    self.conv_5 = conv_lib.PaddedConv3D(feature_dim, (1, 1, 1), name="conv_5")
    self.conv_5_bn = precise_batchnorm.PreciseBatchNormalization(
        name="conv_5_bn", **precise_batchnorm.TORCH_DEFAULTS)
    self.lin_5 = tf.keras.layers.Dense(hidden, use_bias=False, name="lin_5")
    self.dropout = tf.keras.layers.Dropout(dropout, name="dropout")
    self.projection = tf.keras.layers.Dense(
        num_classes, dtype=precision.output_dtype(), name="projection")

  def feature_map(self, x, training=False):
    """[B, T, h, w, feature_dim] of the last stage's output."""
    return tf.nn.relu(self.conv_5_bn(self.conv_5(x), training=training))

  def hidden(self, maps):
    """[B, hidden]: ``lin_5`` and ReLU of the mean of a feature map
    [B, T, h, w, feature_dim] (what the dropout and ``projection`` read)."""
    return tf.nn.relu(self.lin_5(tf.reduce_mean(maps, axis=[1, 2, 3])))

  def classify(self, maps, training=False):
    """[B, C] logits of a feature map [B, T, h, w, feature_dim]."""
    return self.projection(self.dropout(self.hidden(maps),
                                        training=training))

  def call(self, x, training=False):
    return self.classify(self.feature_map(x, training), training)

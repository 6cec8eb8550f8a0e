"""Uni-AdaFocus's spatial policy (docs/METHOD.md V2-11.2): where and how large
the focus region is."""
import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision
from adafocus_tf.models.uni import deformable_regions


class SpatialPolicy(tf.keras.Model):
  """Glance maps [B, G, h, w, C] -> actions in [0, 1]^4 (a_y, a_x, s_y, s_x).

  A 1x1x1 convolution, two 3x3x3 ones (each without bias, with batch norm
  and ReLU), then a valid convolution over (``span`` frames, h, w) to 4
  outputs and a sigmoid. Built in full precision
  (``precision.full_precision``): float32 under mixed precision, as the
  official policies (docs/METHOD.md V2-11.4).

  Args:
    hidden: channels of the hidden convolutions (128 in the paper).
    span: frames the last convolution spans: 1 gives one action per
      glance frame (the ActivityNet family), G one per video (TSM).
    map_side: h = w of the glance maps.
    name: model name.
  """

  def __init__(self, hidden: int, span: int, map_side: int,
               name: str = "spatial_policy"):
    with precision.full_precision():
      super().__init__(name=name)
      bn = precise_batchnorm.TORCH_DEFAULTS
      layers = tf.keras.layers
      self.conv1 = layers.Conv3D(hidden, 1, use_bias=False, name="conv1")
      self.bn1 = precise_batchnorm.PreciseBatchNormalization(name="bn1", **bn)
      self.conv2 = layers.Conv3D(hidden, 3, padding="same", use_bias=False,
                                 name="conv2")
      self.bn2 = precise_batchnorm.PreciseBatchNormalization(name="bn2", **bn)
      self.conv3 = layers.Conv3D(hidden, 3, padding="same", use_bias=False,
                                 name="conv3")
      self.bn3 = precise_batchnorm.PreciseBatchNormalization(name="bn3", **bn)
      self.out = layers.Conv3D(deformable_regions.ACTION_DIMS,
                               (span, map_side, map_side), use_bias=False,
                               name="out")
    # The actions' dtype: float32 (float64 in a float64 model: training
    # parity).
    self.out_dtype = self.compute_dtype

  def call(self, maps, training=False):
    """Actions [B, G / span, 4] (``out_dtype``) of maps [B, G, h, w, C]
    (cast to it on entry)."""
    x = tf.nn.relu(self.bn1(self.conv1(maps), training=training))
    x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
    x = tf.nn.relu(self.bn3(self.conv3(x), training=training))
    x = self.out(x)
    return tf.sigmoid(x[:, :, 0, 0, :])

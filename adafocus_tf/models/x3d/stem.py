"""X3D's stem (docs/METHOD.md V2-11.4; official ``slowfast/models/
stem_helper.py`` ``X3DStem``)."""
import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models.x3d import conv as conv_lib

# A 3x3 spatial convolution of stride 2 (the first halving of 32).
_SPATIAL_KERNEL, _SPATIAL_STRIDE = 3, 2


class X3DStem(tf.keras.layers.Layer):
  """Clip [B, T, H, W, 3] -> [B, T, H/2, W/2, ``width``]: a 1x3x3 spatial
  convolution of stride 2, a channel-wise ``temporal_kernel``x1x1 one,
  batch norm, ReLU.

  Args:
    width: output channels.
    temporal_kernel: the channel-wise convolution's kernel along time (5).
    name: layer name (the official module ``s1.pathway0_stem``).
  """

  def __init__(self, width: int, temporal_kernel: int, name: str = "s1"):
    super().__init__(name=name)
    self.conv_xy = conv_lib.PaddedConv3D(
        width, (1, _SPATIAL_KERNEL, _SPATIAL_KERNEL),
        (1, _SPATIAL_STRIDE, _SPATIAL_STRIDE), name="conv_xy")
    self.conv = conv_lib.PaddedConv3D(width, (temporal_kernel, 1, 1),
                                      groups=width, name="conv")
    self.bn = precise_batchnorm.PreciseBatchNormalization(
        name="bn", **precise_batchnorm.TORCH_DEFAULTS)

  def call(self, clip, training=False):
    x = self.conv(self.conv_xy(clip))
    return tf.nn.relu(self.bn(x, training=training))

"""X3D's residual bottleneck block (docs/METHOD.md V2-11.4; official
``slowfast/models/resnet_helper.py`` ``ResBlock`` with ``X3DTransform``)."""
import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models.x3d import conv as conv_lib
from adafocus_tf.models.x3d import squeeze_excitation as se_lib

_SPATIAL_KERNEL = 3


class X3DBlock(tf.keras.layers.Layer):
  """[B, T, H, W, C_in] -> [B, T, H/s, W/s, C_out].

  Bottleneck: 1x1x1 conv to ``inner`` channels, batch norm, ReLU; a
  channel-wise ``temporal_kernel``x3x3 conv of spatial stride ``stride``,
  batch norm, squeeze-excitation (when ``squeeze``), swish; 1x1x1 conv to
  ``width``, batch norm. Added to the input, or to a 1x1x1 conv of stride
  ``stride`` + batch norm of it when the shape changes; then ReLU.

  Args:
    width: output channels.
    inner: the bottleneck's channels.
    stride: spatial stride (2 on a stage's first block, else 1).
    temporal_kernel: the channel-wise conv's kernel along time.
    squeeze: the squeeze-excitation's hidden units; 0: none.
    projection: whether the shortcut is a convolution (the input's shape
      differs from the output's).
    name: layer name (the official module ``pathway0_res<i>``).
  """

  def __init__(self, width: int, inner: int, stride: int,
               temporal_kernel: int, squeeze: int, projection: bool,
               name: str = None):
    super().__init__(name=name)
    bn = precise_batchnorm.TORCH_DEFAULTS
    norm = precise_batchnorm.PreciseBatchNormalization
    self.a = conv_lib.PaddedConv3D(inner, (1, 1, 1), name="a")
    self.a_bn = norm(name="a_bn", **bn)
    self.b = conv_lib.PaddedConv3D(
        inner, (temporal_kernel, _SPATIAL_KERNEL, _SPATIAL_KERNEL),
        (1, stride, stride), groups=inner, name="b")
    self.b_bn = norm(name="b_bn", **bn)
    self.se = se_lib.SqueezeExcitation(inner, squeeze) if squeeze else None
    self.c = conv_lib.PaddedConv3D(width, (1, 1, 1), name="c")
    self.c_bn = norm(name="c_bn", **bn)
    if projection:
      self.branch1 = conv_lib.PaddedConv3D(width, (1, 1, 1),
                                           (1, stride, stride),
                                           name="branch1")
      self.branch1_bn = norm(name="branch1_bn", **bn)
    else:
      self.branch1 = self.branch1_bn = None

  def call(self, x, training=False):
    y = tf.nn.relu(self.a_bn(self.a(x), training=training))
    y = self.b_bn(self.b(y), training=training)
    if self.se is not None:
      y = self.se(y)
    y = tf.nn.silu(y)
    y = self.c_bn(self.c(y), training=training)
    if self.branch1 is not None:
      x = self.branch1_bn(self.branch1(x), training=training)
    return tf.nn.relu(x + y)

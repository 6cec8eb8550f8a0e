"""An X3D stage (docs/METHOD.md V2-11.4; official ``resnet_helper.py``
``ResStage`` as ``X3D._construct_network`` builds it)."""
import tensorflow as tf

from adafocus_tf.models.x3d import block as block_lib
from adafocus_tf.models.x3d import settings as settings_lib


class X3DStage(tf.keras.layers.Layer):
  """``depth`` blocks; the first has spatial stride ``stride`` (and a
  projection shortcut), every other one from the first a
  squeeze-excitation.

  Args:
    in_width: input channels.
    width: output channels.
    inner: the bottleneck's channels.
    depth: blocks.
    stride: the first block's spatial stride.
    temporal_kernel: the channel-wise convolutions' kernel along time.
    name: layer name (``s2`` to ``s5``).
  """

  def __init__(self, in_width: int, width: int, inner: int, depth: int,
               stride: int, temporal_kernel: int, name: str = None):
    super().__init__(name=name)
    squeeze = settings_lib.round_width(inner, settings_lib.SE_RATIO,
                                       min_width=settings_lib.SE_DIVISOR,
                                       divisor=settings_lib.SE_DIVISOR)
    self.blocks = []
    for i in range(depth):
      first = i == 0
      self.blocks.append(block_lib.X3DBlock(
          width, inner, stride if first else 1, temporal_kernel,
          # SE on blocks 0, 2, 4... (``(block_idx + 1) % 2``).
          squeeze if i % 2 == 0 else 0,
          projection=first and (in_width != width or stride != 1),
          name=f"pathway0_res{i}"))

  def call(self, x, training=False):
    for block in self.blocks:
      x = block(x, training=training)
    return x

"""A 3D convolution padded as PyTorch pads (docs/METHOD.md V2-11.4).

Keras' ``same`` padding puts an odd padding's extra row at the end, while
PyTorch's ``Conv3d(padding=k // 2)`` pads both ends equally; with a
stride of 2 the two read different pixels. X3D's convolutions are
therefore explicit zero padding of ``k // 2`` on every side, then a
``valid`` convolution.
"""
from typing import Sequence

import tensorflow as tf


class PaddedConv3D(tf.keras.layers.Layer):
  """A bias-free Conv3D over [B, T, H, W, C] with PyTorch's symmetric
  ``k // 2`` zero padding.

  Args:
    filters: output channels.
    kernel_size: (kt, kh, kw).
    strides: (st, sh, sw).
    groups: channel groups (``filters`` and the input channels for a
      channel-wise convolution).
    name: layer name.
  """

  def __init__(self, filters: int, kernel_size: Sequence[int],
               strides: Sequence[int] = (1, 1, 1), groups: int = 1,
               name: str = None):
    super().__init__(name=name)
    self.kernel_size = tuple(kernel_size)
    pads = tuple((k // 2, k // 2) for k in self.kernel_size)
    self.pad = (tf.keras.layers.ZeroPadding3D(pads, name="pad")
                if any(k > 1 for k in self.kernel_size) else None)
    self.conv = tf.keras.layers.Conv3D(filters, self.kernel_size,
                                       strides=tuple(strides), groups=groups,
                                       padding="valid", use_bias=False,
                                       name="conv")

  @property
  def kernel(self):
    """The Keras kernel [kt, kh, kw, C_in / groups, filters]."""
    return self.conv.kernel

  def call(self, x):
    return self.conv(self.pad(x) if self.pad is not None else x)

"""Bilinear resizing in the images' own dtype.

``tf.image.resize`` computes and returns float32 whatever its input, so a
float64 model (the training-parity checks, docs/METHOD.md V2-14) would
see its frames rounded to float32. This resize samples with half-pixel
centres and no antialiasing, as ``tf.image.resize(..., "bilinear")`` and
PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)`` do, as
two gathers and blends, one per axis, in the input's dtype.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf


def _taps(in_size: int, out_size: int):
  """(lower index, upper index, upper weight) per output position, with
  half-pixel centres, sources before the first pixel clamped to it."""
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  src = np.maximum(src, 0.0)
  lower = np.floor(src).astype(np.int32)
  upper = np.minimum(lower + 1, in_size - 1)
  return lower, upper, src - lower


def _resize_axis(images, axis: int, out_size: int):
  lower, upper, weight = _taps(images.shape[axis], out_size)
  shape = [1] * images.shape.rank
  shape[axis] = out_size
  w = tf.constant(weight.reshape(shape), images.dtype)
  a = tf.gather(images, lower, axis=axis)
  return a + w * (tf.gather(images, upper, axis=axis) - a)


def resize(images, size: Sequence[int]):
  """Images [N, H, W, C] (H and W known) resized to ``size`` (height,
  width), bilinearly, in their dtype (module doc)."""
  out = images
  for axis, out_size in ((1, size[0]), (2, size[1])):
    if out.shape[axis] != out_size:
      out = _resize_axis(out, axis, out_size)
  return out

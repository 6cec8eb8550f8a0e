"""TensorFlow Lite builtin forms of the ops the recognizer's graph needs that
TFLite lacks (or runs only as a loop).

The recognizer's graph converts to TFLite builtin ops (which XNNPACK runs)
except for two image ops:

  * ``tf.image.crop_and_resize`` (``patches.extract_patches``): no builtin
    (only a TF "select" op). With integer offsets, the only kind inference
    makes (the greedy policy's, the centre patch), it samples the nearest
    pixel, i.e. it is exactly the slice ``frames[y:y+P, x:x+P]``; here that
    slice is two batched ``gather``s (builtin ``GATHER``).
  * ``tf.image.resize(method="area")`` (``GlanceNet.resize``, when frames are
    larger than the glance input): no builtin. When the frame side is an
    integer multiple of the glance side the area resize is a box average,
    i.e. average pooling with a k x k window and stride k (builtin
    ``AVERAGE_POOL_2D``). Other ratios are refused (``UnsupportedOp``).

The recurrent loops (the policy actor's GRU and the GRU classifier) need
nothing here: at inference they run over whole videos unrolled one step
per frame (``models.gru_inference``), so the graph has no ``WHILE`` op,
whose dynamic-sized outputs would make the XNNPACK delegate refuse the
whole model (docs/BENCHMARKS.md, issue 15). Uni-AdaFocus's pooling
classifier takes its running maxima with ``tf.scan`` (a ``WHILE``);
``unrolled_running_max`` is the same maxima taken step by step over the
static number of frames.

``builtin_ops()`` swaps these forms in while a function is traced for
conversion; nothing else in the graph changes. Tracing outside it is
unaffected.
"""
from __future__ import annotations

import contextlib

import tensorflow as tf

from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.models.uni import pooling_classifier


class UnsupportedOp(ValueError):
  """The graph needs an op TensorFlow Lite has no builtin form of here."""


def gather_patches(frames, offsets, patch_size: int):
  """``patches.extract_patches`` for integer offsets, in builtin ops.

  Args:
    frames: float [B, T, H, W, C].
    offsets: int [B, T, 2] or [B, 1, 2] top-left (y, x) pixel offsets.
    patch_size: P.

  Returns:
    [B * T, P, P, C] patches, frame-major within each video (as
    ``extract_patches``).

  Raises:
    UnsupportedOp: float offsets (bilinear crops; training only).
  """
  if offsets.dtype.is_floating:
    raise UnsupportedOp("patches at fractional offsets (bilinear "
                        "crop_and_resize) have no TensorFlow Lite builtin "
                        "form; inference uses integer offsets")
  shape = tf.shape(frames)
  b, t = shape[0], shape[1]
  flat = tf.reshape(frames, tf.concat([[b * t], shape[2:]], 0))
  off = tf.reshape(tf.broadcast_to(tf.cast(offsets, tf.int32),
                                   tf.stack([b, t, 2])), [-1, 2])
  steps = tf.range(patch_size, dtype=tf.int32)[None, :]
  rows = off[:, :1] + steps
  cols = off[:, 1:] + steps
  crops = tf.gather(flat, rows, axis=1, batch_dims=1)
  return tf.gather(crops, cols, axis=2, batch_dims=1)


def pooled_resize(net: glance_lib.GlanceNet, images):
  """``GlanceNet.resize`` with the area shrink as average pooling.

  Args:
    net: the glance net (its ``glance_size``).
    images: [N, S, S, 3] frames.

  Raises:
    UnsupportedOp: S is larger than the glance side but not a multiple of
      it (an area resize TFLite cannot express), or smaller (a bilinear
      upscale, which keeps TFLite's builtin resize: not this function).
  """
  side, size = images.shape[1], net.glance_size
  if side == size:
    return images
  if side < size or getattr(net, "resize_method", "") == "bilinear_corners":
    # Bilinear resizes are TFLite builtins (RESIZE_BILINEAR).
    return _original_resize(net, images)
  if side % size:
    raise UnsupportedOp(f"the glance resizes {side}x{side} frames to "
                        f"{size}x{size} by area averaging, which TensorFlow "
                        "Lite has no builtin for unless the frame side is a "
                        "multiple of the glance side")
  k = side // size
  return tf.nn.avg_pool2d(images, k, k, "VALID")


_original_resize = glance_lib.GlanceNet.resize


def unrolled_running_max(z):
  """``pooling_classifier._running_max`` without a loop op: [B, T, H] ->
  the maximum of steps 0..t at each t, T static (the same ``maximum``s in
  the same order as ``tf.scan``'s)."""
  steps = [z[:, 0]]
  for t in range(1, z.shape[1]):
    steps.append(tf.maximum(steps[-1], z[:, t]))
  return tf.stack(steps, 1)


@contextlib.contextmanager
def builtin_ops():
  """Traces the recognizer with the forms above (see module doc)."""
  saved = (patches.extract_patches, glance_lib.GlanceNet.resize,
           pooling_classifier._running_max)  # pylint: disable=protected-access
  patches.extract_patches = gather_patches
  glance_lib.GlanceNet.resize = pooled_resize
  pooling_classifier._running_max = unrolled_running_max  # pylint: disable=protected-access
  try:
    yield
  finally:
    (patches.extract_patches, glance_lib.GlanceNet.resize,
     pooling_classifier._running_max) = saved  # pylint: disable=protected-access

"""Uni-AdaFocus's deformable regions (docs/METHOD.md V2-11.2).

A spatial action (a_y, a_x, s_y, s_x) in [0, 1]^4 places a region of side
L = L_min + s (L_max - L_min) pixels per axis with its top-left at
a (S - L), S the frame side; the region is resampled to P x P. The same
action read on a glance map (side h) places the region scaled by
``grid / P`` cells, resampled to ``grid`` x ``grid``.

Resampling follows the official affine sampler (bilinear, align_corners
False, zero padding): output index i of n samples the source at
y_i = y + (i + 1/2) L / n - 1/2. Separable, so it is two small matrix
products with hat-function weights max(0, 1 - |y_i - k|), which are
exactly bilinear taps with zeros outside the source, and differentiable in
the region and the source.
"""
import tensorflow as tf

# An action: its position (a_y, a_x) and size (s_y, s_x) columns.
POSITION = slice(0, 2)
SIZE = slice(2, 4)
ACTION_DIMS = 4


def region_sides(sizes, min_side: float, max_side: float):
  """Side L = L_min + s (L_max - L_min) per axis, [..., 2] pixels."""
  return min_side + sizes * (max_side - min_side)


def size_of_side(side: float, min_side: float, max_side: float) -> float:
  """The size action s whose region side is ``side`` (the random branch's
  fixed s, with L = P); 0 when regions have one size."""
  if max_side == min_side:
    return 0.0
  return (side - min_side) / (max_side - min_side)


def regions(actions, frame_size: float, min_side: float, max_side: float,
            scale: float = 1.0):
  """Regions (y, x, L_y, L_x) of actions, [..., 4].

  Args:
    actions: [..., 4] (a_y, a_x, s_y, s_x) in [0, 1].
    frame_size: S, the source's side (pixels, or cells of a map).
    min_side: L_min in frame pixels.
    max_side: L_max in frame pixels.
    scale: source units per frame pixel (``grid / P`` on a glance map).
  """
  sides = region_sides(actions[..., SIZE], min_side, max_side) * scale
  corner = actions[..., POSITION] * (frame_size - sides)
  return tf.concat([corner, sides], -1)


def _weights(start, side, out: int, size: int, dtype):
  """[N, out, size] bilinear taps of ``out`` samples over ``side`` from
  ``start`` (both [N]) in a source of ``size`` (zero outside)."""
  i = tf.cast(tf.range(out), dtype) + 0.5
  where = start[:, None] + i[None, :] * (side[:, None] / out) - 0.5
  k = tf.cast(tf.range(size), dtype)
  return tf.nn.relu(1.0 - tf.abs(where[:, :, None] - k[None, None, :]))


def resample(images, boxes, out: int):
  """Each image's region resampled to ``out`` x ``out``.

  Args:
    images: [N, H, W, C] (frames or glance maps).
    boxes: [N, 4] (y, x, L_y, L_x) in the images' pixels (``regions``).
    out: the output side (P, or the map grid).

  Returns:
    [N, out, out, C] in the images' dtype (computed in float32 at least).
  """
  dtype = tf.float64 if images.dtype == tf.float64 else tf.float32
  boxes = tf.cast(boxes, dtype)
  x = tf.cast(images, dtype)
  rows = _weights(boxes[:, 0], boxes[:, 2], out, tf.shape(images)[1], dtype)
  cols = _weights(boxes[:, 1], boxes[:, 3], out, tf.shape(images)[2], dtype)
  x = tf.einsum("niy,nyxc->nixc", rows, x)
  x = tf.einsum("njx,nixc->nijc", cols, x)
  return tf.cast(x, images.dtype)


def map_grid(patch_size: int, frame_size: int, map_side: int) -> int:
  """The glance-map grid a P-pixel patch spans: P h / S cells, at least 1
  (4 for P = 128, S = 224, h = 7)."""
  return max(1, round(patch_size * map_side / frame_size))

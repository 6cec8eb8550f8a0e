"""Spatial preprocessing: crop windows, JPEG decoding into them, flips, boxes.

The crop window of a video is chosen once and applied to all of its frames
(as TSN's group transforms do), and frames are decoded straight into that
window with ``decode_and_crop_jpeg`` so that pixels outside it are never
decoded.
"""
import itertools

import tensorflow as tf

# TSN's multi-scale crop lets height and width scales differ by at most one
# step of the scale list.
_MAX_SCALE_DISTORTION = 1


def _scale_pairs(num_scales):
  return [(i, j) for i, j in itertools.product(range(num_scales), repeat=2)
          if abs(i - j) <= _MAX_SCALE_DISTORTION]


def train_window(height, width, scales, seed):
  """A multi-scale crop window: scales of the short side, corner or centre.

  Args:
    height: int32 scalar, frame height.
    width: int32 scalar, frame width.
    scales: fractions of the short side, e.g. (1, .875, .75, .66).
    seed: int [2] stateless seed.

  Returns:
    int32 [4] window (offset_y, offset_x, crop_h, crop_w).
  """
  pairs = tf.constant(_scale_pairs(len(scales)), tf.int32)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  pick = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(pairs)[0],
                                     dtype=tf.int32)
  scale = tf.constant(scales, tf.float32)
  base = tf.cast(tf.minimum(height, width), tf.float32)
  crop_h = tf.cast(base * tf.gather(scale, pairs[pick, 0]), tf.int32)
  crop_w = tf.cast(base * tf.gather(scale, pairs[pick, 1]), tf.int32)
  room_y, room_x = height - crop_h, width - crop_w
  # Four corners and the centre.
  ys = tf.stack([0, 0, room_y, room_y, room_y // 2])
  xs = tf.stack([0, room_x, 0, room_x, room_x // 2])
  pos = tf.random.stateless_uniform([], seeds[1], 0, 5, dtype=tf.int32)
  return tf.stack([ys[pos], xs[pos], crop_h, crop_w])


def eval_window(height, width, resize, crop):
  """The window equal to "resize short side to ``resize``, centre-crop
  ``crop``".

  Args:
    height: int32 scalar, frame height.
    width: int32 scalar, frame width.
    resize: target short side of the evaluation resize (256).
    crop: side of the centre crop after that resize (224).

  Returns:
    int32 [4] window (offset_y, offset_x, side, side) in stored pixels.
  """
  short = tf.cast(tf.minimum(height, width), tf.float32)
  side = tf.cast(tf.round(short * crop / resize), tf.int32)
  side = tf.minimum(side, tf.minimum(height, width))
  return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def eval_windows(height, width, resize, crop, views):
  """The evaluation's views: ``eval_window`` for one; for three, the
  centre, left and right crops (the official ``GroupFullResSample``:
  offsets 2, 0 and 4 quarters of the room along the width, 2 quarters
  along the height, the quarter rounded down to whole stored pixels).

  Args:
    height: int32 scalar, frame height.
    width: int32 scalar, frame width.
    resize: target short side of the evaluation resize (256).
    crop: side of each crop after that resize (224).
    views: 1 or 3.

  Returns:
    int32 [views, 4] windows (offset_y, offset_x, side, side) in stored
    pixels.
  """
  centre = eval_window(height, width, resize, crop)
  if views == 1:
    return centre[None]
  side = centre[2]
  step_y, step_x = (height - side) // 4, (width - side) // 4
  return tf.stack([tf.stack([2 * step_y, q * step_x, side, side])
                   for q in (2, 0, 4)])


def decode_frames(jpegs, window, size):
  """Decodes JPEG frames inside ``window`` and resizes them to ``size``.

  Args:
    jpegs: string [T] JPEG bytes.
    window: int32 [4] crop window (offset_y, offset_x, h, w).
    size: output side.

  Returns:
    float32 [T, size, size, 3] in [0, 255].
  """
  frames = tf.map_fn(lambda jpeg: _decode_one(jpeg, window, size), jpegs,
                     fn_output_signature=tf.float32)
  return tf.ensure_shape(frames, [None, size, size, 3])


def decode_frames_or_report(jpegs, window, size):
  """``decode_frames`` that reports the JPEGs that do not decode.

  A graph cannot catch an op's error, but a dataset can drop the elements
  whose decoding failed: the positions that come through tell which did.

  Args:
    jpegs: string [T] JPEG bytes.
    window: int32 [4] crop window (offset_y, offset_x, h, w).
    size: output side.

  Returns:
    ``(frames, decoded)``: float32 [T, size, size, 3] in [0, 255] (all
    zeros unless every JPEG decoded) and bool [T], which JPEGs decoded.
  """
  n = tf.shape(jpegs)[0]
  tried = tf.data.Dataset.from_tensor_slices((tf.range(n), jpegs)).map(
      lambda i, jpeg: (i, _decode_one(jpeg, window, size))).ignore_errors()
  # When none decodes, batch() yields nothing: this empty batch stands in.
  nothing = tf.data.Dataset.from_tensors(
      (tf.zeros([0], tf.int32), tf.zeros([0, size, size, 3])))
  batch = tf.cast(tf.maximum(n, 1), tf.int64)
  positions, frames = tried.batch(batch).concatenate(nothing).take(
      1).get_single_element()
  decoded = tf.scatter_nd(positions[:, None], tf.ones_like(positions, tf.bool),
                          [n])
  frames = tf.cond(tf.reduce_all(decoded), lambda: frames,
                   lambda: tf.zeros([n, size, size, 3]))
  # Both branches have T frames.
  frames.set_shape(jpegs.shape[:1].concatenate([size, size, 3]))
  return frames, decoded


def _decode_one(jpeg, window, size):
  img = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
  return resize_square(img, size)


def resize_square(images, size):
  """Antialiased resize of cropped images to ``size`` x ``size``, as float32.

  A crop already of that size is only cast: the antialiased (triangle)
  kernel at scale 1 weighs each pixel by exactly 1 and its neighbours by 0,
  so the result is identical, and skipping it saves ~14 ms per 16 frames of
  224x224 in the exported graph (docs/BENCHMARKS.md, issue 15).

  Args:
    images: [..., H, W, C] (one image or a batch), any real dtype.
    size: output side.

  Returns:
    float32 [..., size, size, C].
  """
  images = tf.convert_to_tensor(images)
  shape = tf.shape(images)
  already = tf.logical_and(tf.equal(shape[-3], size),
                           tf.equal(shape[-2], size))
  out = tf.cond(already, lambda: tf.cast(images, tf.float32),
                lambda: tf.image.resize(images, [size, size], antialias=True))
  out.set_shape(images.shape[:-3].concatenate([size, size]).concatenate(
      images.shape[-1:]))
  return out


def normalize(frames, mean, std):
  """Maps [0, 255] pixels to ImageNet-normalised values."""
  mean = tf.constant(mean, tf.float32) * 255.0
  std = tf.constant(std, tf.float32) * 255.0
  return (frames - mean) / std


def window_boxes(boxes, window, height, width):
  """Maps frame-fraction boxes into fractions of the crop window.

  Args:
    boxes: float32 [T, 4] (ymin, xmin, ymax, xmax) fractions of the frame.
    window: int32 [4] (offset_y, offset_x, h, w).
    height: frame height.
    width: frame width.

  Returns:
    float32 [T, 4] boxes as fractions of the window, clipped to [0, 1].
  """
  w = tf.cast(window, tf.float32)
  hw = tf.cast(tf.stack([height, width, height, width]), tf.float32)
  offset = tf.stack([w[0], w[1], w[0], w[1]])
  extent = tf.stack([w[2], w[3], w[2], w[3]])
  return tf.clip_by_value((boxes * hw - offset) / extent, 0.0, 1.0)


def flip_boxes(boxes):
  """Mirrors (ymin, xmin, ymax, xmax) boxes left-right."""
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)

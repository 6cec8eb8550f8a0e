"""Patch positions and batched patch extraction.

An action a = (ay, ax) in [0, 1]^2 places a P x P patch with its top-left
pixel at floor(a * (S - P)) (docs/METHOD.md section 2). Discrete actions index a
g x g grid of such positions, row-major, g = sqrt(num_actions). AdaFocusV2
does not round: its patch starts at the real-valued a * (S - P) and is
sampled bilinearly, differentiably in a (docs/METHOD.md V2-2;
``continuous_offsets`` and ``extract_patches`` with float offsets).
"""
import math

import tensorflow as tf

# A position a = (ay, ax): its row and column.
POSITION_DIMS = 2


def grid_side(num_actions: int) -> int:
  g = math.isqrt(num_actions)
  if g * g != num_actions or g < 2:
    raise ValueError(f"num_actions={num_actions} is not a square grid of at "
                     "least 2x2 positions (25, 36, 49, 64, ...)")
  return g


def action_to_position(actions, num_actions: int):
  """Maps discrete action indices to positions (ay, ax) in [0, 1]^2.

  Args:
    actions: int tensor of grid indices, any shape [...].
    num_actions: grid size (a square number).

  Returns:
    float32 [..., 2] positions.
  """
  g = grid_side(num_actions)
  actions = tf.cast(actions, tf.int32)
  rows, cols = actions // g, actions % g
  return tf.cast(tf.stack([rows, cols], -1), tf.float32) / (g - 1)


def position_to_offset(positions, frame_size: int, patch_size: int):
  """Top-left pixel of the patch: floor(a * (S - P)), int32 [..., 2]."""
  return tf.cast(tf.floor(positions * float(frame_size - patch_size)),
                 tf.int32)


def continuous_offsets(positions, frame_size: int, patch_size: int):
  """V2's real-valued top-left pixel a * (S - P), [..., 2].

  Differentiable in ``positions``; ``extract_patches`` samples such offsets
  bilinearly. float32, or float64 for float64 positions (a model built in
  float64 for parity checks keeps the precision).
  """
  if positions.dtype != tf.float64:
    positions = tf.cast(positions, tf.float32)
  return positions * tf.cast(frame_size - patch_size, positions.dtype)


def random_positions(seeds, num_steps: int):
  """Uniform positions in [0, 1]^2, float32 [B, T, 2], one per video and step.

  V2's random branch (docs/METHOD.md V2-4): every frame and axis drawn
  independently.

  Args:
    seeds: int [B, 2] per-video stateless seeds.
    num_steps: T.
  """
  return tf.map_fn(
      lambda seed: tf.random.stateless_uniform([num_steps, 2], seed),
      seeds, fn_output_signature=tf.float32)


def centre_offsets(batch_shape, frame_size: int, patch_size: int):
  """Offsets of the centred patch for every element of ``batch_shape``."""
  c = (frame_size - patch_size) // 2
  return tf.fill(tf.concat([batch_shape, [2]], 0), c)


def random_offsets(seeds, num_steps: int, frame_size: int, patch_size: int):
  """Uniformly random integer offsets, one per video and step.

  The official V1 code's ``random_crop`` (``models/utils.py``) draws
  ``np.random.randint(0, S - P)``, whose upper bound is exclusive: a random
  patch never touches the frame's bottom or right edge (a whole-frame patch,
  P = S, sits at 0).

  Args:
    seeds: int [B, 2] per-video stateless seeds (the pipeline's ``seed``).
    num_steps: T.
    frame_size: S.
    patch_size: P.

  Returns:
    int32 [B, T, 2] offsets in [0, S - P - 1] (0 when P = S).
  """
  def one(seed):
    return tf.random.stateless_uniform([num_steps, 2], seed, 0,
                                       max(frame_size - patch_size, 1),
                                       dtype=tf.int32)
  return tf.map_fn(one, seeds, fn_output_signature=tf.int32)


def box_offsets(boxes, frame_size: int, patch_size: int):
  """Offsets of the patch centred on each box, clipped inside the frame.

  Args:
    boxes: float [..., 4] (ymin, xmin, ymax, xmax) fractions of the frame.
    frame_size: S.
    patch_size: P.

  Returns:
    int32 [..., 2] offsets.
  """
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0 * frame_size
  offset = tf.round(centre - patch_size / 2.0)
  return tf.cast(tf.clip_by_value(offset, 0.0, frame_size - patch_size),
                 tf.int32)


def extract_patches(frames, offsets, patch_size: int):
  """Crops one patch from every frame in a single batched op.

  ``crop_and_resize`` puts the box corners on pixel centres when the box
  spans ``offset .. offset + P - 1`` normalised by ``size - 1``. Its float32
  arithmetic lands a hair off those centres, so integer offsets sample the
  nearest pixel (exactly the slice ``frames[y:y+P, x:x+P]``) and fractional
  offsets interpolate bilinearly. Gradients reach the frames either way.

  Args:
    frames: float [B, T, H, W, C].
    offsets: [B, T, 2] top-left (y, x) pixel offsets, one per frame, or
      [B, 1, 2], one per video (the same box in every frame); integer
      (exact crops) or float (bilinear, differentiable in the offsets).
    patch_size: P.

  Returns:
    [B * T, P, P, C] patches, frame-major within each video (float64 for
    float64 offsets: ``translated_patches``).
  """
  shape = tf.shape(frames)
  b, t, h, w = shape[0], shape[1], shape[2], shape[3]
  flat = tf.reshape(frames, tf.concat([[b * t], shape[2:]], 0))
  offsets = tf.broadcast_to(offsets, tf.stack([b, t, 2]))
  if offsets.dtype == tf.float64:
    # A float64 model's offsets: crop_and_resize would compute in float32.
    return translated_patches(tf.cast(flat, tf.float64),
                              tf.reshape(offsets, [b * t, 2]), patch_size)
  off = tf.cast(tf.reshape(offsets, [b * t, 2]), tf.float32)
  span = float(patch_size - 1)
  hm1 = tf.cast(h - 1, tf.float32)
  wm1 = tf.cast(w - 1, tf.float32)
  boxes = tf.stack([off[:, 0] / hm1, off[:, 1] / wm1,
                    (off[:, 0] + span) / hm1, (off[:, 1] + span) / wm1], 1)
  method = "bilinear" if offsets.dtype.is_floating else "nearest"
  # CropAndResize has no bfloat16 kernel; crop in float32.
  patches = tf.image.crop_and_resize(tf.cast(flat, tf.float32), boxes,
                                     tf.range(b * t),
                                     [patch_size, patch_size], method=method)
  return tf.cast(patches, frames.dtype)


def translated_patches(frames, offsets, patch_size: int):
  """Bilinear patches at real-valued offsets, in the frames' own dtype.

  The patch at (y1, x1) is the frame translated by a sub-pixel amount
  (docs/METHOD.md V2-2): output pixel (i, j) samples (y1 + i, x1 + j), so
  with y0 = floor(y1), fy = y1 - y0 (the same for every row, and likewise
  for columns) it blends four whole-pixel crops with weights (1 - fy)(1 - fx),
  (1 - fy) fx, fy (1 - fx) and fy fx. That is ``crop_and_resize``'s
  bilinear sampling (``extract_patches``) without its float32 arithmetic:
  a float64 model (tests/convert's training parity) keeps float64 patches
  and float64 gradients with respect to the offsets (through fy, fx).

  Args:
    frames: float [N, H, W, C].
    offsets: float [N, 2] top-left (y, x), in [0, H - P] x [0, W - P].
    patch_size: P.

  Returns:
    [N, P, P, C] patches in ``frames.dtype``.
  """
  offsets = tf.cast(offsets, frames.dtype)
  corner = tf.floor(offsets)
  frac = offsets - corner
  start = tf.cast(corner, tf.int32)
  shape = tf.shape(frames)
  # P + 1 rows and columns from the corner; the last is weighted 0 when the
  # offset is whole, and clamped inside the frame when it is the border.
  steps = tf.range(patch_size + 1)
  rows = tf.minimum(start[:, :1] + steps, shape[1] - 1)
  cols = tf.minimum(start[:, 1:] + steps, shape[2] - 1)
  region = tf.gather(tf.gather(frames, rows, axis=1, batch_dims=1), cols,
                     axis=2, batch_dims=1)
  fy = frac[:, 0, None, None, None]
  fx = frac[:, 1, None, None, None]
  top = region[:, :-1]
  bottom = region[:, 1:]
  rows_blend = (1 - fy) * top + fy * bottom
  return (1 - fx) * rows_blend[:, :, :-1] + fx * rows_blend[:, :, 1:]


def offsets_to_boxes(offsets, frame_size: int, patch_size: int):
  """Patch boxes (ymin, xmin, ymax, xmax) as fractions of the frame."""
  off = tf.cast(offsets, tf.float32) / frame_size
  return tf.concat([off, off + patch_size / frame_size], -1)

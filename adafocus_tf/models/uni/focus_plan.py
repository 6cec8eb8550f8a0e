"""Where the focus net looks in a video: K candidate frames and a region in
each (docs/METHOD.md V2-11.2), as one tensor the recognizer passes around.

A plan is float32 [B, K, 5] (float64 when its regions are: a model built
in float64, tests/convert): the candidate index of each focus frame (in
increasing order) and its region (y, x, L_y, L_x) in frame pixels.
"""
import tensorflow as tf


PLAN_DIMS = 5


def make(indices, regions):
  """The plan of int [B, K] frame indices and [B, K, 4] regions."""
  regions = tf.convert_to_tensor(regions)
  dtype = tf.float64 if regions.dtype == tf.float64 else tf.float32
  return tf.concat([tf.cast(indices, dtype)[..., None],
                    tf.cast(regions, dtype)], -1)


def indices(plan):
  """int32 [B, K] candidate indices."""
  return tf.cast(tf.round(plan[..., 0]), tf.int32)


def regions(plan):
  """[B, K, 4] (y, x, L_y, L_x)."""
  return plan[..., 1:]


def pictures(frames, plan, object_boxes, frame_size: int):
  """What pictures of a plan show (``Recognizer.patch_pictures``).

  Args:
    frames: [B, N, S, S, 3] the candidates the regions are cut from.
    plan: [B, K, 5] focus plans.
    object_boxes: [B, N, 4] object boxes of the candidates, or None.
    frame_size: S.

  Returns:
    (the K chosen frames [B, K, S, S, 3], their regions [B, K, 4] as
    fractions (ymin, xmin, ymax, xmax), their object boxes or None).
  """
  idx = indices(plan)
  y, x, h, w = tf.unstack(regions(plan), axis=-1)
  boxes = tf.stack([y, x, y + h, x + w], -1) / float(frame_size)
  if object_boxes is not None:
    object_boxes = tf.gather(object_boxes, idx, batch_dims=1)
  return tf.gather(frames, idx, batch_dims=1), boxes, object_boxes

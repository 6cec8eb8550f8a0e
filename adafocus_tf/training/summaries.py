"""TensorBoard output: scalars and frames with their patches drawn."""
import numpy as np
import tensorflow as tf


_PATCH_COLOUR = np.array([[1.0, 0.2, 0.2]], np.float32)
_BOX_COLOUR = np.array([[0.2, 1.0, 0.2]], np.float32)


def denormalize(frames, mean, std):
  """Normalised frames back to float [0, 1] pixels."""
  return tf.clip_by_value(frames * tf.constant(std) + tf.constant(mean), 0, 1)


def draw_patches(frames, patch_boxes, mean, std, boxes=None):
  """Frames with the patch outlined (and the object box, if given).

  Args:
    frames: [T, S, S, 3] normalised frames of one video.
    patch_boxes: [T, 4] patch boxes (fractions: ymin, xmin, ymax, xmax).
    mean: normalisation mean.
    std: normalisation standard deviation.
    boxes: optional [T, 4] object boxes (fractions) drawn in another colour.

  Returns:
    float32 [T, S, S, 3] pictures in [0, 1].
  """
  img = denormalize(tf.cast(frames, tf.float32), mean, std)
  img = tf.image.draw_bounding_boxes(
      img, tf.cast(patch_boxes, tf.float32)[:, None, :], _PATCH_COLOUR)
  if boxes is not None:
    img = tf.image.draw_bounding_boxes(img, tf.cast(boxes, tf.float32)[:, None],
                                       _BOX_COLOUR)
  return img


def write_patch_images(writer, tag, frames, patch_boxes, mean, std, step,
                       max_videos=3, boxes=None):
  """Writes a strip of frames per video, patches drawn, to TensorBoard."""
  with writer.as_default():
    for i in range(min(max_videos, frames.shape[0])):
      pics = draw_patches(frames[i], patch_boxes[i], mean, std,
                          None if boxes is None else boxes[i])
      strip = tf.concat(tf.unstack(pics), axis=1)[None]
      tf.summary.image(f"{tag}/video{i}", strip, step=step)


def write_batch_patch_images(writer, tag, batch, offsets, recognizer, step,
                             max_videos=3):
  """``write_patch_images`` for a pipeline batch of any family.

  Args:
    writer: a summary writer.
    tag: image tag prefix.
    batch: pipeline batch (with its ``boxes`` when the records have them).
    offsets: the recognizer's ``offsets`` of the batch.
    recognizer: the run's recognizer (``patch_pictures`` says which frames
      and boxes to draw).
    step: summary step.
    max_videos: videos written.
  """
  d = recognizer.cfg.data
  frames, patch_boxes, boxes = recognizer.patch_pictures(batch, offsets)
  write_patch_images(writer, tag, frames, patch_boxes, d.mean, d.std, step,
                     max_videos=max_videos, boxes=boxes)

"""TensorBoard output: scalars and frames with their patches drawn."""
import numpy as np
import tensorflow as tf

from adafocus_tf.models import patches
from adafocus_tf.policy import patch_choice

_PATCH_COLOUR = np.array([[1.0, 0.2, 0.2]], np.float32)
_BOX_COLOUR = np.array([[0.2, 1.0, 0.2]], np.float32)


def denormalize(frames, mean, std):
  """Normalised frames back to float [0, 1] pixels."""
  return tf.clip_by_value(frames * tf.constant(std) + tf.constant(mean), 0, 1)


def draw_patches(frames, offsets, patch_size: int, mean, std, boxes=None):
  """Frames with the patch outlined (and the object box, if given).

  Args:
    frames: [T, S, S, 3] normalised frames of one video.
    offsets: [T, 2] patch offsets, or [1, 2] (one location for every frame).
    patch_size: P.
    mean: normalisation mean.
    std: normalisation standard deviation.
    boxes: optional [T, 4] object boxes (fractions) drawn in another colour.

  Returns:
    float32 [T, S, S, 3] pictures in [0, 1].
  """
  size = frames.shape[1]
  img = denormalize(tf.cast(frames, tf.float32), mean, std)
  offsets = tf.broadcast_to(offsets, [tf.shape(frames)[0], 2])
  patch_boxes = patches.offsets_to_boxes(offsets, size, patch_size)
  img = tf.image.draw_bounding_boxes(img, patch_boxes[:, None, :],
                                     _PATCH_COLOUR)
  if boxes is not None:
    img = tf.image.draw_bounding_boxes(img, tf.cast(boxes, tf.float32)[:, None],
                                       _BOX_COLOUR)
  return img


def write_patch_images(writer, tag, frames, offsets, patch_size, mean, std,
                       step, max_videos=3, boxes=None):
  """Writes a strip of frames per video, patches drawn, to TensorBoard."""
  with writer.as_default():
    for i in range(min(max_videos, frames.shape[0])):
      pics = draw_patches(frames[i], offsets[i], patch_size, mean, std,
                          None if boxes is None else boxes[i])
      strip = tf.concat(tf.unstack(pics), axis=1)[None]
      tf.summary.image(f"{tag}/video{i}", strip, step=step)


def write_batch_patch_images(writer, tag, batch, offsets, cfg, step,
                             max_videos=3):
  """``write_patch_images`` for a pipeline batch of either model.

  Args:
    writer: a summary writer.
    tag: image tag prefix.
    batch: pipeline batch; the patches are drawn on the frames they are
      cropped from (``patch_choice.patch_stream``), with its ``boxes``.
    offsets: [B, K, 2] patch offsets (``patch_choice.choose_offsets``).
    cfg: the run's config (patch size, normalisation).
    step: summary step.
    max_videos: videos written.
  """
  frames = batch[patch_choice.patch_stream(cfg)]
  write_patch_images(writer, tag, frames, offsets,
                     cfg.model.patch_size, cfg.data.mean, cfg.data.std, step,
                     max_videos=max_videos, boxes=batch.get("boxes"))

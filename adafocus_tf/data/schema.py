"""The TFRecord format: one ``tf.train.SequenceExample`` per video.

Documented for users in ``docs/DATA_FORMAT.md``; bump ``FORMAT_VERSION`` on
any incompatible change.

Context features:
  video_id     bytes   unique id of the video within its split
  labels       int64[] class indices (several for multi-label datasets)
  num_frames   int64   number of stored frames
  height       int64   stored frame height in pixels
  width        int64   stored frame width in pixels
  source       bytes   path of the video file or frame folder it came from

Feature lists:
  frames       bytes   one JPEG-encoded frame per step, in time order
  boxes        float[4] optional, one per frame: the box of the object that
                        carries the class, (ymin, xmin, ymax, xmax) as
                        fractions of the frame (synthetic data only)
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

FORMAT_VERSION = 1

VIDEO_ID = "video_id"
LABELS = "labels"
NUM_FRAMES = "num_frames"
HEIGHT = "height"
WIDTH = "width"
SOURCE = "source"
FRAMES = "frames"
BOXES = "boxes"


def encode_video(video_id: str, labels: Sequence[int],
                 jpeg_frames: Sequence[bytes], height: int, width: int,
                 source: str = "",
                 boxes: Optional[np.ndarray] = None) -> bytes:
  """Serializes one video as a SequenceExample.

  Args:
    video_id: unique id within the split.
    labels: class indices, at least one.
    jpeg_frames: JPEG bytes of every frame, in time order.
    height: frame height in pixels.
    width: frame width in pixels.
    source: where the video came from (path), for error messages.
    boxes: optional float array [num_frames, 4] of per-frame object boxes.

  Returns:
    The serialized ``tf.train.SequenceExample``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not labels:
    raise ValueError(f"video {video_id!r} has no label")
  if not jpeg_frames:
    raise ValueError(f"video {video_id!r} has no frames")
  feature = tf.train.Feature
  ctx = {
      VIDEO_ID: feature(bytes_list=tf.train.BytesList(
          value=[video_id.encode()])),
      LABELS: feature(int64_list=tf.train.Int64List(
          value=[int(x) for x in labels])),
      NUM_FRAMES: feature(int64_list=tf.train.Int64List(
          value=[len(jpeg_frames)])),
      HEIGHT: feature(int64_list=tf.train.Int64List(value=[int(height)])),
      WIDTH: feature(int64_list=tf.train.Int64List(value=[int(width)])),
      SOURCE: feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
  }
  lists = {
      FRAMES: tf.train.FeatureList(feature=[
          feature(bytes_list=tf.train.BytesList(value=[f]))
          for f in jpeg_frames]),
  }
  if boxes is not None:
    boxes = np.asarray(boxes, np.float32)
    if boxes.shape != (len(jpeg_frames), 4):
      raise ValueError(f"video {video_id!r}: boxes shape {boxes.shape}, "
                       f"expected ({len(jpeg_frames)}, 4)")
    lists[BOXES] = tf.train.FeatureList(feature=[
        feature(float_list=tf.train.FloatList(value=b.tolist()))
        for b in boxes])
  ex = tf.train.SequenceExample(
      context=tf.train.Features(feature=ctx),
      feature_lists=tf.train.FeatureLists(feature_list=lists))
  return ex.SerializeToString()


def parse_video(serialized, with_boxes: bool = False):
  """Parses one serialized video (graph-compatible).

  Args:
    serialized: scalar string tensor.
    with_boxes: also parse the ``boxes`` feature list (must be present).

  Returns:
    A dict of tensors: video_id, labels (int64[L]), num_frames, height,
    width, source, frames (string[N]) and, with ``with_boxes``, boxes [N, 4].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ctx_spec = {
      VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
      LABELS: tf.io.VarLenFeature(tf.int64),
      NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
      HEIGHT: tf.io.FixedLenFeature([], tf.int64),
      WIDTH: tf.io.FixedLenFeature([], tf.int64),
      SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
  }
  seq_spec = {FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)}
  if with_boxes:
    seq_spec[BOXES] = tf.io.FixedLenSequenceFeature([4], tf.float32)
  ctx, seq = tf.io.parse_single_sequence_example(
      serialized, context_features=ctx_spec, sequence_features=seq_spec)
  out = dict(ctx)
  out[LABELS] = tf.sparse.to_dense(ctx[LABELS])
  out.update(seq)
  return out

"""Requests to network inputs, inside the exported graph.

Both signatures reach the network through the evaluation transform of
``pipeline.make_video_fn``. For each frame stream of the model
(``clips.frame_streams``: ``frames`` of the V1 model, or ``glance_frames``
and ``focus_frames`` of the two-stream model) the graph takes the frames of
evaluation sampling (``sampling.sample_indices`` with ``training=False``:
TSN segment centres, or the centred clip with ``data.dense_sampling``),
cuts the crop window of "resize the short side to ``eval_resize``,
centre-crop ``frame_size``" (``augment.eval_window``), resizes it to
``frame_size`` and normalises.

A request that does not fit fails with an ``InvalidArgumentError`` naming
what is wrong (the C++ runtime of TF Serving feeds tensors without checking
them against the signature, so the graph checks what it relies on).
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import augment
from adafocus_tf.data import sampling
from adafocus_tf.data import schema
from adafocus_tf.families import registry
from adafocus_tf.inference import clips


def checked(value, *assertions):
  """``value`` once every assertion op has run (no AutoGraph here)."""
  with tf.control_dependencies(assertions):
    return tf.identity(value)


def request_frames(cfg: ExperimentConfig) -> Optional[int]:
  """N, the frames of one video in a ``serving_default`` request.

  Args:
    cfg: the run's config.

  Returns:
    T (``data.num_frames``) for a model of one stream whose networks read
    every sampled frame (V1, AdaFocusV2): the client sends the frames of
    evaluation sampling. None for the two-stream models and for a model
    that chooses among its sampled frames (Uni-AdaFocus: the glance reads
    G of its N candidates, the focus net K): any N >= 1, from which the
    graph samples the streams (the whole decoded video gives exactly
    evaluation's frames).
  """
  family = registry.of(cfg)
  streams = family.frame_streams(cfg)
  if len(streams) != 1:
    return None
  (count,) = streams.values()
  return count if family.frames_read(cfg) == (count, count) else None


def stream_indices(num_stored, cfg: ExperimentConfig) -> Dict[str, tf.Tensor]:
  """{stream key: int32 [T_k]} the frames evaluation samples of each stream.

  Args:
    num_stored: int32 scalar, the video's frames.
    cfg: the run's config (streams, ``dense_sampling``).
  """
  return {key: sampling.sample_indices(num_stored, count, training=False,
                                       dense=cfg.data.dense_sampling)
          for key, count in clips.frame_streams(cfg).items()}


def preprocess_frames(frames, cfg: ExperimentConfig,
                      with_indices: bool = False):
  """Raw uint8 videos to normalised network inputs.

  Args:
    frames: uint8 [B, N, H, W, 3] RGB, any H and W; N = ``request_frames``
      when that is not None.
    cfg: the run's config.
    with_indices: also return the frames each stream sampled.

  Returns:
    {stream key: float32 [B, T_k, S, S, 3]}, S = ``data.frame_size``; with
    ``with_indices``, and {stream key: int32 [B, T_k]} indices into the N
    frames.
  """
  d = cfg.data
  shape = tf.shape(frames)
  b, n, h, w = shape[0], shape[1], shape[2], shape[3]
  checks = [
      tf.debugging.assert_equal(
          shape[4], 3, message="frames must be RGB: 3 channels in the last "
          "dimension (not grayscale or RGBA)"),
      tf.debugging.assert_positive(n, message="a video needs at least one "
                                   "frame"),
      tf.debugging.assert_positive(h, message="frames have height 0"),
      tf.debugging.assert_positive(w, message="frames have width 0")]
  fixed = request_frames(cfg)
  if fixed is not None:
    checks.append(tf.debugging.assert_equal(
        n, fixed, message=f"this model takes exactly {fixed} frames per "
        "video (data.num_frames)"))
  frames = checked(frames, *checks)
  window = augment.eval_window(h, w, d.eval_resize, d.frame_size)
  size = d.frame_size
  out, indices = {}, {}
  for key, idx in stream_indices(n, cfg).items():
    t = idx.shape[0]
    indices[key] = tf.tile(tf.cast(idx, tf.int32)[None], tf.stack([b, 1]))
    crop = tf.slice(tf.gather(frames, idx, axis=1),
                    tf.stack([0, 0, window[0], window[1], 0]),
                    tf.stack([b, t, window[2], window[3], 3]))
    flat = tf.reshape(crop, tf.stack([b * t, window[2], window[3], 3]))
    # As augment.decode_frames resizes each decoded crop.
    resized = augment.resize_square(flat, size)
    out[key] = augment.normalize(
        tf.reshape(resized, [-1, t, size, size, 3]), d.mean, d.std)
  return (out, indices) if with_indices else out


def preprocess_example(serialized, cfg: ExperimentConfig,
                       with_indices: bool = False):
  """One serialized video to normalised network inputs, as evaluation reads it.

  Args:
    serialized: scalar string, a SequenceExample of ``docs/DATA_FORMAT.md``
      (``labels`` may be empty).
    cfg: the run's config.
    with_indices: also return the frames each stream sampled.

  Returns:
    {stream key: float32 [T_k, S, S, 3]}; with ``with_indices``, and
    {stream key: int32 [T_k]} indices into the example's frames.
  """
  d = cfg.data
  v = schema.parse_video(serialized)
  jpegs = v[schema.FRAMES]
  num = checked(tf.shape(jpegs)[0], tf.debugging.assert_positive(
      tf.shape(jpegs)[0], message="the SequenceExample has no frames"))
  size = tf.stack([tf.cast(v[schema.HEIGHT], tf.int32),
                   tf.cast(v[schema.WIDTH], tf.int32)])
  # The crop window comes from the context's size: a JPEG of another size
  # would be cropped wrongly (or fail obscurely), so say so instead. Every
  # frame, not only the sampled ones: reading a JPEG's header costs little.
  stored = tf.map_fn(lambda j: tf.io.extract_jpeg_shape(j)[:2], jpegs,
                     fn_output_signature=tf.int32)
  same = tf.reduce_all(tf.equal(stored, size), axis=1)
  first_bad = tf.argmin(tf.cast(same, tf.int32), output_type=tf.int32)
  jpegs = checked(jpegs, tf.debugging.Assert(
      tf.reduce_all(same),
      [v[schema.VIDEO_ID], ": frame", first_bad, "is (height, width)",
       stored[first_bad], "but the context says", size]))
  window = augment.eval_window(size[0], size[1], d.eval_resize, d.frame_size)
  out, indices = {}, {}
  for key, idx in stream_indices(num, cfg).items():
    indices[key] = tf.cast(idx, tf.int32)
    picked = tf.gather(jpegs, idx)
    frames = augment.decode_frames(picked, window, d.frame_size)
    frames = tf.ensure_shape(frames, [idx.shape[0], d.frame_size,
                                      d.frame_size, 3])
    out[key] = augment.normalize(frames, d.mean, d.std)
  return (out, indices) if with_indices else out


def preprocess_examples(examples, cfg: ExperimentConfig,
                        with_indices: bool = False):
  """``preprocess_example`` of each serialized video.

  Args:
    examples: string [B] serialized SequenceExamples.
    cfg: the run's config.
    with_indices: also return the frames each stream sampled.

  Returns:
    {stream key: float32 [B, T_k, S, S, 3]}; with ``with_indices``, and
    {stream key: int32 [B, T_k]} indices into each example's frames.
  """
  s = cfg.data.frame_size
  streams = clips.frame_streams(cfg)
  spec = {key: tf.TensorSpec([count, s, s, 3], tf.float32)
          for key, count in streams.items()}
  if with_indices:
    spec = (spec, {key: tf.TensorSpec([count], tf.int32)
                   for key, count in streams.items()})
  return tf.map_fn(lambda e: preprocess_example(e, cfg, with_indices),
                   examples, fn_output_signature=spec)

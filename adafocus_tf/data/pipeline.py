"""The tf.data input pipeline over prepared TFRecord shards.

``make_dataset`` yields batches of dicts:

  frames       float32 [B, T, S, S, 3] ImageNet-normalised (V1 datasets), or
  glance_frames, focus_frames  the two independently sampled streams
                                (Something-Something: 8 and 12 frames)
  label        int32 [B]            first label
  multi_hot    float32 [B, C]       all labels
  seed         int32 [B, 2]         per-video stateless seed for the model's
                                    own randomness (random patches, dropout)
  video_id     string [B]
  boxes        float32 [B, T, 4]    object boxes in output-frame fractions
                                    (only with ``with_boxes``)

With ``views`` > 1 (evaluation only) every frame stream holds each
video's views, the centre first: [B, V, T, S, S, 3] (``augment.eval_windows``).

Randomness is stateless and keyed by (seed, epoch, video id): a video is
sampled and augmented the same way whatever replica, worker or resumed run
reads it, and ``tf.data`` stays deterministic under parallel maps
(through tf.data service, the order is not: ``data_service``).

A sampled frame that does not decode stops the pipeline with an error naming
the frame, the video, its source and its shard file, or, with the data
config's ``skip_bad_records``, skips the video with a warning naming the same.
A corrupt or truncated shard stops it with an error naming the file, the
record and its byte offset, or, with ``skip_bad_records``, its bad records
are skipped, the rest of it read, and ``record_integrity.log_skipped`` lists
them.
"""
from __future__ import annotations

import sys
from typing import Optional

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.config import DataConfig
from adafocus_tf.data import augment
from adafocus_tf.data import data_service
from adafocus_tf.data import record_integrity
from adafocus_tf.data import sampling
from adafocus_tf.data import schema
from adafocus_tf.data import shards

AUTOTUNE = tf.data.AUTOTUNE
_HASH_BUCKETS = 2**62
# Sub-seeds of a video's seed, one per random decision.
_SEED_FRAMES, _SEED_CROP, _SEED_FLIP, _SEED_FOCUS_FRAMES, _SEED_MODEL = range(5)


def video_seed(video_id, seed: int, epoch):
  """The stateless seed of one video in one epoch: int64 [2]."""
  h = tf.strings.to_hash_bucket_fast(video_id, _HASH_BUCKETS)
  base = tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)
  return tf.stack([base, h])


def _sub_seed(seed, which):
  return tf.random.experimental.stateless_fold_in(seed, which)


def _split_dir(data_dir: str, split: str) -> str:
  return io_utils.join(data_dir, split)


def split_dir(cfg: DataConfig, split: str) -> str:
  """The directory of ``split`` under the config's data_dir."""
  return _split_dir(cfg.data_dir, split)


def _bad_frame_message(v, frame, shard):
  """Names an undecodable frame: string scalar tensor.

  No quotes: ``tf.debugging.Assert`` would escape them.

  Args:
    v: the parsed video (``schema.parse_video``).
    frame: int32 scalar, index of the stored frame.
    shard: shard file path (string tensor), or "" when unknown.
  """
  source = v[schema.SOURCE]
  parts = [
      "video ", v[schema.VIDEO_ID],
      tf.where(tf.equal(source, ""), "", tf.strings.join([" (", source, ")"])),
  ]
  if not isinstance(shard, str) or shard:
    parts += [" in ", shard]
  parts += [": frame ", tf.strings.as_string(frame), " does not decode as a ",
            tf.strings.as_string(v[schema.WIDTH]), "x",
            tf.strings.as_string(v[schema.HEIGHT]), " JPEG"]
  return tf.strings.join(parts)


def _video_fn(cfg: DataConfig, training: bool, seed: int, epoch,
              with_boxes: bool = False, views: int = 1):
  """The per-record function that reports undecodable frames.

  Args: as ``make_video_fn``.

  Returns:
    ``fn(serialized, shard="") -> (example dict, problem)``: ``problem`` is
    "" or a message naming the first sampled frame that does not decode,
    the video and ``shard`` (the example's frames are then zeros).
  """
  two_streams = cfg.glance_frames > 0 and cfg.focus_frames > 0

  def fn(serialized, shard=""):
    v = schema.parse_video(serialized, with_boxes=with_boxes)
    vseed = video_seed(v[schema.VIDEO_ID], seed, epoch)
    height = tf.cast(v[schema.HEIGHT], tf.int32)
    width = tf.cast(v[schema.WIDTH], tf.int32)
    num = tf.shape(v[schema.FRAMES])[0]
    if training:
      window = augment.train_window(height, width, cfg.train_scales,
                                    _sub_seed(vseed, _SEED_CROP))
      flip = cfg.flip and tf.random.stateless_uniform(
          [], _sub_seed(vseed, _SEED_FLIP)) < 0.5
    else:
      windows = augment.eval_windows(height, width, cfg.eval_resize,
                                     cfg.frame_size, views)
      window = windows[0]
      flip = False

    failed = []  # stored indices of sampled frames that do not decode

    def stream(num_frames, which):
      idx = sampling.sample_indices(num, num_frames, training,
                                    cfg.dense_sampling, _sub_seed(vseed, which))
      jpegs = tf.gather(v[schema.FRAMES], idx)
      frames, decoded = augment.decode_frames_or_report(jpegs, window,
                                                        cfg.frame_size)
      failed.append(tf.boolean_mask(idx, tf.logical_not(decoded)))
      if flip is not False:
        frames = tf.cond(flip, lambda: tf.reverse(frames, [2]),
                         lambda: frames)
      if views > 1:
        # The same JPEGs: the first view's report covers the others.
        frames = tf.stack([frames] + [
            augment.decode_frames_or_report(jpegs, windows[k],
                                            cfg.frame_size)[0]
            for k in range(1, views)])
      return idx, augment.normalize(frames, cfg.mean, cfg.std)

    labels = tf.cast(v[schema.LABELS], tf.int32)
    out = {
        "label": labels[0],
        "multi_hot": tf.reduce_max(
            tf.one_hot(labels, cfg.num_classes, dtype=tf.float32), axis=0),
        "seed": _sub_seed(vseed, _SEED_MODEL),
        "video_id": v[schema.VIDEO_ID],
    }
    if two_streams:
      _, out["glance_frames"] = stream(cfg.glance_frames, _SEED_FRAMES)
      idx, out["focus_frames"] = stream(cfg.focus_frames, _SEED_FOCUS_FRAMES)
    else:
      idx, out["frames"] = stream(cfg.num_frames, _SEED_FRAMES)
    if with_boxes:
      boxes = augment.window_boxes(tf.gather(v[schema.BOXES], idx), window,
                                   height, width)
      if flip is not False:
        boxes = tf.cond(flip, lambda: augment.flip_boxes(boxes),
                        lambda: boxes)
      out["boxes"] = boxes
    failed = tf.concat(failed, 0)
    problem = tf.cond(tf.size(failed) > 0,
                      lambda: _bad_frame_message(v, failed[0], shard),
                      lambda: tf.constant(""))
    return out, problem

  return fn


def _fail_on(problem) -> tf.Operation:
  """An op that fails with ``problem`` unless it is empty."""
  return tf.debugging.Assert(tf.equal(problem, ""), [tf.strings.join([
      problem, "; set data.skip_bad_records=true to skip such videos, or "
      "list them all with adafocus_tf.data.pipeline.find_bad_records"])])


def _warn_unless_fine(problem):
  """True when ``problem`` is empty; else prints a warning with it, False."""
  def warn():
    # tf.print, not tf.data's logged warning, which TF_CPP_MIN_LOG_LEVEL=2
    # (adafocus_tf's default) hides; one string tensor, which it does not
    # quote.
    tf.print(tf.strings.join(["WARNING: data.skip_bad_records: skipping a "
                              "video: ", problem]), output_stream=sys.stderr)
    return tf.constant(False)
  return tf.cond(tf.equal(problem, ""), lambda: tf.constant(True), warn)


def make_video_fn(cfg: DataConfig, training: bool, seed: int, epoch,
                  with_boxes: bool = False, views: int = 1):
  """Returns the per-record function: serialized video -> example dict.

  ``fn(serialized, shard="")`` raises ``tf.errors.InvalidArgumentError``
  naming the video (and ``shard``, a file path, when given) when a sampled
  frame does not decode.

  Args:
    cfg: data settings (frames, sizes, scales, flip, normalisation).
    training: random sampling and augmentation (else evaluation transform).
    seed: the run's seed.
    epoch: epoch number (int or scalar tensor), varies the randomness.
    with_boxes: also return the object boxes (records must have them).
    views: evaluation views per video (``augment.eval_windows``).
  """
  video_fn = _video_fn(cfg, training, seed, epoch, with_boxes, views)

  def fn(serialized, shard=""):
    out, problem = video_fn(serialized, shard)
    with tf.control_dependencies([_fail_on(problem)]):
      return tf.nest.map_structure(tf.identity, out)

  return fn


def make_dataset(cfg: DataConfig, split_dir: str, training: bool,
                 batch_size: int, seed: int = 0, epoch=0,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 with_boxes: bool = False, skip_videos: int = 0,
                 repeat: bool = False, views: int = 1) -> tf.data.Dataset:
  """Builds the batched input pipeline of one split for one epoch.

  Args:
    cfg: data settings; with ``skip_bad_records`` a video with a sampled
      frame that does not decode is skipped with a warning (on stderr)
      naming it and its shard, and a corrupt record is skipped and noted
      for ``record_integrity.log_skipped``; else either stops the pipeline
      with an ``InvalidArgumentError`` naming them (for a corrupt shard,
      ``record_integrity.refuse_corrupt_shards`` makes it a
      ``RefusedError``).
    split_dir: prepared split directory (local or ``s3://``).
    training: shuffle, random sampling and augmentation, drop the last
      partial batch; otherwise a deterministic single pass (shards are
      read interleaved, in the same order every time).
    batch_size: batch size of this input pipeline; under a strategy pass the
      per-replica size (``input_context.get_per_replica_batch_size``).
    seed: run seed (order and augmentation).
    epoch: epoch number; each epoch reshuffles and re-augments.
    input_context: from ``distribute_datasets_from_function``; shards the
      data between input pipelines (by file when there are enough files).
    with_boxes: also yield the stored object boxes.
    skip_videos: videos of this epoch's order to skip, before any decoding
      (how a resumed run continues mid-epoch).
    repeat: cycle the split endlessly (training loops take a fixed number of
      steps, so no input pipeline of a multi-worker run runs dry); each
      pass is the whole split, every video once.
    views: evaluation views per video (``DataConfig.test_crops``; the
      frame streams then gain a view axis, module doc).

  A training pipeline built under ``data_service.use(address)`` is decoded
  and augmented by that tf.data service's workers: each pass of the split
  is one dynamically sharded job (every video once), repeated, skipped and
  batched here.

  Returns:
    A ``tf.data.Dataset`` of example dicts (see the module docstring).

  Raises:
    ValueError: several views asked of a training pipeline or with boxes.
  """
  if views > 1 and (training or with_boxes):
    raise ValueError(f"{views} views per video: evaluation without boxes "
                     "only (data.test_crops=1 for training and the oracle)")
  files = shards.list_records(split_dir)
  io_utils.ensure_filesystem(split_dir)
  service = data_service.active() if training else ""
  if service and input_context and input_context.num_input_pipelines > 1:
    raise data_service.DataServiceError(
        f"--data_service={service} feeds one input pipeline per job; this "
        f"job has {input_context.num_input_pipelines}")
  ds = record_integrity.shard_dataset(files)
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  shard_files = num_pipelines > 1 and len(files) >= num_pipelines
  if shard_files:
    ds = ds.shard(num_pipelines, pipeline_id)
  epoch_seed = seed * 7919 + epoch
  if training:
    ds = ds.shuffle(len(files), seed=epoch_seed)
  # Records with their shard's path (for error messages), each shard
  # checked to have been read whole.
  ds = ds.interleave(lambda f, size, count: record_integrity.read_shard(
                         f, size, count, salvage=cfg.skip_bad_records),
                     cycle_length=min(len(files), 4),
                     num_parallel_calls=AUTOTUNE, deterministic=True)
  if num_pipelines > 1 and not shard_files:
    ds = ds.shard(num_pipelines, pipeline_id)
  if training:
    ds = ds.shuffle(cfg.shuffle_buffer, seed=epoch_seed)
  # Repeated after the shuffle, so that each pass is every video once (a
  # shuffle buffer over the repetition would mix passes).
  if repeat and not service:
    ds = ds.repeat()
  if skip_videos and not service:
    ds = ds.skip(skip_videos)
  if cfg.skip_bad_records:
    ds = ds.map(_video_fn(cfg, training, seed, epoch, with_boxes, views),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda _, problem: _warn_unless_fine(problem))
    ds = ds.map(lambda out, _: out)
  else:
    ds = ds.map(make_video_fn(cfg, training, seed, epoch, with_boxes, views),
                num_parallel_calls=AUTOTUNE, deterministic=True)
  if service:
    # Whole passes on the workers (a repeat there would let a fast worker
    # start the next pass before the others end this one); batched here, so
    # that no worker drops a partial batch of its own.
    ds = data_service.distribute(ds, service)
    if repeat:
      ds = ds.repeat()
    if skip_videos:
      ds = ds.skip(skip_videos)
  ds = ds.batch(batch_size, drop_remainder=training)
  return ds.prefetch(AUTOTUNE)


def _record_problem(raw) -> dict:
  """What is wrong with a record of ``record_integrity.read_records``.

  Args:
    raw: a serialized record, or a ``record_integrity.BadRecord``.

  Returns:
    {} for a good record, else ``error`` (the reason or the decoder's
    message) and, for a frame that does not decode, ``video_id``,
    ``source`` and ``frame``.
  """
  if isinstance(raw, record_integrity.BadRecord):
    return {"error": raw.reason}
  try:
    v = schema.parse_video(raw)
  except tf.errors.InvalidArgumentError as e:
    return {"error": e.message}
  for j, jpeg in enumerate(v[schema.FRAMES]):
    try:
      tf.io.decode_jpeg(jpeg, channels=3)
    except tf.errors.InvalidArgumentError as e:
      return {"video_id": v[schema.VIDEO_ID].numpy().decode(),
              "source": v[schema.SOURCE].numpy().decode(), "frame": j,
              "error": e.message}
  return {}


def find_bad_records(split_dir: str, limit: int = 100):
  """Scans a split and names every record that is corrupt or whose frames
  do not decode.

  Slow (decodes every frame); meant for diagnosing a failed pipeline.

  Args:
    split_dir: prepared split directory.
    limit: stop after this many bad records.

  Returns:
    A list of dicts: shard file, record index in it, its byte offset, video
    id, source, frame index (None where the record does not read or parse)
    and the reason or decoder's message.
  """
  bad = []
  for path in shards.list_records(split_dir):
    for i, offset, raw in record_integrity.read_records(
        path, count=shards.manifest_count(path)):
      entry = {"file": path, "record": i, "offset": offset,
               "video_id": None, "source": None, "frame": None}
      problem = _record_problem(raw)
      if problem:
        bad.append({**entry, **problem})
      if len(bad) >= limit:
        return bad
  return bad

"""Videos per second of the training input pipeline.

  python benchmarks/input_pipeline.py [--videos=96] [--frames_per_video=48]
      [--dataset=actnet --method=uni]

Writes shards of synthetic videos shaped like prepared Kinetics data (frames
of 360x480, JPEG quality 90, textured so that they compress like real
frames), then times the training pipeline of a preset (TSN sampling, JPEG
decoding of the sampled frames only, multi-scale crop, flip, normalisation,
batching) over several passes and reports the median rate. Compare it with
the stage-1 consumption rate of ``benchmarks/train_step.py``.

With ``--data_dir`` it times existing prepared shards instead (e.g. the
synthetic dataset: ``--dataset=synthetic --data_dir=<workspace>/data/synthetic``).

With ``--compare_readers`` each pass is timed with every way of reading the
shards in turn (issue 23): ``checked`` (the pipeline's reader,
``record_integrity.read_shard``), ``checked_skip`` (the same with
``data.skip_bad_records``) and ``plain`` (a bare ``TFRecordDataset``, the
reader before the integrity check); ``records_*`` time the readers alone
(records/s, no decoding), which bounds the check's cost per record.

With ``--data_service=grpc://HOST:PORT`` (a running ``adafocus-data-service``)
or ``--data_service_workers=N`` (one started here: a dispatcher and N worker
processes on this machine) each pass is timed locally and through tf.data
service in turn (issue 28): ``local`` and ``service`` videos/s, the same
training pipeline (``data_service.use``), batches assembled here. The
fp32 matmul peak and the load average are measured in the same run.
"""
import dataclasses
import json
import os
import statistics
import sys
import time
from unittest import mock

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.data import data_service
from adafocus_tf.data import pipeline
from adafocus_tf.data import record_integrity
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from benchmarks import scratch  # pylint: disable=wrong-import-position
from benchmarks import timing  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "minik", "Preset whose pipeline is timed.")
flags.DEFINE_string("method", "v1", "Training method of the preset (uni: "
                    "its candidate frames, 48 at actnet).")
flags.DEFINE_integer("videos", 96, "Videos written to the benchmark shards.")
flags.DEFINE_integer("frames_per_video", 48, "Stored frames per video.")
flags.DEFINE_integer("height", 360, "Stored frame height (short side).")
flags.DEFINE_integer("width", 480, "Stored frame width.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_integer("repeats", 3, "Timed passes; the median is reported.")
flags.DEFINE_string("workdir", "", "Where to write the shards (default: a "
                    "temporary directory).")
flags.DEFINE_string("data_dir", "", "Time existing prepared shards instead "
                    "of writing any: a dataset root whose ``--split`` "
                    "directory is read (e.g. the quickstart's synthetic "
                    "data, ``python datasets/synthetic.py --out=DIR``).")
flags.DEFINE_string("split", "train", "Split read under --data_dir.")
flags.DEFINE_string("data_service", "", "Time each pass locally and "
                    "through this tf.data service dispatcher in turn.")
flags.DEFINE_integer("data_service_workers", 0, "Start a tf.data service "
                     "with this many local worker processes and time each "
                     "pass locally and through it in turn.")
flags.DEFINE_integer("peak_size", 2048, "Matrix size of the fp32 matmul "
                     "peak measured beside the rates.")
flags.DEFINE_bool("compare_readers", False, "Time the pipeline with the "
                  "checked, checked with skip_bad_records and plain shard "
                  "readers, alternating passes, and the readers alone.")


def textured_frame(rng, height, width, t):
  """A frame with smooth structure plus noise, moving with t."""
  y, x = np.mgrid[0:height, 0:width]
  base = 127 + 60 * np.sin((x + 3 * t) / 17.0) * np.cos((y - 2 * t) / 23.0)
  img = base[..., None] + rng.normal(0, 12, (height, width, 3))
  return np.clip(img, 0, 255).astype(np.uint8)


def write_shards(split_dir, num_videos, num_frames, height, width,
                 per_shard=16):
  rng = np.random.default_rng(0)
  frames = [tf.io.encode_jpeg(textured_frame(rng, height, width, t),
                              quality=90).numpy() for t in range(num_frames)]
  ids = [f"v{i}" for i in range(num_videos)]
  records = [schema.encode_video(vid, [i % 200], frames, height, width)
             for i, vid in enumerate(ids)]
  n = -(-num_videos // per_shard)
  for i in range(n):
    part = slice(i * per_shard, (i + 1) * per_shard)
    # The manifest lists the ids, as prepare's does (the count is checked).
    shards.write_shard(split_dir, i, n, records[part], {"videos": ids[part]})
  return sum(len(f) for f in frames) / len(frames)


def time_pipeline(cfg, split_dir, batch_size, repeats):
  rates = []
  for r in range(repeats):
    rates.append(_pipeline_pass(cfg, split_dir, batch_size, r))
  return statistics.median(rates), rates


def _pipeline_pass(cfg, split_dir, batch_size, r):
  """Videos/s of one training pass.

  Args:
    cfg: data settings.
    split_dir: the shards.
    batch_size: batch size.
    r: the pass, its seed and epoch.
  """
  ds = pipeline.make_dataset(cfg, split_dir, training=True,
                             batch_size=batch_size, seed=r, epoch=r)
  start = time.perf_counter()
  count = sum(int(b["label"].shape[0]) for b in ds)
  return count / (time.perf_counter() - start)


def plain_read_shard(path, size, count, salvage):
  """The reader before issue 23: a bare ``TFRecordDataset``, unchecked.

  Args: as ``record_integrity.read_shard``'s (all but ``path`` unused).
  """
  del size, count, salvage
  return tf.data.TFRecordDataset(path).map(lambda record: (record, path))


def _records_pass(split_dir, read_shard):
  """Records/s of the shards read by ``read_shard`` alone, interleaved as
  the pipeline reads them.

  Args:
    split_dir: the shards.
    read_shard: ``record_integrity.read_shard`` or ``plain_read_shard``.
  """
  ds = record_integrity.shard_dataset(shards.list_records(split_dir))
  ds = ds.interleave(lambda f, size, count: read_shard(f, size, count, False),
                     cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
  start = time.perf_counter()
  count = sum(1 for _ in ds)
  return count / (time.perf_counter() - start)


def compare_readers(cfg, split_dir, batch_size, repeats):
  """Medians and passes of each reader, the readers timed in turn.

  Args:
    cfg: data settings.
    split_dir: the shards.
    batch_size: batch size.
    repeats: timed passes of each.

  Returns:
    dict name -> {"median": ..., "all": [...]}: ``checked``,
    ``checked_skip``, ``plain`` (videos/s of the training pipeline) and
    ``records_checked``, ``records_plain`` (records/s of the readers alone).
  """
  checked = record_integrity.read_shard
  skip_cfg = dataclasses.replace(cfg, skip_bad_records=True)
  runs = {
      "checked": lambda r: _pipeline_pass(cfg, split_dir, batch_size, r),
      "checked_skip": lambda r: _pipeline_pass(skip_cfg, split_dir,
                                               batch_size, r),
      "plain": lambda r: _with_plain_reader(_pipeline_pass, cfg, split_dir,
                                            batch_size, r),
      "records_checked": lambda r: _records_pass(split_dir, checked),
      "records_plain": lambda r: _records_pass(split_dir, plain_read_shard),
  }
  rates = {name: [] for name in runs}
  # An untimed pass of each first: the first pass of a process traces.
  for r in range(repeats + 1):
    for name, run in runs.items():
      rate = run(r)
      if r:
        rates[name].append(rate)
  return {name: {"median": round(statistics.median(v), 2),
                 "all": [round(x, 2) for x in v]}
          for name, v in rates.items()}


def compare_data_service(cfg, split_dir, batch_size, repeats, address):
  """Medians and passes of the pipeline locally and through ``address``,
  alternating.

  Args:
    cfg: data settings.
    split_dir: the shards.
    batch_size: batch size.
    repeats: timed passes of each.
    address: ``grpc://HOST:PORT`` of a tf.data service dispatcher.

  Returns:
    dict ``local``/``service`` -> {"median": ..., "all": [...]}.
  """
  def through(r):
    with data_service.use(address):
      return _pipeline_pass(cfg, split_dir, batch_size, r)
  runs = {"local": lambda r: _pipeline_pass(cfg, split_dir, batch_size, r),
          "service": through}
  rates = {name: [] for name in runs}
  # An untimed pass of each first: tracing, and the workers' first job.
  for r in range(repeats + 1):
    for name, run in runs.items():
      rate = run(r)
      if r:
        rates[name].append(rate)
  return {name: {"median": round(statistics.median(v), 2),
                 "all": [round(x, 2) for x in v]}
          for name, v in rates.items()}


def _with_plain_reader(fn, *args):
  """``fn(*args)`` with the pipeline reading shards by ``plain_read_shard``.

  Args:
    fn: what runs a pipeline.
    *args: its arguments.
  """
  with mock.patch.object(record_integrity, "read_shard", plain_read_shard):
    return fn(*args)


def main(_):
  cfg = config_lib.get_preset(FLAGS.dataset, FLAGS.method).data
  if FLAGS.data_dir:
    split_dir = os.path.join(FLAGS.data_dir, FLAGS.split)
    jpeg_bytes = None
  else:
    workdir = FLAGS.workdir or scratch.folder()
    split_dir = os.path.join(workdir, "train")
    jpeg_bytes = write_shards(split_dir, FLAGS.videos,
                              FLAGS.frames_per_video, FLAGS.height,
                              FLAGS.width)
  peak_before = timing.matmul_peak_gmacs(FLAGS.peak_size)
  load_before = os.getloadavg()
  service = None
  if FLAGS.data_service or FLAGS.data_service_workers:
    started = None
    address = FLAGS.data_service
    if not address:
      started, address = data_service.start_local(FLAGS.data_service_workers)
    try:
      service = compare_data_service(cfg, split_dir, FLAGS.batch_size,
                                     FLAGS.repeats, address)
    finally:
      if started:
        started.terminate()
        started.wait()
    readers = None
    median, rates = service["local"]["median"], service["local"]["all"]
  elif FLAGS.compare_readers:
    readers = compare_readers(cfg, split_dir, FLAGS.batch_size,
                              FLAGS.repeats)
    median, rates = readers["checked"]["median"], readers["checked"]["all"]
  else:
    readers = None
    median, rates = time_pipeline(cfg, split_dir, FLAGS.batch_size,
                                  FLAGS.repeats)
  result = {
      "dataset": FLAGS.dataset, "method": FLAGS.method,
      "frames_sampled": cfg.num_frames,
      "output_size": cfg.frame_size, "scales": list(cfg.train_scales),
      "source": split_dir if FLAGS.data_dir else "written",
      "stored_frame": ("as stored" if FLAGS.data_dir
                       else f"{FLAGS.height}x{FLAGS.width}"),
      "mean_jpeg_kib": (None if jpeg_bytes is None
                        else round(jpeg_bytes / 1024, 1)),
      "videos_per_s_median": round(median, 2),
      "videos_per_s_all": [round(r, 2) for r in rates],
      "cpu_cores": os.cpu_count(),
  }
  if readers:
    result["readers"] = readers
  if service:
    result["data_service"] = dict(
        service, address=FLAGS.data_service or "started here",
        workers=FLAGS.data_service_workers or None)
  result["matmul_peak_gmacs"] = [round(peak_before, 1), round(
      timing.matmul_peak_gmacs(FLAGS.peak_size), 1)]
  result["load_average"] = [[round(x, 2) for x in load_before],
                            [round(x, 2) for x in os.getloadavg()]]
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)

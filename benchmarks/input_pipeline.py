"""Videos per second of the training input pipeline.

  python benchmarks/input_pipeline.py [--videos=96] [--frames_per_video=48]

Writes shards of synthetic videos shaped like prepared Kinetics data (frames
of 360x480, JPEG quality 90, textured so that they compress like real
frames), then times the training pipeline of a preset (TSN sampling, JPEG
decoding of the sampled frames only, multi-scale crop, flip, normalisation,
batching) over several passes and reports the median rate. Compare it with
the stage-1 consumption rate of ``benchmarks/train_step.py``.

With ``--data_dir`` it times existing prepared shards instead (e.g. the
synthetic dataset: ``--dataset=synthetic --data_dir=<workspace>/data/synthetic``).
"""
import json
import os
import statistics
import sys
import tempfile
import time

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.data import pipeline
from adafocus_tf.data import schema
from adafocus_tf.data import shards

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "minik", "Preset whose pipeline is timed.")
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
  records = [schema.encode_video(f"v{i}", [i % 200], frames, height, width)
             for i in range(num_videos)]
  n = -(-num_videos // per_shard)
  for i in range(n):
    shards.write_shard(split_dir, i, n,
                       records[i * per_shard:(i + 1) * per_shard], {})
  return sum(len(f) for f in frames) / len(frames)


def time_pipeline(cfg, split_dir, batch_size, repeats):
  rates = []
  for r in range(repeats):
    ds = pipeline.make_dataset(cfg, split_dir, training=True,
                               batch_size=batch_size, seed=r, epoch=r)
    start = time.perf_counter()
    count = sum(int(b["label"].shape[0]) for b in ds)
    rates.append(count / (time.perf_counter() - start))
  return statistics.median(rates), rates


def main(_):
  cfg = config_lib.get_preset(FLAGS.dataset).data
  if FLAGS.data_dir:
    split_dir = os.path.join(FLAGS.data_dir, FLAGS.split)
    jpeg_bytes = None
  else:
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="adafocus-bench-")
    split_dir = os.path.join(workdir, "train")
    jpeg_bytes = write_shards(split_dir, FLAGS.videos,
                              FLAGS.frames_per_video, FLAGS.height,
                              FLAGS.width)
  median, rates = time_pipeline(cfg, split_dir, FLAGS.batch_size,
                                FLAGS.repeats)
  result = {
      "dataset": FLAGS.dataset, "frames_sampled": cfg.num_frames,
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
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)

"""Generates the embedded synthetic dataset (docs/SYNTHETIC.md).

  python datasets/synthetic.py --out=$WS/data/synthetic [--seed=1234]
      [--num_train=2400] [--num_val=600]

Writes ``<out>/train`` and ``<out>/val`` (shards, manifests, meta.json). The
same seed gives byte-identical shards. A re-run keeps the shards already
written with the same parameters and rewrites any others, so an interrupted
generation resumes and a changed seed regenerates. ``launch/train.py`` calls
the same library (``adafocus_tf.data.synthetic.ensure_synthetic``) when no
``--data_dir`` is given.
"""
import os
import sys
import time

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_spec as spec

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Dataset root (local path or s3://).")
flags.DEFINE_integer("seed", spec.DEFAULT_SEED, "Generation seed (>= 0).")
flags.DEFINE_integer("num_train", spec.NUM_TRAIN, "Training videos.")
flags.DEFINE_integer("num_val", spec.NUM_VAL, "Validation videos.")
flags.DEFINE_integer("videos_per_shard", spec.VIDEOS_PER_SHARD,
                     "Videos per shard file.")
flags.mark_flag_as_required("out")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  start = time.perf_counter()
  try:
    synthetic.generate(FLAGS.out, FLAGS.seed, FLAGS.num_train, FLAGS.num_val,
                       FLAGS.videos_per_shard)
  except ValueError as e:
    raise app.UsageError(str(e))
  print(f"synthetic dataset (seed {FLAGS.seed}, {FLAGS.num_train} train + "
        f"{FLAGS.num_val} val videos) in {FLAGS.out} "
        f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  app.run(main)

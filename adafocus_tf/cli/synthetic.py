"""Generates the embedded synthetic dataset (docs/SYNTHETIC.md).

  adafocus-synthetic --out=$WS/data/synthetic [--seed=1234]
      [--num_train=2400] [--num_val=600]

(``python datasets/synthetic.py`` is the same command.)

Writes ``<out>/train`` and ``<out>/val`` (shards, manifests, meta.json). The
same seed gives byte-identical shards. A re-run keeps the shards already
written with the same parameters and rewrites any others, so an interrupted
generation resumes and a changed seed regenerates. ``adafocus-train`` calls
the same library (``adafocus_tf.data.synthetic.ensure_synthetic``) when no
``--data_dir`` is given.
"""
import time

from absl import app
from absl import flags

from adafocus_tf.cli import common
from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_spec as spec

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__, shared=("out", "seed", "videos_per_shard"),
    defaults={"seed": spec.DEFAULT_SEED,
              "videos_per_shard": spec.VIDEOS_PER_SHARD},
    required=("out",))
flags.DEFINE_integer("num_train", spec.NUM_TRAIN, "Training videos.")
flags.DEFINE_integer("num_val", spec.NUM_VAL, "Validation videos.")


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


def run() -> None:
  """The ``adafocus-synthetic`` console script (and
  ``datasets/synthetic.py``)."""
  COMMAND.run(main)

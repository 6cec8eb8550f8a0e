"""Generates an embedded synthetic dataset (docs/SYNTHETIC.md).

  adafocus-synthetic --out=$WS/data/synthetic [--seed=1234]
      [--num_train=2400] [--num_val=600]
  adafocus-synthetic --kind=objects --out=$WS/data/synthetic_objects

(``python datasets/synthetic.py`` is the same command.)

``--kind``: ``textures`` (default), the quickstart's dataset of small
finely textured targets (preset ``synthetic``); ``objects``, large smooth
objects on which V2's gradient can find the target (preset
``synthetic_objects``). Writes ``<out>/train`` and ``<out>/val`` (shards,
manifests, meta.json). The same seed gives byte-identical shards. A re-run
keeps the shards already written with the same parameters and rewrites any
others, so an interrupted generation resumes and a changed seed
regenerates. ``adafocus-train`` calls the same library
(``adafocus_tf.data.embedded.ensure``) when no ``--data_dir`` is given.
"""
import time

from absl import app
from absl import flags

from adafocus_tf.cli import common
from adafocus_tf.data import embedded
from adafocus_tf.data import synthetic_spec as spec

FLAGS = flags.FLAGS
# Both kinds share these defaults (synthetic_objects_spec takes them from
# synthetic_spec).
COMMAND = common.Command(
    __name__, shared=("out", "seed", "videos_per_shard"),
    defaults={"seed": spec.DEFAULT_SEED,
              "videos_per_shard": spec.VIDEOS_PER_SHARD},
    required=("out",))
flags.DEFINE_enum("kind", "textures", list(embedded.KINDS),
                  "Which dataset: textures (preset synthetic, the "
                  "quickstart's) or objects (preset synthetic_objects).")
flags.DEFINE_integer("num_train", spec.NUM_TRAIN, "Training videos.")
flags.DEFINE_integer("num_val", spec.NUM_VAL, "Validation videos.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  start = time.perf_counter()
  dataset = embedded.KINDS[FLAGS.kind]
  try:
    embedded.generator(dataset)(FLAGS.out, FLAGS.seed, FLAGS.num_train,
                                FLAGS.num_val, FLAGS.videos_per_shard)
  except ValueError as e:
    raise app.UsageError(str(e))
  print(f"{dataset} dataset (seed {FLAGS.seed}, {FLAGS.num_train} train + "
        f"{FLAGS.num_val} val videos) in {FLAGS.out} "
        f"({time.perf_counter() - start:.1f} s)")


def run() -> None:
  """The ``adafocus-synthetic`` console script (and
  ``datasets/synthetic.py``)."""
  COMMAND.run(main)

"""What keeping a run's derived files honest costs a tool's start (issue 23).

  python benchmarks/run_state.py [--preset=actnet] [--repeats=20]

Saves the model of a preset (random weights; actnet: MobileNetV2 glance,
ResNet-50 focus, GRU classifier) as a stage checkpoint of a run laid out by
hand, then times, side by side, medians of ``--repeats``:

  * ``index_digest``: ``checkpoints.checkpoint_digest`` (SHA-256 of the
    ``.index``, which holds a CRC32C of every tensor), what derived files
    are keyed on;
  * ``data_digest``: SHA-256 of every data file of the checkpoint, what
    keying on the bytes themselves would cost;
  * ``resolve``: ``final_weights.resolve`` (choosing the checkpoints, the
    unfinished-stage check, the lock probe and the digest): what every tool
    pays before loading;
  * ``lock``: ``run_lock.RunLock`` taken and released (a trainer's start and
    end).

Prints one JSON object with the checkpoint's size and the medians (ms).
"""
import hashlib
import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scratch  # pylint: disable=g-import-not-at-top,wrong-import-position
import timing  # pylint: disable=g-import-not-at-top,wrong-import-position

import adafocus_tf  # pylint: disable=unused-import,wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from adafocus_tf import config as config_lib  # pylint: disable=wrong-import-position
from adafocus_tf import io_utils  # pylint: disable=wrong-import-position
from adafocus_tf.models import factory  # pylint: disable=wrong-import-position
from adafocus_tf.runs import checkpoints  # pylint: disable=wrong-import-position
from adafocus_tf.runs import final_weights  # pylint: disable=wrong-import-position
from adafocus_tf.runs import run_dir  # pylint: disable=wrong-import-position
from adafocus_tf.runs import run_lock  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "actnet", "Config preset whose model is saved.")
flags.DEFINE_integer("repeats", 20, "Timed calls of each measurement.")


def _data_digest(prefix: str) -> str:
  digest = hashlib.sha256()
  for path in sorted(tf.io.gfile.glob(f"{prefix}.data-*")):
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()


def main(argv):
  del argv
  cfg = config_lib.get_preset(FLAGS.preset)
  model = factory.build_model(cfg)
  model.build_all()
  run = os.path.join(scratch.folder(), "run")
  run_dir.write_config(run, cfg)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                       run_dir.checkpoint_dir(run, 1), 1)
  prefix = manager.save(checkpoint_number=1)
  io_utils.write_json(run_dir.done_path(run, 1), {"step": 1})
  size = sum(os.path.getsize(p) for p in tf.io.gfile.glob(f"{prefix}*"))

  def lock():
    with run_lock.RunLock(run):
      pass

  rows = {"preset": FLAGS.preset, "checkpoint_mb": round(size / 2**20, 1),
          "index_kb": round(os.path.getsize(f"{prefix}.index") / 2**10, 1)}
  for name, fn in (("index_digest",
                    lambda: checkpoints.checkpoint_digest(prefix)),
                   ("data_digest", lambda: _data_digest(prefix)),
                   ("resolve", lambda: final_weights.resolve(run)),
                   ("lock", lock)):
    seconds, _ = timing.timed(fn, FLAGS.repeats)
    rows[f"{name}_ms"] = round(seconds * 1e3, 3)
  print(json.dumps(rows))


if __name__ == "__main__":
  app.run(main)

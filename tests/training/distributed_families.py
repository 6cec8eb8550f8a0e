"""Trains every stage of several model families' TINY runs in one process.

Each stage trains two epochs of one step on a split of one global batch.

For ``test_distributed.py``: one process per worker (and one for
the single-worker reference) trains all the families one after another, so
that a two-worker comparison of every stage of every family costs three
TensorFlow processes, not three per family. ``--strategy=multi_worker``
reads the cluster from ``TF_CONFIG`` (``training/cluster.py``), as
``adafocus-train`` does.

  python distributed_families.py DATA_DIR OUT_DIR STRATEGY FAMILY...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import adafocus_tf  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
import helpers  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from adafocus_tf.families import registry  # pylint: disable=g-import-not-at-top,wrong-import-position
from adafocus_tf.training import experiment  # pylint: disable=g-import-not-at-top,wrong-import-position
from adafocus_tf.training import strategy as strategy_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

# Steps of every stage: two, so that the second starts from updated
# weights and optimizer moments; each an epoch of the whole (one-batch)
# split, so that two workers' global batch holds the same videos as one
# worker's (docs/SCALING.md, "Training on several workers").
STEPS = 2
# Videos of a step, and of the train split (``test_distributed.py``
# writes that many).
GLOBAL_BATCH = 8
# Batch norm on running statistics: replicas that normalise by their own
# half of the batch cannot match one device normalising the whole batch.
_SAME_ON_ANY_REPLICAS = {"model__train_batchnorm": "false"}
CONFIGS = {
    "v1": helpers.tiny_config,
    "two_stream": helpers.tiny_two_stream_config,
    "v2": helpers.tiny_v2_config,
    "v2_tsm": helpers.tiny_v2_tsm_config,
    "uni": helpers.tiny_uni_config,
    "uni_tsm": helpers.tiny_uni_tsm_config,
    "uni_x3d": helpers.tiny_uni_x3d_config,
}


def main(data_dir, out_dir, strategy_name, *families):
  tf.config.experimental.enable_op_determinism()
  strategy = strategy_lib.make_strategy(strategy_name)
  for family in families:
    cfg = CONFIGS[family](data_dir, **_SAME_ON_ANY_REPLICAS)
    stages = sorted(registry.of(cfg).stage_plan())
    for stage in stages:
      getattr(cfg, f"stage{stage}").epochs = STEPS
      getattr(cfg, f"stage{stage}").batch_size = GLOBAL_BATCH
    experiment.run_stages(cfg, os.path.join(out_dir, family), stages,
                          strategy, progress=False)


if __name__ == "__main__":
  main(*sys.argv[1:])

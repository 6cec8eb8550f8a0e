"""What every training stage reads: its data, its steps, its targets.

The training split of an epoch, distributed over the strategy's replicas
from a step on (a resumed stage sees the same videos: the pipeline's
randomness is keyed by video and epoch); the steps an epoch and a stage
take; the target distributions of a batch.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards


def targets_of(batch, multi_label: bool):
  """Training target distributions [B, C]: the label, or all labels evenly."""
  if multi_label:
    mh = batch["multi_hot"]
    return mh / tf.maximum(tf.reduce_sum(mh, -1, keepdims=True), 1.0)
  return tf.one_hot(batch["label"], tf.shape(batch["multi_hot"])[-1])


def steps_per_epoch(cfg: ExperimentConfig, scfg, split_dir: str) -> int:
  """Training steps in an epoch: full global batches, or the configured cap."""
  meta = shards.read_meta(split_dir)
  steps = meta["num_videos"] // scfg.batch_size
  if scfg.steps_per_epoch:
    steps = min(steps, scfg.steps_per_epoch) if steps else scfg.steps_per_epoch
  if steps < 1:
    raise ValueError(f"{split_dir} has {meta['num_videos']} videos, fewer "
                     f"than one batch of {scfg.batch_size}")
  return steps


def total_steps(cfg: ExperimentConfig, stage: int) -> int:
  """The steps stage ``stage`` trains in all: its epochs' steps.

  Raises:
    FileNotFoundError, ValueError: the training split's meta.json is
      missing or holds less than one batch.
  """
  scfg = getattr(cfg, f"stage{stage}")
  return scfg.epochs * steps_per_epoch(
      cfg, scfg, pipeline.split_dir(cfg.data, cfg.data.train_split))


def distributed_epoch(strategy, cfg: ExperimentConfig, split_dir: str,
                      global_batch: int, epoch: int, skip_steps: int,
                      with_boxes: bool = False):
  """The training data of one epoch, from ``skip_steps`` on, distributed."""
  def dataset_fn(ctx: tf.distribute.InputContext):
    per_replica = ctx.get_per_replica_batch_size(global_batch)
    skip = skip_steps * global_batch // ctx.num_input_pipelines
    return pipeline.make_dataset(cfg.data, split_dir, training=True,
                                 batch_size=per_replica, seed=cfg.seed,
                                 epoch=epoch, input_context=ctx,
                                 with_boxes=with_boxes, skip_videos=skip,
                                 repeat=True)
  return strategy.distribute_datasets_from_function(dataset_fn)

"""The layout of a run directory (documented in WORKSPACE.md).

  <run>/config.json              resolved ExperimentConfig
  <run>/config_history.json      changes made by later commands (run_config)
  <run>/classes.json             class names of the data it trained on
  <run>/stage<k>/checkpoints/    tf.train.CheckpointManager of stage k
  <run>/stage<k>/done.json       written when stage k finished (its metrics)
  <run>/logs/stage<k>/           TensorBoard events (scalars, images)
  <run>/metrics.json             final evaluation figures and GFLOPs
"""
import logging
import re

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig

STAGES = (0, 1, 2, 3)
CONFIG = "config.json"
CLASSES = "classes.json"
METRICS = "metrics.json"
# What a save killed before it finished leaves: TensorFlow writes each
# checkpoint under ckpt-<N>_temp/ (on S3: ckpt-<N>.part-*) and merges it
# into ckpt-<N>.* at the end.
_TEMP_CHECKPOINT = re.compile(r"ckpt-\d+(_temp|\.part-\d+-of-\d+\..*)")


def stage_dir(run: str, stage: int) -> str:
  return io_utils.join(run, f"stage{stage}")


def checkpoint_dir(run: str, stage: int) -> str:
  return io_utils.join(stage_dir(run, stage), "checkpoints")


def done_path(run: str, stage: int) -> str:
  return io_utils.join(stage_dir(run, stage), "done.json")


def log_dir(run: str, stage: int) -> str:
  return io_utils.join(run, "logs", f"stage{stage}")


def stage_done(run: str, stage: int) -> bool:
  return io_utils.exists(done_path(run, stage))


def remove_checkpoint_temps(run: str, stage: int) -> list:
  """Deletes the half-written checkpoints a killed save left in a stage.

  Only names TensorFlow's own sharded save uses in the stage's checkpoint
  directory are touched; call it on the chief, before the stage trains.

  Args:
    run: the run directory.
    stage: the stage.

  Returns:
    The paths deleted.
  """
  directory = checkpoint_dir(run, stage)
  if not io_utils.exists(directory):
    return []
  removed = []
  for name in tf.io.gfile.listdir(directory):
    name = name.rstrip("/")
    if not _TEMP_CHECKPOINT.fullmatch(name):
      continue
    path = io_utils.join(directory, name)
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    else:
      tf.io.gfile.remove(path)
    logging.info("removed %s, left by an interrupted checkpoint save", path)
    removed.append(path)
  return removed


def write_config(run: str, cfg: ExperimentConfig) -> None:
  io_utils.makedirs(run)
  io_utils.write_text(io_utils.join(run, CONFIG), cfg.to_json() + "\n")


def read_config(run: str) -> ExperimentConfig:
  path = io_utils.join(run, CONFIG)
  if not io_utils.exists(path):
    raise FileNotFoundError(f"{path} not found: {run} is not a run directory")
  return ExperimentConfig.from_json(io_utils.read_text(path), path)


def update_metrics(run: str, **sections) -> dict:
  """Merges ``sections`` into ``<run>/metrics.json`` (atomically)."""
  path = io_utils.join(run, METRICS)
  metrics = io_utils.read_json(path) if io_utils.exists(path) else {}
  metrics.update(sections)
  io_utils.write_json(path, metrics)
  return metrics

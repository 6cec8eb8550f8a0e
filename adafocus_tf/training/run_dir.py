"""The layout of a run directory (documented in WORKSPACE.md).

  <run>/config.json              resolved ExperimentConfig
  <run>/stage<k>/checkpoints/    tf.train.CheckpointManager of stage k
  <run>/stage<k>/done.json       written when stage k finished (its metrics)
  <run>/logs/stage<k>/           TensorBoard events (scalars, images)
  <run>/metrics.json             final evaluation figures and GFLOPs
"""
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig

CONFIG = "config.json"
METRICS = "metrics.json"


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


def write_config(run: str, cfg: ExperimentConfig) -> None:
  io_utils.makedirs(run)
  io_utils.write_text(io_utils.join(run, CONFIG), cfg.to_json() + "\n")


def read_config(run: str) -> ExperimentConfig:
  path = io_utils.join(run, CONFIG)
  if not io_utils.exists(path):
    raise FileNotFoundError(f"{path} not found: {run} is not a run directory")
  return ExperimentConfig.from_json(io_utils.read_text(path))


def update_metrics(run: str, **sections) -> dict:
  """Merges ``sections`` into ``<run>/metrics.json`` (atomically)."""
  path = io_utils.join(run, METRICS)
  metrics = io_utils.read_json(path) if io_utils.exists(path) else {}
  metrics.update(sections)
  io_utils.write_json(path, metrics)
  return metrics

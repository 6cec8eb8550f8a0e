"""One evaluation of a trained run on a prepared split (launch/evaluate.py).

The run's ``Recognizer`` over the split with a patch choice; the figures
are printed and kept in the run's ``metrics.json`` under
``evaluation/<split>/<choice>``.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.evaluation import predictions
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

EVAL_CHOICES = patch_choice.CHOICES + (predictions.GLANCE_ONLY,)


def split_has_boxes(split_dir: str) -> bool:
  """Whether a prepared split's records carry object boxes (oracle patches)."""
  for raw in tf.data.TFRecordDataset(shards.list_records(split_dir)[:1]).take(
      1):
    example = tf.train.SequenceExample.FromString(raw.numpy())
    return schema.BOXES in example.feature_lists.feature_list
  return False


def glance_head_trained(run: trained_run.TrainedRun) -> bool:
  """Whether the run's glance network has a trained head (``glance_only``).

  Stage 0 trains it (with the glance backbone); some families' plans train
  it anyway (``ModelFamily.glance_head_trained``: the two-stream model's
  stage 1 beside the focus head, AdaFocusV2's end-to-end stage with its
  auxiliary glance loss).

  Args:
    run: the trained run.
  """
  return ((run_dir.stage_done(run.path, 0)
           and "glance" in run.cfg.stage0.backbones)
          or run.family.glance_head_trained)


def resolve_eval_patches(run: trained_run.TrainedRun, split_dir: str,
                         requested: str) -> str:
  """The patch choice of an evaluation, checked against the run and data.

  Args:
    run: the trained run.
    split_dir: the prepared split to evaluate.
    requested: ``auto`` or one of ``EVAL_CHOICES``.

  Returns:
    The choice.

  Raises:
    ValueError: the run or the data cannot provide the choice (no policy,
      no object boxes, no trained glance head).
  """
  if requested not in EVAL_CHOICES + (trained_run.AUTO,):
    raise ValueError(f"patches={requested!r}: choose one of "
                     f"{(trained_run.AUTO,) + EVAL_CHOICES}")
  choice = run.resolve_patches(requested)
  if choice == "oracle" and not split_has_boxes(split_dir):
    raise ValueError(f"oracle patches need object boxes, and the records of "
                     f"{split_dir} have none (only synthetic data has them)")
  if choice == predictions.GLANCE_ONLY and not glance_head_trained(run):
    raise ValueError("glance_only needs the glance head of stage 0, which "
                     f"{run.path} has not trained")
  return choice


def evaluate_split(run, split_dir: str, choice: str, max_videos: int = 0,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   progress: bool = True):
  """Evaluates the run's final model on a prepared split.

  Args:
    run: a ``trained_run.TrainedRun``, or a run directory (opened as one).
    split_dir: the prepared split.
    choice: a choice from ``resolve_eval_patches``.
    max_videos: evaluate at most this many videos (0: all).
    strategy: None or the default strategy (one device) or a mirrored
      strategy (each batch split across its replicas).
    progress: progress bar.

  Returns:
    ``(row, pred)``: the figures (``evaluation.summarize``: top1, top5, mAP,
    mAP_per_step; plus gflops_per_video, num_videos, patches, split_dir,
    multi_label, and the weights' ``provenance``: checkpoint, stage,
    digest, an unfinished stage used) and the per-video predictions they
    came from.
  """
  run = trained_run.TrainedRun.of(run)
  cfg = run.cfg
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    recognizer = run.recognizer(with_policy=choice == "policy")
  pred = predictions.predict_split(recognizer, split_dir, choice,
                                   max_videos=max_videos, progress=progress,
                                   strategy=strategy)
  try:
    multi_label = bool(shards.read_meta(split_dir).get("multi_label"))
  except (FileNotFoundError, ValueError):
    multi_label = False
  multi_label = multi_label or cfg.data.multi_label
  row = predictions.summarize(pred, multi_label)
  row.update({
      "gflops_per_video": flops.choice_gflops(flops.video_macs(cfg), choice),
      "num_videos": int(len(pred["labels"])),
      "patches": choice,
      "split_dir": split_dir,
      "multi_label": multi_label,
      **run.weights.provenance(),
  })
  return row, pred


def record_evaluation(run: str, key: str, row: dict) -> dict:
  """Stores ``row`` as ``evaluation[key]`` in the run's metrics.json.

  Other keys of the ``evaluation`` section (other splits or patch choices)
  and the other sections are kept.

  Args:
    run: run directory.
    key: e.g. ``val/policy``.
    row: the figures.

  Returns:
    The whole ``evaluation`` section as written.
  """
  path = io_utils.join(run, run_dir.METRICS)
  current = io_utils.read_json(path) if io_utils.exists(path) else {}
  section = dict(current.get("evaluation") or {})
  section[key] = row
  run_dir.update_metrics(run, evaluation=section)
  return section


def format_evaluation(key: str, row: dict) -> str:
  """One evaluation as a small text table."""
  lines = [f"{'evaluation':<18} {'top1':>7} {'top5':>7} {'mAP':>7} "
           f"{'GFLOPs':>8}",
           f"{key:<18} {row['top1']:7.2f} {row['top5']:7.2f} "
           f"{row['mAP']:7.2f} {row['gflops_per_video']:8.3f}",
           "mAP per step: " + " ".join(f"{x:.2f}"
                                       for x in row["mAP_per_step"]),
           f"{row['num_videos']} videos of {row['split_dir']}, checkpoint "
           f"{row['checkpoint']}"]
  unfinished = row.get("unfinished_stage")
  if unfinished:
    lines.append(f"(stage {unfinished['stage']} is unfinished: these are its "
                 f"weights at step {unfinished['step']}, as asked)")
  return "\n".join(lines)

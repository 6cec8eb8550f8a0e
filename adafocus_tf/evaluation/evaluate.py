"""One evaluation of a trained run on a prepared split (launch/evaluate.py).

The run's ``Recognizer`` over the split with a patch choice; the figures
are printed and kept in the run's ``metrics.json`` under
``evaluation/<split>/<choice>``. With early exit (``evaluate_early_exit``,
the run's calibrated thresholds) the recognizer runs exit step by exit
step, each video stopping where its thresholds say (``EarlyExitRunner``),
and the cost reported is what each video actually ran; the figures go
under ``evaluation/<split>/<choice>+early_exit``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
import tqdm

from adafocus_tf import io_utils
from adafocus_tf.data import pipeline
from adafocus_tf.data import record_integrity
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.evaluation import metrics
from adafocus_tf.evaluation import predictions
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

EVAL_CHOICES = patch_choice.CHOICES + (predictions.GLANCE_ONLY,)
# The key suffix of an evaluation with early exit.
EARLY_EXIT = "+early_exit"


def views_suffix(views: int) -> str:
  """What an evaluation entry's key adds for several views per video
  (``+3views``; nothing for one)."""
  return f"+{views}views" if views > 1 else ""


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
    mAP_per_step; plus gflops_per_video (all views), num_videos, views
    (``predictions.views_read``), patches, split_dir,
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
  multi_label = _multi_label(cfg, split_dir)
  row = predictions.summarize(pred, multi_label)
  row.update({
      "gflops_per_video": predictions.gflops_per_video(
          recognizer, flops.video_macs(cfg), choice),
      "num_videos": int(len(pred["labels"])),
      "views": predictions.views_read(cfg, choice),
      "patches": choice,
      "plan": recognizer.choice_label(choice),
      "split_dir": split_dir,
      "multi_label": multi_label,
      **run.weights.provenance(),
  })
  return row, pred


def _multi_label(cfg, split_dir: str) -> bool:
  try:
    multi_label = bool(shards.read_meta(split_dir).get("multi_label"))
  except (FileNotFoundError, ValueError):
    multi_label = False
  return multi_label or cfg.data.multi_label


def evaluate_early_exit(run, split_dir: str, max_videos: int = 0,
                        progress: bool = True):
  """Evaluates the run with its early-exit thresholds, step by step.

  The run's recognizer (its default patch choice: the one the thresholds
  were fitted with) runs in ``EarlyExitRunner``: each video runs exit
  steps until its confidence reaches the step's threshold, and only the
  videos still running compute the next step. The figures are those of
  the predictions at exit; the cost is what each video ran. With
  ``data.test_crops`` views per video, every view of a running video runs
  each step and the views' logits averaged decide
  (``EarlyExitRunner.predict``); the thresholds are those fitted.

  Args:
    run: a ``trained_run.TrainedRun``, or a run directory (opened as one).
    split_dir: the prepared split.
    max_videos: evaluate at most this many videos (0: all).
    progress: progress bar.

  Returns:
    ``(row, pred)``: the figures (``metrics.summarize`` of the predictions
    at exit: top1, top5, mAP, mAP_per_step (one entry); plus
    ``gflops_per_video``: the mean of what the videos ran,
    ``gflops_full``: every step, ``exits``: videos leaving at each exit
    step, ``step_videos``: videos that ran each, ``mean_steps``,
    ``thresholds``, ``criterion``, ``views``, num_videos, patches, plan,
    split_dir, multi_label and the weights' provenance) and the per-video
    ``probs`` [N, C], ``exit_steps`` [N], ``gflops`` [N], ``labels``,
    ``multi_hot`` and ``video_ids``.

  Raises:
    ValueError: the run has no thresholds, its recognizer does not run
      step by step, or several views of a family that exits on
      probabilities.
    threshold_file.StaleThresholdsError: thresholds fitted on other
      weights.
  """
  run = trained_run.TrainedRun.of(run)
  cfg = run.cfg
  thresholds = run.thresholds()
  if thresholds is None:
    raise ValueError(f"{run.path} has no early-exit thresholds: calibrate "
                     "them first (adafocus-calibrate-exit)")
  recognizer = run.recognizer()
  choice = recognizer.default_choice()
  runner = runner_lib.EarlyExitRunner(recognizer, flops.video_macs(cfg))
  num_views = cfg.data.test_crops
  runner.check_views(num_views)
  ds = pipeline.make_dataset(cfg.data, split_dir, training=False,
                             batch_size=cfg.eval_batch_size, seed=cfg.seed,
                             views=num_views)
  out = {k: [] for k in ("probs", "exit_steps", "macs", "labels",
                         "multi_hot", "video_ids")}
  step_videos = np.zeros(recognizer.num_exit_steps, np.int64)
  seen = 0
  bar = tqdm.tqdm(desc=f"eval ({recognizer.choice_label(choice)}, early "
                  "exit)", unit="video", disable=not progress, leave=False)
  with record_integrity.refuse_corrupt_shards():
    for batch in ds:
      if max_videos:
        batch = {k: v[:max_videos - seen] for k, v in batch.items()}
      got = runner.predict({k: batch[k] for k in recognizer.input_keys},
                           thresholds, num_views)
      for key, value in (("probs", got.probs), ("exit_steps", got.exit_steps),
                         ("macs", got.macs)):
        out[key].append(value)
      for key, field in (("labels", "label"), ("multi_hot", "multi_hot"),
                         ("video_ids", "video_id")):
        out[key].append(batch[field].numpy())
      step_videos += got.step_videos
      seen += len(got.exit_steps)
      bar.update(len(got.exit_steps))
      if max_videos and seen >= max_videos:
        break
  bar.close()
  record_integrity.log_skipped(f"the evaluation of {split_dir}")
  pred = {k: np.concatenate(v) for k, v in out.items()}
  pred["gflops"] = pred.pop("macs") / flops.G
  multi_label = _multi_label(cfg, split_dir)
  labels = pred["multi_hot"] if multi_label else pred["labels"]
  row = metrics.summarize(pred["probs"], pred["probs"][:, None], labels)
  steps = pred["exit_steps"]
  row.update({
      "gflops_per_video": float(np.mean(pred["gflops"])),
      "gflops_full": float(np.sum(runner.step_macs)) * num_views / flops.G,
      "exits": np.bincount(steps, minlength=len(step_videos)).tolist(),
      "step_videos": step_videos.tolist(),
      "mean_steps": float(np.mean(steps + 1.0)),
      "thresholds": [float(x) for x in thresholds],
      "criterion": exit_rule.criterion_of(cfg),
      "views": num_views,
      "num_videos": int(len(steps)),
      "patches": choice,
      "plan": recognizer.choice_label(choice) + ", early exit",
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
  w = max(18, len(key))
  lines = [f"{'evaluation':<{w}} {'top1':>7} {'top5':>7} {'mAP':>7} "
           f"{'GFLOPs':>8}",
           f"{key:<{w}} {row['top1']:7.2f} {row['top5']:7.2f} "
           f"{row['mAP']:7.2f} {row['gflops_per_video']:8.3f}"
           + (f"  {row['plan']}" if row.get("plan") else ""),
           ("early exit: " + ", ".join(str(n) for n in row["exits"])
            + f" videos leaving at each of the {len(row['exits'])} exit "
            f"steps; {row['gflops_per_video']:.4f} of "
            f"{row['gflops_full']:.4f} GFLOPs per video run"
            if "exits" in row else
            "mAP per step: " + " ".join(f"{x:.2f}"
                                        for x in row["mAP_per_step"])),
           f"{row['num_videos']} videos of {row['split_dir']}"
           + (f" in {row['views']} views each" if row.get("views", 1) > 1
              else "") + f", checkpoint {row['checkpoint']}"]
  unfinished = row.get("unfinished_stage")
  if unfinished:
    lines.append(f"(stage {unfinished['stage']} is unfinished: these are its "
                 f"weights at step {unfinished['step']}, as asked)")
  return "\n".join(lines)

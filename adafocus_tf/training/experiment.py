"""Runs the stages of an experiment in order and writes its results table.

A run directory holds every stage (``run_dir``). ``run_stages`` trains the
requested stages; a finished stage (``done.json``) is skipped, an
interrupted one resumes from its last checkpoint, and a stage that has not
started takes its model weights from the latest earlier stage's last
checkpoint (or from ``init_from``).
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.models import factory
from adafocus_tf.training import evaluation
from adafocus_tf.training import run_config
from adafocus_tf.training import run_dir
from adafocus_tf.training import strategy as strategy_lib
from adafocus_tf.training import supervised

STAGES = run_dir.STAGES


class DataMismatchError(ValueError):
  """The prepared data's classes are not those of the config or the run."""


def _stage_epochs(cfg: ExperimentConfig, stage: int) -> int:
  return getattr(cfg, f"stage{stage}").epochs


def previous_checkpoint(run: str, stage: int) -> Optional[str]:
  """The last checkpoint of the latest earlier stage that has one."""
  for earlier in range(stage - 1, -1, -1):
    ckpt = supervised.latest_stage_checkpoint(run, earlier)
    if ckpt:
      return ckpt
  return None


def _policy_trainer(cfg, strategy, run, progress, checkpoint_every=50):
  from adafocus_tf.policy import trainer  # pylint: disable=g-import-not-at-top
  return trainer.PolicyTrainer(cfg, strategy, run,
                               checkpoint_every=checkpoint_every,
                               progress=progress)


def has_policy(run: str) -> bool:
  return run_dir.stage_done(run, 2)


def load_policy_trainer(cfg, run, strategy=None):
  """The ``PolicyTrainer`` of a run, restored to its trained policy."""
  strategy = strategy or strategy_lib.make_strategy("default")
  t = _policy_trainer(cfg, strategy, run, progress=False)
  t.initialize(None)
  return t


def load_policy(cfg, run, strategy=None):
  """The trained stage-2 policy of a run, as a ``batch -> offsets`` function."""
  return load_policy_trainer(cfg, run, strategy).policy_fn


def _first_difference(a, b) -> str:
  """Where two class-name lists first differ, for an error message."""
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return f"class {i} is {x!r} in the first and {y!r} in the second"
  return f"the first has {len(a)} classes, the second {len(b)}"


def check_data(cfg: ExperimentConfig, splits: Iterable[str],
               run: Optional[str] = None) -> list:
  """Checks that the prepared splits hold the classes the config trains.

  A label past ``data.num_classes`` would otherwise become an all-zero
  target, and a class order that differs between splits, or from the data
  a run trained on, would score the right answers as wrong.

  Args:
    cfg: the run's config (``data.num_classes``, ``data.multi_label``).
    splits: names of the splits read (each needs its meta.json).
    run: a run directory whose ``classes.json`` (the class names its
      weights learnt) the splits must match; None: not compared.

  Returns:
    The splits' class names.

  Raises:
    DataMismatchError: a split's meta.json disagrees with the config, with
      another split or with the run (both values named).
    FileNotFoundError: a split has no meta.json.
  """
  names, first = None, None
  for split in splits:
    split_dir = pipeline.split_dir(cfg.data, split)
    where = io_utils.join(split_dir, shards.META)
    meta = shards.read_meta(split_dir)
    if meta["num_classes"] != cfg.data.num_classes:
      raise DataMismatchError(
          f"{where} has num_classes={meta['num_classes']} but the config has "
          f"data.num_classes={cfg.data.num_classes}: use data prepared for "
          f"this config, or a new run with "
          f"--override=data.num_classes={meta['num_classes']}")
    if bool(meta["multi_label"]) != cfg.data.multi_label:
      raise DataMismatchError(
          f"{where} has multi_label={bool(meta['multi_label'])} but the "
          f"config has data.multi_label={cfg.data.multi_label}")
    if names is None:
      names, first = list(meta["class_names"]), where
    elif list(meta["class_names"]) != names:
      raise DataMismatchError(
          f"{first} and {where} list different classes: "
          f"{_first_difference(names, meta['class_names'])}")
  if names is None or not run:
    return names
  classes_path = io_utils.join(run, run_dir.CLASSES)
  if io_utils.exists(classes_path):
    trained = io_utils.read_json(classes_path)["class_names"]
    if trained != names:
      raise DataMismatchError(
          f"{run} was trained on the classes of {classes_path}, but {first} "
          f"lists others: {_first_difference(trained, names)}")
  return names


def run_stages(cfg: ExperimentConfig, run: str, stages: Iterable[int],
               strategy, init_from: Optional[str] = None,
               progress: bool = True, max_steps: int = 0,
               checkpoint_every: int = 50, profile_steps: str = "") -> dict:
  """Trains ``stages`` of the run in order.

  Before any step: the prepared data is checked against the config
  (``check_data``) and the config against the run's ``config.json``
  (``run_config.reconcile``: a run's weights keep their settings); half-
  written checkpoints of a killed save are deleted (chief only).

  Args:
    cfg: the experiment config (written to the run directory).
    run: run directory (local or ``s3://``).
    stages: stage numbers to run, a subset of 0-3.
    strategy: a ``tf.distribute`` strategy.
    init_from: model checkpoint for the first stage that is not resuming.
    progress: progress bars.
    max_steps: stop each stage after this many steps (tests, smoke runs).
    checkpoint_every: steps between checkpoints of every stage.
    profile_steps: ``"A,B"``: a TensorBoard profile of steps A..B of every
      stage run.

  Returns:
    dict stage -> the stage's training stats.

  Raises:
    DataMismatchError: the data's classes are not the config's or the run's.
    run_config.ConfigChangeError: the command changes a field that the
      run's trained weights depend on.
  """
  stages = sorted(stages)
  for stage in stages:
    if stage not in STAGES:
      raise ValueError(f"no stage {stage}; stages are {STAGES}")
  chief = strategy_lib.is_chief(strategy)
  splits = [cfg.data.train_split]
  # The held-out split, when there is one, gives TensorBoard's patch images.
  if io_utils.exists(io_utils.join(
      pipeline.split_dir(cfg.data, cfg.data.eval_split), shards.META)):
    splits.append(cfg.data.eval_split)
  class_names = check_data(cfg, splits, run)
  run_config.reconcile(run, cfg, chief)
  if chief and not io_utils.exists(io_utils.join(run, run_dir.CLASSES)):
    io_utils.write_json(io_utils.join(run, run_dir.CLASSES),
                        {"class_names": class_names})
  results = {}
  for stage in stages:
    if run_dir.stage_done(run, stage):
      logging.info("stage %d already done in %s", stage, run)
      results[stage] = io_utils.read_json(run_dir.done_path(run, stage))
      continue
    if _stage_epochs(cfg, stage) == 0:
      logging.info("stage %d has 0 epochs in this config; skipped", stage)
      continue
    if chief:
      run_dir.remove_checkpoint_temps(run, stage)
    start = init_from or previous_checkpoint(run, stage)
    init_from = None
    if stage == 2:
      trainer = _policy_trainer(cfg, strategy, run, progress,
                                checkpoint_every)
    else:
      patch = "random"
      policy_fn = None
      if stage == 3:
        if has_policy(run):
          patch, policy_fn = "policy", load_policy(cfg, run, strategy)
        else:
          patch = "centre"
          logging.warning("no trained policy (stage 2) in %s: stage 3 uses "
                          "centre patches", run)
      trainer = supervised.SupervisedTrainer(
          cfg, stage, strategy, run, patch=patch, policy_fn=policy_fn,
          checkpoint_every=checkpoint_every, progress=progress)
    logging.info(trainer.initialize(start))
    stats = trainer.train(max_steps=max_steps, profile_steps=profile_steps)
    results[stage] = stats
    if chief and (not max_steps or stats.get("step", 0) >= max_steps):
      io_utils.write_json(run_dir.done_path(run, stage), stats)
  return results


def build_model(cfg: ExperimentConfig, checkpoint: str):
  """The config's model (``factory.build_model``) with checkpoint weights."""
  model = factory.build_model(cfg)
  model.build_all()
  supervised.restore_model(model, checkpoint)
  return model


def final_model(cfg: ExperimentConfig, run: str):
  """The run's model restored from its latest stage checkpoint."""
  ckpt = previous_checkpoint(run, len(STAGES))
  if not ckpt:
    raise FileNotFoundError(f"{run} has no stage checkpoint to evaluate")
  return build_model(cfg, ckpt), ckpt


def results_table(cfg: ExperimentConfig, run: str, max_videos: int = 0,
                  progress: bool = True) -> dict:
  """Evaluates the run with each patch choice on the held-out split.

  Rows, each with top-1, top-5, mAP and GFLOPs per video: the learned
  policy (when stage 2 ran), random, centre and oracle patches (object
  boxes; synthetic data only) with the final model, and the glance network
  alone. When a later stage changed the model, random and centre patches
  are also scored with the stage-1 model (``random@stage1``,
  ``centre@stage1``), the one trained for random patches, so that a
  baseline is never judged only by a model tuned for the policy's patches.
  The glance-only row needs a trained glance head: stage 0's, or, in the
  two-stream model, the one stage 1 trains with the focus head.
  Written to ``metrics.json``.

  Args:
    cfg: the run's config.
    run: run directory.
    max_videos: evaluate on at most this many videos (0: all).
    progress: progress bars.

  Returns:
    The ``results`` section written to metrics.json.
  """
  from adafocus_tf import flops  # pylint: disable=g-import-not-at-top
  check_data(cfg, [cfg.data.eval_split], run)
  model, ckpt = final_model(cfg, run)
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  evaluations = []
  policy_fn = None
  if has_policy(run):
    policy_fn = load_policy(cfg, run)
    evaluations.append(("policy", "policy", model))
  evaluations += [("random", "random", model), ("centre", "centre", model)]
  if cfg.data.dataset == "synthetic":
    evaluations.append(("oracle", "oracle", model))
  stage1 = supervised.latest_stage_checkpoint(run, 1)
  if stage1 and stage1 != ckpt:
    stage1_model = build_model(cfg, stage1)
    evaluations += [("random@stage1", "random", stage1_model),
                    ("centre@stage1", "centre", stage1_model)]
  glance_head_trained = (
      (run_dir.stage_done(run, 0) and "glance" in cfg.stage0.backbones)
      or factory.is_two_stream(cfg.data))
  if glance_head_trained:
    evaluations.append((evaluation.GLANCE_ONLY, evaluation.GLANCE_ONLY, model))
  cost = flops.video_macs(cfg)
  rows = {}
  for name, choice, net in evaluations:
    pred = evaluation.predict_split(net, cfg, split_dir, choice, policy_fn,
                                    max_videos=max_videos, progress=progress)
    row = evaluation.summarize(pred, cfg.data.multi_label)
    row["gflops_per_video"] = flops.choice_gflops(cost, choice)
    rows[name] = row
  results = {"rows": rows, "checkpoint": ckpt, "seed": cfg.seed,
             "eval_split": split_dir,
             "num_videos": int(len(pred["labels"]))}
  results["policy_margins"] = policy_margins(results)
  run_dir.update_metrics(run, results=results, gflops=cost)
  return results


def format_table(results: dict) -> str:
  """The results as a fixed-width text table."""
  lines = [f"{'patches':<14} {'top1':>7} {'top5':>7} {'mAP':>7} "
           f"{'GFLOPs':>8}"]
  for choice, row in results["rows"].items():
    lines.append(f"{choice:<14} {row['top1']:7.2f} {row['top5']:7.2f} "
                 f"{row['mAP']:7.2f} {row['gflops_per_video']:8.3f}")
  lines.append(f"seed {results['seed']}, {results['num_videos']} videos of "
               f"{results['eval_split']}")
  verdict = policy_margins(results)
  if verdict:
    lines.append(
        f"policy: {verdict['over_random']:+.2f} points over random, "
        f"{verdict['over_centre']:+.2f} over centre"
        + (f", {100 * verdict['gap_closed']:.0f}% of the random-to-oracle gap "
           "closed" if "gap_closed" in verdict else ""))
  return "\n".join(lines)


def policy_margins(results: dict) -> dict:
  """How far the learned policy's top-1 is above the baselines.

  Each baseline counts with its better model (final or stage 1).

  Returns:
    {} without a policy row; else ``over_random`` and ``over_centre``
    (points of top-1) and, with an oracle row, ``gap_closed``: the fraction
    of the random-to-oracle gap that the policy closes.
  """
  rows = results["rows"]
  if "policy" not in rows:
    return {}
  best = lambda name: max(rows[k]["top1"] for k in (name, f"{name}@stage1")
                          if k in rows)
  policy, random, centre = rows["policy"]["top1"], best("random"), best(
      "centre")
  out = {"over_random": policy - random, "over_centre": policy - centre}
  if "oracle" in rows and rows["oracle"]["top1"] > random:
    out["gap_closed"] = (policy - random) / (rows["oracle"]["top1"] - random)
  return out

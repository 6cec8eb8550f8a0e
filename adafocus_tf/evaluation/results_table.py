"""The results table a training run ends with (``metrics.json``).

Rows, each with top-1, top-5, mAP and GFLOPs per video: the learned policy
(when stage 2 ran), random, centre and oracle patches (object boxes;
the embedded datasets only) with the final model, and the glance network
alone. When a later stage changed the model, random and centre patches are also
scored with the stage-1 model (``random@stage1``, ``centre@stage1``), the
one trained for random patches, so that a baseline is never judged only by
a model tuned for the policy's patches.

An AdaFocusV2 run (``v2``, ``v2_tsm``) has its policy in its model and one
end-to-end stage (1), its final model, trained with the policy's and random
patches alike: its rows are policy, random, centre, oracle and glance only
(the glance head of its auxiliary loss), with no ``@stage1`` rows. A
Uni-AdaFocus run has the same rows, each choosing frames as well as
regions (the recognizer's ``choice_label`` says what each row is, kept in
``labels``): learned frames and regions (policy), random frames and regions
of side P (random), uniform frames with the centre region (centre) or the
region on the object box (oracle), and the glance only (the classifier's
glance steps, exit step 0). GFLOPs are each row's whole-clip cost
(``Recognizer.choice_gflops``) times the views read of each video
(``data.test_crops``; the oracle reads one).
"""
from __future__ import annotations

from adafocus_tf.data import embedded
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import evaluate
from adafocus_tf.evaluation import predictions
from adafocus_tf.inference import loading
from adafocus_tf.profiling import flops
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import data_check
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run


def results_table(run, max_videos: int = 0, progress: bool = True) -> dict:
  """Evaluates the run with each patch choice on the held-out split.

  Rows, each with top-1, top-5, mAP and GFLOPs per video: the learned
  policy (when stage 2 ran), random, centre and oracle patches (object
  boxes; the embedded datasets only) with the final model, and the glance
  network alone. When a later stage changed the model, random and centre
  patches are also scored with the stage-1 model (``random@stage1``,
  ``centre@stage1``), the one trained for random patches, so that a
  baseline is never judged only by a model tuned for the policy's patches.
  The glance-only row needs a trained glance head: stage 0's, or, in the
  two-stream model, the one stage 1 trains with the focus head.
  Written to ``metrics.json``.

  Args:
    run: a ``trained_run.TrainedRun`` (its config's data is evaluated), or
      a run directory (opened as one).
    max_videos: evaluate on at most this many videos (0: all).
    progress: progress bars.

  Returns:
    The ``results`` section written to metrics.json.
  """
  run = trained_run.TrainedRun.of(run)
  cfg, weights = run.cfg, run.weights
  data_check.check_data(cfg, [cfg.data.eval_split], run.path)
  recognizer = run.recognizer()
  ckpt = weights.model_checkpoint
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  evaluations = []
  if recognizer.policy is not None:
    evaluations.append(("policy", "policy", recognizer))
  evaluations += [("random", "random", recognizer),
                  ("centre", "centre", recognizer)]
  if cfg.data.dataset in embedded.DATASETS:
    evaluations.append(("oracle", "oracle", recognizer))
  stage1 = (checkpoints.latest_stage_checkpoint(run.path, 1)
            if run_dir.stage_done(run.path, 1) else None)
  if stage1 and stage1 != ckpt:
    stage1_recognizer = loading.from_checkpoints(cfg, stage1)
    evaluations += [("random@stage1", "random", stage1_recognizer),
                    ("centre@stage1", "centre", stage1_recognizer)]
  if evaluate.glance_head_trained(run):
    evaluations.append((predictions.GLANCE_ONLY, predictions.GLANCE_ONLY,
                        recognizer))
  cost = flops.video_macs(cfg)
  rows, labels = {}, {}
  for name, choice, rec in evaluations:
    pred = predictions.predict_split(rec, split_dir, choice,
                                    max_videos=max_videos, progress=progress)
    row = predictions.summarize(pred, cfg.data.multi_label)
    row["gflops_per_video"] = predictions.gflops_per_video(rec, cost, choice)
    rows[name] = row
    labels[name] = rec.choice_label(choice) + (
        " (stage-1 model)" if rec is not recognizer else "")
  results = {"rows": rows, "labels": labels,
             "plan_noun": recognizer.plan_noun, **weights.provenance(),
             "seed": cfg.seed, "eval_split": split_dir,
             "views": cfg.data.test_crops,
             "num_videos": int(len(pred["labels"]))}
  results["policy_margins"] = policy_margins(results)
  run_dir.update_metrics(run.path, results=results, gflops=cost)
  return results


def format_table(results: dict) -> str:
  """The results as a fixed-width text table: one row per evaluation, its
  figures and what it is (``labels``: the recognizer's ``choice_label``)."""
  labels = results.get("labels") or {}
  noun = results.get("plan_noun", "patches")
  lines = [f"{'row':<14} {'top1':>7} {'top5':>7} {'mAP':>7} "
           f"{'GFLOPs':>8}  {noun}"]
  for choice, row in results["rows"].items():
    lines.append(f"{choice:<14} {row['top1']:7.2f} {row['top5']:7.2f} "
                 f"{row['mAP']:7.2f} {row['gflops_per_video']:8.3f}  "
                 f"{labels.get(choice, '')}".rstrip())
  views = results.get("views", 1)
  lines.append(f"seed {results['seed']}, {results['num_videos']} videos of "
               f"{results['eval_split']}"
               + (f", {views} views each (the oracle one)" if views > 1
                  else ""))
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

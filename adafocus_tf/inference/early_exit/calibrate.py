"""Calibrating a run's early exit: thresholds, curve and report.

``calibrate`` (what ``launch/calibrate_exit.py`` runs) loads the run's
recognizer, takes the prediction at every exit step of every video of the
training and the evaluation split (``predictions.predict_split``'s
``exit_probs``), fits thresholds on the training split to a geometric
profile meeting a budget in GFLOPs (or to a profile given), stores them in
``<run>/early_exit.json``, then scores early exit on the evaluation split at
budgets from the cost of exit step 0 to the full cost (or, for a family
with a published sweep, ``Recognizer.exit_ratios``, at its geometric
ratios: Uni-AdaFocus's q = 0.05, ..., 0.95 over its K + 1 exits). It writes
``early_exit_curve.{png,csv,md}`` into the run and merges an ``early_exit``
section into ``metrics.json``. Patches come from the run's trained policy
when stage 2 is done, else the centre patch. An AdaFocusV2 run
(``model.variant = v2``) follows docs/METHOD.md V2-7: its confidences are
the steps' largest raw logits, taken on the training split under the
training transform (model in inference mode), and its thresholds follow the
official rule (``threshold_fit.fit_top_thresholds``). See docs/EARLY_EXIT.md.
"""
from __future__ import annotations

import copy
import io
import logging
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from adafocus_tf import io_utils
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import predictions
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.profiling import flops
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

CURVE_PNG = "early_exit_curve.png"
CURVE_CSV = "early_exit_curve.csv"
CURVE_MD = "early_exit_curve.md"
CURVE_JSON = "early_exit_curve.json"
COLUMNS = ("budget_gflops", "ratio", "expected_gflops_train", "gflops",
           "mean_steps", "top1", "top5", "mAP")


def _finite(q):
  # JSON has no infinity; q = inf (everyone to the last step) is stored as
  # None, and so is "no ratio" (a profile given as weights).
  return q if q is not None and np.isfinite(q) else None


def _labels(pred, multi_label):
  return pred["multi_hot"] if multi_label else pred["labels"]


def _point(train_conf, eval_pred, profile, step_macs, multi_label,
           criterion=exit_rule.MAX_PROB):
  """Fits thresholds to ``profile`` on train; scores them on eval."""
  thresholds = threshold_fit.fit(train_conf, profile, criterion)
  row = threshold_fit.summarize(eval_pred["exit_probs"],
                                _labels(eval_pred, multi_label), thresholds,
                                step_macs, eval_pred["exit_confidences"])
  row["expected_gflops_train"] = exit_cost.expected_gflops(profile,
                                                           step_macs)
  row["thresholds"] = thresholds.tolist()
  return row


def curve(train_conf, eval_pred, step_macs, num_points, multi_label,
          criterion=exit_rule.MAX_PROB, ratios: Sequence[float] = ()):
  """Accuracy and measured GFLOPs at budgets from step 0's cost to the full,
  or at geometric ratios.

  Args:
    train_conf: float [N, E] confidences of the training videos.
    eval_pred: ``predictions.predict_split`` output on the evaluation split.
    step_macs: float [E] MACs each exit step adds.
    num_points: number of budgets, evenly spaced (without ``ratios``).
    multi_label: score with multi-hot labels.
    criterion: the confidences' criterion (``threshold_fit.fit``).
    ratios: geometric ratios q, one point each (profile p_e proportional to
      q^e; the budget is its expected cost), instead of evenly spaced
      budgets (e.g. ``Recognizer.exit_ratios``, a family's published
      sweep).

  Returns:
    List of rows (``threshold_fit.summarize`` plus ``budget_gflops``,
    ``ratio``, ``expected_gflops_train`` and ``thresholds``).
  """
  cum = exit_cost.cumulative_macs(step_macs)
  if ratios:
    points = [(exit_cost.expected_gflops(
        exit_cost.geometric_profile(q, len(cum)), step_macs), q)
              for q in ratios]
  else:
    points = [(b, exit_cost.ratio_for_budget(b, step_macs))
              for b in np.linspace(cum[0], cum[-1], num_points) / flops.G]
  rows = []
  for budget, q in points:
    row = _point(train_conf, eval_pred,
                 exit_cost.geometric_profile(q, len(cum)), step_macs,
                 multi_label, criterion)
    rows.append({"budget_gflops": float(budget), "ratio": _finite(q), **row})
  return rows


def check_inference(runner, split_dir, thresholds, eval_pred, num_videos,
                    views: int = 1):
  """Runs the step-by-step early-exit inference on the first videos.

  Args:
    runner: an ``EarlyExitRunner`` of the run's recognizer.
    split_dir: the evaluation split.
    thresholds: the stored thresholds.
    eval_pred: ``predict_split`` on the same split (same video order).
    num_videos: videos to run.
    views: views per video, as ``eval_pred`` read them.

  Returns:
    dict: ``videos``; ``step_videos`` (videos that ran each exit step);
    ``gflops`` (the runner's mean GFLOPs per video), ``video_gflops`` (each
    video's: the steps it ran, added up as it ran them), ``exit_steps``
    (each video's) and ``gflops_full`` (every step); ``same_exit_step``
    (fraction agreeing with ``exit_steps`` on ``eval_pred``; float rounding
    between whole-clip and stepwise inference may move a video sitting on a
    threshold).
  """
  cfg = runner.recognizer.cfg
  ds = pipeline.make_dataset(cfg.data, split_dir, training=False,
                             batch_size=cfg.eval_batch_size, seed=cfg.seed,
                             views=views)
  steps, macs, step_videos, seen = [], [], 0, 0
  # The runner adds each step's cost as the videos run it.
  for batch in ds:
    batch = {k: batch[k][:num_videos - seen]
             for k in runner.recognizer.input_keys}
    out = runner.predict(batch, thresholds, views)
    steps.append(out.exit_steps)
    macs.append(out.macs)
    step_videos = step_videos + out.step_videos
    seen += len(out.exit_steps)
    if seen >= num_videos:
      break
  steps = np.concatenate(steps)
  want = exit_rule.exit_steps_from_confidences(
      eval_pred["exit_confidences"][:seen], thresholds)
  macs = np.concatenate(macs)
  return {"videos": seen, "step_videos": np.asarray(step_videos).tolist(),
          "gflops": float(np.mean(macs)) / flops.G,
          "video_gflops": (macs / flops.G).tolist(),
          "exit_steps": steps.tolist(),
          "gflops_full": float(np.sum(runner.step_macs)) * views / flops.G,
          "same_exit_step": float(np.mean(steps == want))}


def operating_profile(budget_gflops, profile, step_macs):
  """The exit profile of the stored thresholds.

  Args:
    budget_gflops: target average GFLOPs per video, or None.
    profile: ``exit_cost.parse_profile`` text, used when no budget.
    step_macs: float [E] MACs each exit step adds.

  Returns:
    (ratio q or None when the profile is given as weights, profile [E]).
  """
  cum = exit_cost.cumulative_macs(step_macs)
  num_steps = len(cum)
  if budget_gflops is None:
    ratio = (float(profile.split(":", 1)[1])
             if profile.startswith("geometric:") else None)
    return ratio, exit_cost.parse_profile(profile, num_steps)
  lo, hi = cum[0] / flops.G, cum[-1] / flops.G
  if not lo <= budget_gflops <= hi:
    # Early exit can only move between exit step 0 and all the steps.
    logging.warning("budget %.4g GFLOPs is outside [%.4g, %.4g] (exit step "
                    "0 to all %d): clamped", budget_gflops, lo, hi, num_steps)
  ratio = exit_cost.ratio_for_budget(budget_gflops, step_macs)
  return ratio, exit_cost.geometric_profile(ratio, num_steps)


def calibrate(run, budget_gflops: Optional[float] = None,
              profile: Optional[str] = None, data_dir: Optional[str] = None,
              max_videos: int = 0, num_points: int = 10,
              check_videos: Optional[int] = None,
              progress: bool = True, allow_unfinished: bool = False,
              ratios: Optional[Sequence[float]] = None,
              test_crops: Optional[int] = None) -> dict:
  """Fits, stores and scores early exit for a run.

  Args:
    run: a ``trained_run.TrainedRun``, or a run directory (local or
      ``s3://``, opened as one).
    budget_gflops: target average GFLOPs per video, or None with
      ``profile``.
    profile: ``exit_cost.parse_profile`` text, or None with
      ``budget_gflops``.
    data_dir: dataset root overriding the run's.
    max_videos: cap on videos per split (0: all).
    num_points: budgets on the curve (without ratios).
    check_videos: evaluation videos for ``check_inference`` (None: one
      evaluation batch; 0: skip).
    progress: progress bars.
    allow_unfinished: fit on an unfinished stage's weights
      (``final_weights.resolve``; recorded in early_exit.json).
    ratios: the curve's geometric ratios (``curve``); None: the
      recognizer's published sweep (``Recognizer.exit_ratios``:
      Uni-AdaFocus's q = 0.05, 0.10, ..., 0.95), else ``num_points``
      evenly spaced budgets; () forces the budgets.
    test_crops: views of each evaluation video (``DataConfig.test_crops``;
      None: the run's); their logits averaged at every exit step, their
      costs added (a family that exits on raw logits).

  Returns:
    The ``early_exit`` section written to metrics.json.

  Raises:
    ValueError: both or neither of ``budget_gflops`` and ``profile``, or a
      bad profile.
    FileNotFoundError: not a run directory, or no checkpoint in it.
  """
  if (budget_gflops is None) == (profile is None):
    raise ValueError("give exactly one of budget_gflops and profile")
  trained = trained_run.TrainedRun.of(run, allow_unfinished=allow_unfinished)
  cfg = copy.deepcopy(trained.cfg)
  if data_dir:
    cfg.data.data_dir = data_dir
  if test_crops is not None:
    cfg.data.test_crops = test_crops
  if cfg != trained.cfg:
    # The recognizer reads its views from its own config.
    trained = trained_run.TrainedRun(trained.path, cfg=cfg,
                                     allow_unfinished=allow_unfinished)
  run, weights = trained.path, trained.weights
  multi = cfg.data.multi_label
  recognizer = trained.recognizer()
  choice = recognizer.default_choice()
  criterion = exit_rule.criterion_of(cfg)
  cost = flops.video_macs(cfg)
  runner = runner_lib.EarlyExitRunner(recognizer, cost)
  step_macs = runner.step_macs
  num_steps = len(step_macs)
  # The evaluation split is read in data.test_crops views (the training
  # split in one): its videos cost every view's steps.
  views = predictions.views_read(cfg, choice)
  runner.check_views(views)
  eval_macs = step_macs * views
  train_pred, eval_pred = (
      predictions.predict_split(
          recognizer, pipeline.split_dir(cfg.data, s), choice,
          max_videos=max_videos, progress=progress,
          # V2 fits on training-transform logits (docs/METHOD.md V2-7).
          training_transform=(s == cfg.data.train_split
                              and criterion == exit_rule.MAX_LOGIT))
      for s in (cfg.data.train_split, cfg.data.eval_split))
  train_conf = train_pred["exit_confidences"]
  ratio, exit_profile = operating_profile(budget_gflops, profile, step_macs)
  row = _point(train_conf, eval_pred, exit_profile, eval_macs, multi,
               criterion)
  thresholds = np.asarray(row.pop("thresholds"))
  # The thresholds' file is per clip (one view), as prediction reads.
  expected_train = exit_cost.expected_gflops(exit_profile, step_macs)
  train_steps = exit_rule.exit_steps_from_confidences(train_conf,
                                                      thresholds)
  record = threshold_file.save(
      run, thresholds, exit_profile, step_macs, budget_gflops,
      expected_train, weights, criterion=criterion,
      measured_gflops_train=exit_cost.measured_gflops(train_steps,
                                                      step_macs),
      ratio=_finite(ratio), profile_spec=profile, patches=choice,
      num_exit_steps=num_steps,
      train_videos=int(len(train_conf)))

  full = threshold_fit.summarize(
      eval_pred["exit_probs"], _labels(eval_pred, multi),
      exit_rule.never(num_steps, criterion), eval_macs,
      eval_pred["exit_confidences"])
  if ratios is None:
    ratios = recognizer.exit_ratios
  points = curve(train_conf, eval_pred, eval_macs, num_points, multi,
                 criterion, ratios)
  files = {"png": io_utils.join(run, CURVE_PNG),
           "csv": io_utils.join(run, CURVE_CSV),
           "md": io_utils.join(run, CURVE_MD),
           "json": io_utils.join(run, CURVE_JSON)}
  io_utils.write_bytes(files["png"], plot_png(points, row, full))
  io_utils.write_text(files["csv"], table_csv(points))
  io_utils.write_json(files["json"], {
      "criterion": criterion, "columns": list(COLUMNS),
      "sweep": "ratios" if ratios else "budgets",
      "points": [{k: p[k] for k in COLUMNS + ("exits", "thresholds")}
                 for p in points],
      "stored": {k: row[k] for k in ("gflops", "top1", "top5", "mAP")},
      "full": {k: full[k] for k in ("gflops", "top1", "top5", "mAP")}})
  section = {
      **{k: record[k] for k in ("thresholds", "profile", "ratio",
                                "budget_gflops", "exit_step_macs",
                                "expected_gflops_train",
                                "measured_gflops_train", "patches",
                                "criterion")},
      **weights.provenance(),
      "eval": row, "full": full,
      "curve": [{k: p[k] for k in COLUMNS + ("exits",)} for p in points],
      "num_videos": {"train": int(len(train_conf)),
                     "eval": int(len(eval_pred["labels"]))},
      "eval_split": pipeline.split_dir(cfg.data, cfg.data.eval_split),
      "files": files,
      "plan": recognizer.choice_label(choice),
      "views": views,
  }
  if check_videos is None:
    check_videos = cfg.eval_batch_size
  if check_videos:
    section["inference_check"] = check_inference(
        runner, section["eval_split"], thresholds, eval_pred, check_videos,
        views)
  io_utils.write_text(files["md"], format_report(section) + "\n")
  run_dir.update_metrics(run, early_exit=section)
  return section


# ---------------------------------------------------------------------------
# Output: table and plot.


def _fmt(value, width=8, digits=3):
  if value is None:
    return f"{'-':>{width}}"
  if value > 1e4:
    return f"{value:>{width}.2g}"
  return f"{value:{width}.{digits}f}"


def _threshold_text(x) -> str:
  if x >= exit_rule.NEVER_LOGIT:
    return "never"
  if x <= exit_rule.ALWAYS_LOGIT:
    return "always"
  return f"{x:.4f}"


def table_csv(points) -> str:
  """The curve as CSV, one budget per line.

  Args:
    points: ``curve`` rows.
  """
  lines = [",".join(COLUMNS)]
  for p in points:
    lines.append(",".join("" if p[k] is None else repr(float(p[k]))
                          for k in COLUMNS))
  return "\n".join(lines) + "\n"


def _step_costs(step_macs) -> str:
  gflops = [x / flops.G for x in step_macs]
  if len(set(gflops)) == 1:
    return (f"each of the {len(gflops)} exit steps costs {gflops[0]:.4f} "
            "GFLOPs")
  return ("the exit steps cost " +
          ", ".join(f"{x:.4f}" for x in gflops) + " GFLOPs")


def format_report(section) -> str:
  """The operating point and the curve as a markdown table.

  Args:
    section: the ``early_exit`` section ``calibrate`` returns.
  """
  plan = section.get("plan") or f"{section['patches']} patches"
  head = ("| budget | q | expected (train) | GFLOPs (eval) | steps | top-1 "
          "| top-5 | mAP |")
  lines = [
      f"# Early exit ({plan}, "
      f"{section['num_videos']['eval']} evaluation videos)",
      "",
      f"Cost: {_step_costs(section['exit_step_macs'])}; thresholds fitted "
      f"on {section['num_videos']['train']} training videos.",
  ]
  views = section.get("views", 1)
  if views > 1:
    lines.append(
        f"Each evaluation video is read in {views} views, their logits "
        "averaged at every exit step; the table's GFLOPs are the views' "
        "together, the stored budget (--budget_gflops) and the step costs "
        "above one view's.")
  lines += [
      "",
      head, "| --- " * 8 + "|",
  ]

  def line(name, ratio, r):
    return (f"| {name} | {_fmt(ratio, 0, 3).strip()} | "
            f"{_fmt(r.get('expected_gflops_train'), 0).strip()} | "
            f"{r['gflops']:.3f} | {r['mean_steps']:.2f} | {r['top1']:.2f} | "
            f"{r['top5']:.2f} | {r['mAP']:.2f} |")

  for p in section["curve"]:
    lines.append(line(f"{p['budget_gflops']:.3f}", p["ratio"], p))
  budget = section["budget_gflops"]
  name = (f"**{budget:.3f} (stored)**" if budget is not None
          else "**profile (stored)**")
  lines.append(line(name, section["ratio"], section["eval"]))
  lines.append(line("no exit", None, section["full"]))
  lines += ["", f"Thresholds ({section.get('criterion', 'max_prob')}): "
            + ", ".join(_threshold_text(x) for x in section["thresholds"])]
  check = section.get("inference_check")
  if check:
    lines.append(
        f"Step-by-step inference on {check['videos']} videos: "
        f"{check['gflops']:.3f} of {check['gflops_full']:.3f} GFLOPs per "
        "video (videos running each step: "
        f"{', '.join(str(v) for v in check['step_videos'])}; "
        f"{100 * check['same_exit_step']:.0f}% same exit step).")
  return "\n".join(lines)


def plot_png(points, stored, full, size=(720, 480)) -> bytes:
  """Top-1 and mAP against measured GFLOPs per video, as PNG bytes.

  Args:
    points: curve rows (``gflops``, ``top1``, ``mAP``).
    stored: the stored thresholds' row (marked).
    full: the row without early exit (marked).
    size: image width and height in pixels.

  Returns:
    The PNG file's bytes.
  """
  w, h = size
  left, right, top, bottom = 70, 70, 40, 60
  img = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  xs = [p["gflops"] for p in points] + [stored["gflops"], full["gflops"]]
  ys = [v for p in points + [stored, full] for v in (p["top1"], p["mAP"])
        if np.isfinite(v)]
  x0, x1 = min(xs), max(xs)
  if x1 - x0 < 1e-12:
    x0, x1 = x0 - 0.5, x1 + 0.5
  y0, y1 = 10 * np.floor(min(ys) / 10), 10 * np.ceil(max(ys) / 10)
  if y1 <= y0:
    y1 = y0 + 10
  y_step = 10 if y1 - y0 <= 60 else 20

  def px(x, y):
    return (left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

  # Axes, ticks and tick labels.
  draw.line([px(x0, y0), px(x1, y0)], fill="black")
  draw.line([px(x0, y0), px(x0, y1)], fill="black")
  for x in np.linspace(x0, x1, 6):
    cx, cy = px(x, y0)
    draw.line([(cx, cy), (cx, cy + 4)], fill="black")
    draw.text((cx - 12, cy + 6), f"{x:.3g}", fill="black", font=font)
  for y in np.arange(y0, y1 + 1e-9, y_step):
    cx, cy = px(x0, y)
    draw.line([(cx - 4, cy), (cx, cy)], fill="black")
    draw.text((cx - 36, cy - 6), f"{y:.0f}", fill="black", font=font)
  draw.text((w / 2 - 90, h - 25), "GFLOPs per video (measured)",
            fill="black", font=font)
  label = Image.new("RGB", (160, 14), "white")
  ImageDraw.Draw(label).text((0, 0), "accuracy (%)", fill="black",
                             font=font)
  img.paste(label.rotate(90, expand=True), (8, h // 2 - 80))
  draw.text((left, 12), "AdaFocus+ early exit: accuracy vs GFLOPs",
            fill="black", font=font)

  for key, colour in (("top1", (31, 119, 180)), ("mAP", (214, 39, 40))):
    pts = [px(p["gflops"], p[key]) for p in points if np.isfinite(p[key])]
    if len(pts) > 1:
      draw.line(pts, fill=colour, width=2)
    for cx, cy in pts:
      draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
    for row, mark in ((stored, "stored"), (full, "no exit")):
      if np.isfinite(row[key]):
        cx, cy = px(row["gflops"], row[key])
        draw.rectangle([cx - 5, cy - 5, cx + 5, cy + 5], outline=colour)
        if key == "top1":
          draw.text((cx + 7, cy - 14), mark, fill="black", font=font)
  # Legend.
  lx, ly = w - right - 110, h - bottom - 40
  for i, (name, colour) in enumerate((("top-1", (31, 119, 180)),
                                      ("mAP", (214, 39, 40)))):
    draw.line([(lx, ly + 14 * i + 6), (lx + 20, ly + 14 * i + 6)],
              fill=colour, width=2)
    draw.text((lx + 26, ly + 14 * i), name, fill="black", font=font)
  buf = io.BytesIO()
  img.save(buf, format="PNG")
  return buf.getvalue()

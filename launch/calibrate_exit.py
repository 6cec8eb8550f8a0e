"""Fits AdaFocus+ early-exit thresholds to a trained run and plots the curve.

  python launch/calibrate_exit.py --run=$RUN --budget_gflops=15
  python launch/calibrate_exit.py --run=$RUN --profile=geometric:0.8
  python launch/calibrate_exit.py --run=$RUN --budget_gflops=1.2 \
      --data_dir=$WS/data/minik --max_videos=500

Fits thresholds on the training split (evaluation transform) so that the
exits follow a geometric profile meeting ``--budget_gflops`` (or the profile
given), stores them in ``<run>/early_exit.json``, then scores early exit on
the evaluation split at ``--num_points`` budgets from one frame's cost to
the full cost. Writes ``early_exit_curve.{png,csv,md}`` into the run, merges
an ``early_exit`` section into ``metrics.json`` and prints the table. Patches
come from the run's trained policy when stage 2 is done, else the centre
patch. See docs/EARLY_EXIT.md.
"""
import io
import os
import sys

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from adafocus_tf import early_exit
from adafocus_tf import flops
from adafocus_tf import io_utils
from adafocus_tf.data import pipeline
from adafocus_tf.models import factory
from adafocus_tf.training import evaluation
from adafocus_tf.training import experiment
from adafocus_tf.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Run directory (local or s3://).")
flags.DEFINE_float("budget_gflops", None, "Target average GFLOPs per video "
                   "of the stored thresholds (geometric profile, q by "
                   "bisection).")
flags.DEFINE_string("profile", None, "Exit profile instead of a budget: "
                    "geometric:Q, or T comma-separated weights.")
flags.DEFINE_string("data_dir", None, "Prepared dataset; default: the one in "
                    "the run's config.")
flags.DEFINE_integer("max_videos", 0, "Use at most this many videos of each "
                     "split (0: all).")
flags.DEFINE_integer("num_points", 10, "Budgets on the accuracy-vs-GFLOPs "
                     "curve.")
flags.DEFINE_integer("check_videos", None, "Also run the frame-by-frame early"
                     "-exit inference on this many evaluation videos and "
                     "report its focus-net evaluations (default: one "
                     "evaluation batch; 0: skip).")
flags.DEFINE_bool("progress", True, "Progress bars.")

CURVE_PNG = "early_exit_curve.png"
CURVE_CSV = "early_exit_curve.csv"
CURVE_MD = "early_exit_curve.md"
_COLUMNS = ("budget_gflops", "ratio", "expected_gflops_train", "gflops",
            "mean_frames", "top1", "top5", "mAP")


def _finite(q):
  # JSON has no infinity; q = inf (everyone to the last frame) is stored as
  # None, and so is "no ratio" (a profile given as weights).
  return q if q is not None and np.isfinite(q) else None


def _labels(pred, multi_label):
  return pred["multi_hot"] if multi_label else pred["labels"]


def _point(train_conf, eval_pred, profile, per_frame, multi_label):
  """Fits thresholds to ``profile`` on train; scores them on eval."""
  thresholds = early_exit.fit_thresholds(train_conf, profile)
  row = early_exit.summarize(eval_pred["step_probs"],
                             _labels(eval_pred, multi_label), thresholds,
                             per_frame)
  row["expected_gflops_train"] = early_exit.expected_gflops(profile,
                                                            per_frame)
  row["thresholds"] = thresholds.tolist()
  return row


def curve(train_conf, eval_pred, per_frame, num_points, multi_label):
  """Accuracy and measured GFLOPs at budgets from 1 frame to T frames.

  Args:
    train_conf: float [N, T] confidences of the training videos.
    eval_pred: ``evaluation.predict_split`` output on the evaluation split.
    per_frame: MACs per frame.
    num_points: number of budgets, evenly spaced.
    multi_label: score with multi-hot labels.

  Returns:
    List of rows (``early_exit.summarize`` plus ``budget_gflops``,
    ``ratio``, ``expected_gflops_train`` and ``thresholds``).
  """
  t = train_conf.shape[1]
  rows = []
  for budget in np.linspace(1, t, num_points) * per_frame / flops.G:
    q = early_exit.ratio_for_budget(budget, per_frame, t)
    row = _point(train_conf, eval_pred, early_exit.geometric_profile(q, t),
                 per_frame, multi_label)
    rows.append({"budget_gflops": float(budget), "ratio": _finite(q), **row})
  return rows


def check_inference(model, cfg, split_dir, policy_step, thresholds,
                    eval_pred, num_videos):
  """Runs ``early_exit_predict`` on the first evaluation videos.

  Args:
    model: the run's model.
    cfg: its config.
    split_dir: the evaluation split.
    policy_step: the policy frame by frame
      (``PolicyTrainer.greedy_stepper``), or None for centre patches.
    thresholds: the stored thresholds.
    eval_pred: ``predict_split`` on the same split (same video order).
    num_videos: videos to run.

  Returns:
    dict: ``videos``, ``focus_evaluations``, ``focus_evaluations_full``
    (N x T) and ``same_exit_step`` (fraction agreeing with ``exit_steps``
    on ``eval_pred``; float rounding between the batched and the stepwise
    GRU may move a video sitting on a threshold).
  """
  ds = pipeline.make_dataset(cfg.data, split_dir, training=False,
                             batch_size=cfg.eval_batch_size, seed=cfg.seed)
  runner = early_exit.EarlyExitRunner(model, policy_step)
  steps, focus, seen = [], 0, 0
  for batch in ds:
    frames = batch["frames"][:num_videos - seen]
    out = runner.predict(frames, thresholds)
    steps.append(out.exit_steps)
    focus += out.focus_evaluations
    seen += len(out.exit_steps)
    if seen >= num_videos:
      break
  steps = np.concatenate(steps)
  want = early_exit.exit_steps(eval_pred["step_probs"][:seen], thresholds)
  return {"videos": seen, "focus_evaluations": int(focus),
          "focus_evaluations_full": int(seen * cfg.data.num_frames),
          "same_exit_step": float(np.mean(steps == want))}


def operating_profile(budget_gflops, profile, per_frame, num_steps):
  """The exit profile of the stored thresholds.

  Args:
    budget_gflops: target average GFLOPs per video, or None.
    profile: ``early_exit.parse_profile`` text, used when no budget.
    per_frame: MACs per frame.
    num_steps: T.

  Returns:
    (ratio q or None when the profile is given as weights, profile [T]).
  """
  if budget_gflops is None:
    ratio = (float(profile.split(":", 1)[1])
             if profile.startswith("geometric:") else None)
    return ratio, early_exit.parse_profile(profile, num_steps)
  lo, hi = per_frame / flops.G, num_steps * per_frame / flops.G
  if not lo <= budget_gflops <= hi:
    # Early exit can only move between one frame and all of them.
    logging.warning("budget %.4g GFLOPs is outside [%.4g, %.4g] (one frame "
                    "to all %d): clamped", budget_gflops, lo, hi, num_steps)
  ratio = early_exit.ratio_for_budget(budget_gflops, per_frame, num_steps)
  return ratio, early_exit.geometric_profile(ratio, num_steps)


def calibrate(run, budget_gflops=None, profile=None, data_dir=None,
              max_videos=0, num_points=10, check_videos=None,
              progress=True) -> dict:
  """Fits, stores and scores early exit for a run (what ``main`` runs).

  Args:
    run: run directory.
    budget_gflops: target average GFLOPs per video, or None with
      ``profile``.
    profile: ``early_exit.parse_profile`` text, or None with
      ``budget_gflops``.
    data_dir: dataset root overriding the run's.
    max_videos: cap on videos per split (0: all).
    num_points: budgets on the curve.
    check_videos: evaluation videos for ``check_inference`` (None: one
      evaluation batch; 0: skip).
    progress: progress bars.

  Returns:
    The ``early_exit`` section written to metrics.json.
  """
  if (budget_gflops is None) == (profile is None):
    raise ValueError("give exactly one of budget_gflops and profile")
  cfg = run_dir.read_config(run)
  factory.require_one_stream(cfg, "early exit")
  if data_dir:
    cfg.data.data_dir = data_dir
  t, multi = cfg.data.num_frames, cfg.data.multi_label
  model, ckpt = experiment.final_model(cfg, run)
  choice, policy_fn, policy_step = "centre", None, None
  if experiment.has_policy(run):
    policy = experiment.load_policy_trainer(cfg, run)
    choice, policy_fn = "policy", policy.policy_fn
    policy_step = policy.greedy_stepper()
  per_frame = early_exit.frame_macs(flops.video_macs(cfg), choice)
  train_pred, eval_pred = (
      evaluation.predict_split(model, cfg, pipeline.split_dir(cfg.data, s),
                               choice, policy_fn, max_videos=max_videos,
                               progress=progress)
      for s in (cfg.data.train_split, cfg.data.eval_split))
  train_conf = early_exit.confidences(train_pred["step_probs"])
  ratio, exit_profile = operating_profile(budget_gflops, profile, per_frame,
                                          t)
  row = _point(train_conf, eval_pred, exit_profile, per_frame, multi)
  thresholds = np.asarray(row.pop("thresholds"))
  train_steps = early_exit.exit_steps_from_confidences(train_conf, thresholds)
  record = early_exit.save(
      run, thresholds, exit_profile, per_frame, budget_gflops,
      row["expected_gflops_train"],
      measured_gflops_train=early_exit.measured_gflops(train_steps,
                                                       per_frame),
      ratio=_finite(ratio), profile_spec=profile, patches=choice,
      checkpoint=ckpt, num_frames=t, train_videos=int(len(train_conf)))

  never = np.full(t, early_exit.NEVER)
  full = early_exit.summarize(eval_pred["step_probs"],
                              _labels(eval_pred, multi), never, per_frame)
  points = curve(train_conf, eval_pred, per_frame, num_points, multi)
  files = {"png": io_utils.join(run, CURVE_PNG),
           "csv": io_utils.join(run, CURVE_CSV),
           "md": io_utils.join(run, CURVE_MD)}
  io_utils.write_bytes(files["png"], plot_png(points, row, full))
  io_utils.write_text(files["csv"], table_csv(points))
  section = {
      **{k: record[k] for k in ("thresholds", "profile", "ratio",
                                "budget_gflops", "per_frame_macs",
                                "expected_gflops_train",
                                "measured_gflops_train", "patches",
                                "checkpoint")},
      "eval": row, "full": full,
      "curve": [{k: p[k] for k in _COLUMNS + ("exits",)} for p in points],
      "num_videos": {"train": int(len(train_conf)),
                     "eval": int(len(eval_pred["labels"]))},
      "eval_split": pipeline.split_dir(cfg.data, cfg.data.eval_split),
      "files": files,
  }
  if check_videos is None:
    check_videos = cfg.eval_batch_size
  if check_videos:
    section["inference_check"] = check_inference(
        model, cfg, section["eval_split"], policy_step, thresholds,
        eval_pred, check_videos)
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


def table_csv(points) -> str:
  """The curve as CSV, one budget per line."""
  lines = [",".join(_COLUMNS)]
  for p in points:
    lines.append(",".join("" if p[k] is None else repr(float(p[k]))
                          for k in _COLUMNS))
  return "\n".join(lines) + "\n"


def format_report(section) -> str:
  """The operating point and the curve as a markdown table."""
  head = ("| budget | q | expected (train) | GFLOPs (eval) | frames | top-1 "
          "| top-5 | mAP |")
  lines = [
      f"# Early exit ({section['patches']} patches, "
      f"{section['num_videos']['eval']} evaluation videos)",
      "",
      f"Per-frame cost {section['per_frame_macs'] / flops.G:.4f} GFLOPs; "
      f"thresholds fitted on {section['num_videos']['train']} training "
      "videos.",
      "",
      head, "| --- " * 8 + "|",
  ]

  def line(name, ratio, r):
    return (f"| {name} | {_fmt(ratio, 0, 3).strip()} | "
            f"{_fmt(r.get('expected_gflops_train'), 0).strip()} | "
            f"{r['gflops']:.3f} | {r['mean_frames']:.2f} | {r['top1']:.2f} | "
            f"{r['top5']:.2f} | {r['mAP']:.2f} |")

  for p in section["curve"]:
    lines.append(line(f"{p['budget_gflops']:.3f}", p["ratio"], p))
  budget = section["budget_gflops"]
  name = (f"**{budget:.3f} (stored)**" if budget is not None
          else "**profile (stored)**")
  lines.append(line(name, section["ratio"], {
      **section["eval"],
      "expected_gflops_train": section["expected_gflops_train"]}))
  lines.append(line("no exit", None, section["full"]))
  lines += ["", "Thresholds: " + ", ".join(
      f"{x:.4f}" for x in section["thresholds"])]
  check = section.get("inference_check")
  if check:
    lines.append(
        f"Frame-by-frame inference on {check['videos']} videos: "
        f"{check['focus_evaluations']} focus evaluations of "
        f"{check['focus_evaluations_full']} "
        f"({100 * check['same_exit_step']:.0f}% same exit step).")
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if (FLAGS.budget_gflops is None) == (FLAGS.profile is None):
    raise app.UsageError("give exactly one of --budget_gflops and --profile")
  try:
    section = calibrate(FLAGS.run, FLAGS.budget_gflops, FLAGS.profile,
                        FLAGS.data_dir, FLAGS.max_videos, FLAGS.num_points,
                        FLAGS.check_videos, FLAGS.progress)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e))
  print(format_report(section))
  print(f"thresholds: {early_exit.path(FLAGS.run)}")
  print(f"curve: {section['files']['png']}, {section['files']['csv']}, "
        f"{section['files']['md']}")


if __name__ == "__main__":
  # Every exit through io_utils: after S3 use a plain one aborts.
  io_utils.run_main(main)

"""Evaluates a trained run on a prepared split: every metric and the cost.

  adafocus-evaluate --run=$RUN
  adafocus-evaluate --run=$RUN --split=test --patches=random
  adafocus-evaluate --run=$RUN --data_dir=$WS/data/minik --strategy=mirrored
  adafocus-evaluate --run=$RUN --early_exit
  adafocus-evaluate --run=$RUN --test_crops=3

(``python launch/evaluate.py`` is the same command.)

Scores the run's final model (the last finished stage's checkpoint; an
unfinished later stage only with ``--allow_unfinished``) with one patch
choice: top-1, top-5, mAP (multi-label when the data is) and the mAP after
every frame, with the GFLOPs per video. The figures are printed and stored
in ``<run>/metrics.json`` under ``evaluation["<split>/<patches>"]`` (other
entries are kept). The default patches are the learned policy's when stage 2
is done (always for an AdaFocusV2 run, whose policy is part of its model),
else the centre patch.

With ``--early_exit`` the run's calibrated thresholds
(adafocus-calibrate-exit) stop each video at its exit step, running the
model step by step (only the videos still running compute a step), and
the GFLOPs reported are those each video actually ran (their mean; the
videos leaving at each step are listed), under
``evaluation["<split>/<patches>+early_exit"]``.

With ``--test_crops=3`` (default: the run's ``data.test_crops``) each video
is read in three views, the centre, left and right crops, and predicted
from the mean of their logits (Uni-AdaFocus-X3D's three-view Kinetics
results); the GFLOPs are the three views' and the entry is
``evaluation["<split>/<patches>+3views"]``. With ``--early_exit`` too
(``+3views+early_exit``; a model family that exits on raw logits:
AdaFocusV2, Uni-AdaFocus), every view of a video runs each exit step it
reaches and their logits averaged decide whether it leaves, as the official
three-view early exit does; the thresholds are those adafocus-calibrate-exit
fitted.
"""
from absl import app
from absl import flags
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.evaluation import evaluate as evaluate_lib
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.training import strategy as strategy_lib

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__,
    shared=("run", "data_dir", "patches", "max_videos", "strategy",
            "cpu_devices", "progress", "allow_unfinished", "early_exit",
            "test_crops"),
    choices={"patches": (trained_run.AUTO,) + evaluate_lib.EVAL_CHOICES,
             "strategy": ("default", "mirrored")})
flags.DEFINE_string("split", None, "Split to evaluate; default: the config's "
                    "data.eval_split (val).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if FLAGS.max_videos < 0:
    raise app.UsageError("--max_videos must be >= 0")
  # Before anything initialises TensorFlow's devices.
  if FLAGS.cpu_devices:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
  try:
    cfg = run_dir.read_config(FLAGS.run)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  if FLAGS.data_dir:
    cfg.data.data_dir = FLAGS.data_dir
  if common.test_crops_flag() is not None:
    cfg.data.test_crops = FLAGS.test_crops
  if not cfg.data.data_dir:
    raise app.UsageError("the run's config names no data_dir; pass "
                         "--data_dir")
  split = FLAGS.split or cfg.data.eval_split
  split_dir = pipeline.split_dir(cfg.data, split)
  try:
    shards.list_records(split_dir)
    run = trained_run.TrainedRun(FLAGS.run, cfg=cfg,
                                 allow_unfinished=FLAGS.allow_unfinished)
    choice = evaluate_lib.resolve_eval_patches(run, split_dir, FLAGS.patches)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  if FLAGS.early_exit:
    if FLAGS.strategy != "default":
      raise app.UsageError("--early_exit runs on one device: drop "
                           "--strategy")
    try:
      calibrated = run.recognizer().default_choice()
    except (FileNotFoundError, ValueError) as e:
      raise app.UsageError(str(e))
    if choice != calibrated:
      raise app.UsageError(f"--early_exit runs the {calibrated} patches "
                           "the thresholds were fitted with, not "
                           f"--patches={FLAGS.patches}")
    try:
      row, _ = evaluate_lib.evaluate_early_exit(run, split_dir,
                                                FLAGS.max_videos,
                                                progress=FLAGS.progress)
    except (FileNotFoundError, ValueError) as e:
      raise app.UsageError(str(e))
  else:
    strategy = strategy_lib.make_strategy(FLAGS.strategy)
    try:
      row, _ = evaluate_lib.evaluate_split(run, split_dir, choice,
                                          FLAGS.max_videos, strategy,
                                          progress=FLAGS.progress)
    except FileNotFoundError as e:
      raise app.UsageError(str(e))
  row["split"] = split
  row["max_videos"] = FLAGS.max_videos
  key = (f"{split}/{choice}" + evaluate_lib.views_suffix(row["views"])
         + (evaluate_lib.EARLY_EXIT if FLAGS.early_exit else ""))
  evaluate_lib.record_evaluation(FLAGS.run, key, row)
  print(evaluate_lib.format_evaluation(key, row))
  print(f"written to {io_utils.join(FLAGS.run, run_dir.METRICS)} "
        f"(evaluation[{key!r}])")


def run() -> None:
  """The ``adafocus-evaluate`` console script (and ``launch/evaluate.py``)."""
  COMMAND.run(main)

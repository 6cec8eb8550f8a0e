"""Fits AdaFocus+ early-exit thresholds to a trained run and plots the curve.

  adafocus-calibrate-exit --run=$RUN --budget_gflops=15
  adafocus-calibrate-exit --run=$RUN --profile=geometric:0.8
  adafocus-calibrate-exit --run=$RUN --budget_gflops=1.2 \
      --data_dir=$WS/data/minik --max_videos=500
  adafocus-calibrate-exit --run=$RUN --budget_gflops=4.9 --test_crops=3

(``python launch/calibrate_exit.py`` is the same command.)

Fits thresholds on the training split (evaluation transform) so that the
exits follow a geometric profile meeting ``--budget_gflops`` (or the profile
given), stores them in ``<run>/early_exit.json``, then scores early exit on
the evaluation split at ``--num_points`` budgets from the cost of exit step 0
(one frame of a V1 run; the glance and the policy of a two-stream run; the
glance frames of a Uni-AdaFocus run) to the full cost, or at the geometric
ratios of ``--ratios`` (default for Uni-AdaFocus: its published sweep
q = 0.05, ..., 0.95 over its K + 1 exits, thresholds fitted on
training-transform raw logits). Writes ``early_exit_curve.{png,csv,md}`` into the run, merges
an ``early_exit`` section into ``metrics.json`` and prints the table. Patches
come from the run's trained policy when stage 2 is done, else the centre
patch. An AdaFocusV2 run (docs/METHOD.md V2-7) exits on each step's largest
raw logit, with thresholds fitted on training-transform logits by the
official rule; nothing is retrained. With ``--test_crops=3`` each evaluation
video is read in three views whose logits are averaged at every exit step
(the official three-view early exit), and the curve's GFLOPs are the three
views' together. The work is ``adafocus_tf.inference.early_exit.calibrate``; see
docs/EARLY_EXIT.md.
"""
from absl import app
from absl import flags

from adafocus_tf.cli import common
from adafocus_tf.data import record_integrity
from adafocus_tf.inference.early_exit import calibrate as calibrate_lib
from adafocus_tf.inference.early_exit import threshold_file

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__, shared=("run", "data_dir", "max_videos", "progress",
                      "allow_unfinished", "test_crops"))
flags.DEFINE_float("budget_gflops", None, "Target average GFLOPs per video "
                   "of the stored thresholds (geometric profile, q by "
                   "bisection).")
flags.DEFINE_string("profile", None, "Exit profile instead of a budget: "
                    "geometric:Q, or E comma-separated weights (E exit "
                    "steps: T frames for a V1 run, 2 for a two-stream run, "
                    "K + 1 for Uni-AdaFocus).")
flags.DEFINE_integer("num_points", 10, "Budgets on the accuracy-vs-GFLOPs "
                     "curve, evenly spaced (a run without a published "
                     "sweep of ratios, or with --ratios=none).")
flags.DEFINE_string("ratios", None, "The curve's points as geometric ratios "
                    "q, comma-separated (e.g. 0.5,1,2), or 'none' for "
                    "--num_points budgets; default: the model family's "
                    "published sweep (Uni-AdaFocus: 0.05, 0.10, ..., 0.95), "
                    "else budgets.")
flags.DEFINE_integer("check_videos", None, "Also run the step-by-step early-"
                     "exit inference on this many evaluation videos and "
                     "report the work it did (default: one evaluation "
                     "batch; 0: skip).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if (FLAGS.budget_gflops is None) == (FLAGS.profile is None):
    raise app.UsageError("give exactly one of --budget_gflops and --profile")
  ratios = None
  if FLAGS.ratios is not None:
    try:
      ratios = () if FLAGS.ratios.strip() == "none" else tuple(
          float(q) for q in FLAGS.ratios.split(","))
    except ValueError:
      raise app.UsageError(f"--ratios={FLAGS.ratios}: give comma-separated "
                           "numbers or 'none'") from None
    if any(not q > 0 for q in ratios):
      raise app.UsageError(f"--ratios={FLAGS.ratios}: ratios must be > 0")
  test_crops = common.test_crops_flag()
  try:
    # A corrupt shard: one error line naming it (not a traceback).
    with record_integrity.refuse_corrupt_shards():
      section = calibrate_lib.calibrate(
          FLAGS.run, FLAGS.budget_gflops, FLAGS.profile, FLAGS.data_dir,
          FLAGS.max_videos, FLAGS.num_points, FLAGS.check_videos,
          FLAGS.progress, FLAGS.allow_unfinished, ratios, test_crops)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e))
  print(calibrate_lib.format_report(section))
  print(f"thresholds: {threshold_file.path(FLAGS.run)}")
  print(f"curve: {section['files']['png']}, {section['files']['csv']}, "
        f"{section['files']['md']}, {section['files']['json']}")


def run() -> None:
  """The ``adafocus-calibrate-exit`` console script (and
  ``launch/calibrate_exit.py``)."""
  COMMAND.run(main)

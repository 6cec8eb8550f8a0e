"""Fits AdaFocus+ early-exit thresholds to a trained run and plots the curve.

  python launch/calibrate_exit.py --run=$RUN --budget_gflops=15
  python launch/calibrate_exit.py --run=$RUN --profile=geometric:0.8
  python launch/calibrate_exit.py --run=$RUN --budget_gflops=1.2 \
      --data_dir=$WS/data/minik --max_videos=500

Fits thresholds on the training split (evaluation transform) so that the
exits follow a geometric profile meeting ``--budget_gflops`` (or the profile
given), stores them in ``<run>/early_exit.json``, then scores early exit on
the evaluation split at ``--num_points`` budgets from the cost of exit step 0
(one frame of a V1 run; the glance and the policy of a two-stream run) to
the full cost. Writes ``early_exit_curve.{png,csv,md}`` into the run, merges
an ``early_exit`` section into ``metrics.json`` and prints the table. Patches
come from the run's trained policy when stage 2 is done, else the centre
patch. The work is ``adafocus_tf.inference.early_exit.calibrate``; see
docs/EARLY_EXIT.md.
"""
import os
import sys

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf import io_utils
from adafocus_tf.inference.early_exit import calibrate as calibrate_lib
from adafocus_tf.inference.early_exit import thresholds as thresholds_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Run directory (local or s3://).")
flags.DEFINE_float("budget_gflops", None, "Target average GFLOPs per video "
                   "of the stored thresholds (geometric profile, q by "
                   "bisection).")
flags.DEFINE_string("profile", None, "Exit profile instead of a budget: "
                    "geometric:Q, or E comma-separated weights (E exit "
                    "steps: T frames for a V1 run, 2 for a two-stream run).")
flags.DEFINE_string("data_dir", None, "Prepared dataset; default: the one in "
                    "the run's config.")
flags.DEFINE_integer("max_videos", 0, "Use at most this many videos of each "
                     "split (0: all).")
flags.DEFINE_integer("num_points", 10, "Budgets on the accuracy-vs-GFLOPs "
                     "curve.")
flags.DEFINE_integer("check_videos", None, "Also run the step-by-step early-"
                     "exit inference on this many evaluation videos and "
                     "report the work it did (default: one evaluation "
                     "batch; 0: skip).")
flags.DEFINE_bool("progress", True, "Progress bars.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if (FLAGS.budget_gflops is None) == (FLAGS.profile is None):
    raise app.UsageError("give exactly one of --budget_gflops and --profile")
  try:
    section = calibrate_lib.calibrate(
        FLAGS.run, FLAGS.budget_gflops, FLAGS.profile, FLAGS.data_dir,
        FLAGS.max_videos, FLAGS.num_points, FLAGS.check_videos,
        FLAGS.progress)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e))
  print(calibrate_lib.format_report(section))
  print(f"thresholds: {thresholds_lib.path(FLAGS.run)}")
  print(f"curve: {section['files']['png']}, {section['files']['csv']}, "
        f"{section['files']['md']}")


if __name__ == "__main__":
  # Every exit through io_utils: after S3 use a plain one aborts.
  io_utils.run_main(main)

"""Prepares a video dataset: split lists + videos -> TFRecord shards.

  adafocus-prepare
      --dataset={minik,kinetics,actnet,fcvid,sthv1,sthv2,jester,custom}
      --videos=DIR --splits=DIR --out=PATH_OR_S3_URI
      [--class_index=FILE] [--lists=train:FILE,val:FILE]
      [--short_side=360] [--fps=0] [--jpeg_quality=90]
      [--videos_per_shard=64] [--workers=N] [--strict] [--noprogress]
      [--runner=DirectRunner] [-- BEAM_PIPELINE_OPTIONS...]

(``python datasets/prepare.py`` is the same command.)

Runs as one Apache Beam pipeline: on the DirectRunner by default (--workers
processes), on any other runner with --runner and Beam's pipeline options
after ``--`` (``--runner=DataflowRunner -- --project=P --region=R
--temp_location=gs://...``; see docs/SCALING.md).

Writes ``<out>/<split>/`` for every split list (shards, manifests,
meta.json, report.json; see docs/DATA_FORMAT.md). A re-run skips finished
shards, so a killed run resumes where it stopped. Bad lines and videos are
skipped with a warning naming the list file and line, and listed in
report.json.

Exit status: 0 done; 1 no video could be written, with --strict any bad
input, or the pipeline failed; 2 unusable arguments or inputs (missing
directory, no split lists, unreadable class index, a runner or pipeline
option Beam does not accept, an S3 endpoint that cannot be reached, ...),
before anything is written.
"""
import os
import sys

from absl import app
from absl import flags
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.cli import terminal
from adafocus_tf.data import prepare_lib

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__,
    shared=("dataset", "out", "short_side", "videos_per_shard", "progress"),
    defaults={"short_side": 360,
              "videos_per_shard": prepare_lib.DEFAULT_VIDEOS_PER_SHARD},
    choices={"dataset": prepare_lib.DATASETS},
    required=("dataset", "videos", "out"))
flags.DEFINE_string("videos", None,
                    "Local directory of video files or frame folders "
                    "(image_00001.jpg, ... or 00001.jpg, ...); list paths "
                    "are relative to it (jester: 20bn-jester-v1/).")
flags.DEFINE_string("splits", None,
                    "Local directory of the split lists (*train*, *val*, "
                    "*test* .txt; .csv too for custom, .csv only for "
                    "jester) and the class index file (*classInd*.txt or "
                    "category.txt; jester-v1-labels.csv for jester).")
flags.DEFINE_string("class_index", None,
                    "Class index file (one class per line, 'name' or "
                    "'index name'; jester: names only, numbered in sorted "
                    "order); default: the *classInd*.txt (or category.txt; "
                    "*labels.csv for jester) in --splits, "
                    "or for custom the sorted class names of the lists.")
flags.DEFINE_string("lists", None,
                    "Explicit split lists, SPLIT:FILE,SPLIT:FILE (relative "
                    "FILEs are in --splits); default: found by name.")
flags.DEFINE_float("fps", 0.0, "Keep at most this many frames per second of "
                   "video (0 keeps every frame; frame folders are never "
                   "subsampled).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.")
flags.DEFINE_integer("workers", os.cpu_count() or 1,
                     "DirectRunner worker processes (one shard each at a "
                     "time); 1 works in this process.")
flags.DEFINE_string("runner", "DirectRunner",
                    "Apache Beam runner (DirectRunner, DataflowRunner, "
                    "FlinkRunner, SparkRunner, PortableRunner, or a "
                    "module.Class path); its pipeline options go after "
                    "'--'.")
flags.DEFINE_bool("strict", False,
                  "Any bad input is an error: bad list lines stop before "
                  "decoding, bad videos give a non-zero exit status.")


def main(argv):
  """Prepares the dataset the flags describe; returns the exit status."""
  pipeline_args = argv[1:]
  if pipeline_args and "--" not in sys.argv:
    raise app.UsageError(f"unexpected arguments: {pipeline_args} (Beam "
                         "pipeline options go after '--')")
  try:
    summary = prepare_lib.prepare(
        FLAGS.dataset, FLAGS.videos, FLAGS.splits, FLAGS.out,
        class_index=FLAGS.class_index, lists=FLAGS.lists,
        short_side=FLAGS.short_side, fps=FLAGS.fps,
        jpeg_quality=FLAGS.jpeg_quality,
        videos_per_shard=FLAGS.videos_per_shard, workers=FLAGS.workers,
        strict=FLAGS.strict, progress=FLAGS.progress, command=sys.argv,
        runner=FLAGS.runner, pipeline_args=pipeline_args,
        quiet_beam=not terminal.shows_everything(FLAGS.log_level,
                                                 FLAGS.verbosity))
  except prepare_lib.StrictError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except (prepare_lib.PrepareError, io_utils.S3UnreachableError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except prepare_lib.PipelineError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except tf.errors.OpError as e:
    # Storage failures (S3 unreachable, disk full): the message names it.
    print(f"error: {type(e).__name__}: {e.message}", file=sys.stderr)
    return 1
  status, message = prepare_lib.exit_status(summary, FLAGS.strict)
  print(message, file=sys.stderr if status else sys.stdout)
  return status


def run() -> None:
  """The ``adafocus-prepare`` console script (and ``datasets/prepare.py``)."""
  COMMAND.run(main)

"""Exports a trained run as a SavedModel for TF Serving: its latest stage
checkpoint, with the stage-2 policy when trained.

  adafocus-export --run=$RUN --export_dir=$WS/exports/adafocus/1
  adafocus-export --run=$RUN                  # next free version
  adafocus-export --run=$RUN --early_exit     # AdaFocus+ thresholds

(``python launch/export.py`` is the same command.)

The version directory appears complete or not at all (written beside it
and renamed). Serve it with
``docker run -p 8501:8501 -v $WS/exports/adafocus:/models/adafocus
-e MODEL_NAME=adafocus tensorflow/serving``; signatures, formats and
clients: docs/SERVING.md.
"""
from absl import app
from absl import flags

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.serving import export
from adafocus_tf.serving import module

FLAGS = flags.FLAGS
COMMAND = common.Command(__name__, shared=("run", "workspace", "early_exit"),
                         required=("run",))
flags.DEFINE_string("export_dir", None, "Version directory to write, "
                    "<model>/<N>; default: the next version under "
                    "<workspace>/exports/<model_name>.")
flags.DEFINE_string("model_name", "adafocus", "Model directory name under "
                    "<workspace>/exports (TF Serving's MODEL_NAME).")
flags.DEFINE_string("class_names", None, "Text file of class names, one a "
                    "line (default: the run's data meta.json).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  export_dir = FLAGS.export_dir or export.next_version_dir(
      io_utils.join(FLAGS.workspace, "exports", FLAGS.model_name))
  names = None
  if FLAGS.class_names:
    names = [line.strip() for line in
             io_utils.read_text(FLAGS.class_names).splitlines()
             if line.strip()]
  try:
    meta = export.export_run(FLAGS.run, export_dir,
                             early_exit_on=FLAGS.early_exit,
                             class_names=names)
  except (FileExistsError, FileNotFoundError, RuntimeError, ValueError) as e:
    raise app.UsageError(str(e))
  print(f"exported {export_dir}: {meta['patches']} patches, early exit "
        f"{'on' if meta['early_exit'] else 'off'}, "
        f"{meta['gflops_per_video']:.4g} GFLOPs per video")
  for name, sig in meta["signatures"].items():
    (key, (dtype, shape)), = sig["inputs"].items()
    print(f"  {name}: {key} {dtype} {shape}")
  print(f"  outputs: {', '.join(module.OUTPUTS)}")


def run() -> None:
  """The ``adafocus-export`` console script (and ``launch/export.py``)."""
  COMMAND.run(main)

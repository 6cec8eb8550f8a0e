"""Exports a trained run as a SavedModel for TF Serving (or a TensorFlow
Lite model): its latest stage checkpoint, with the stage-2 policy when
trained.

  adafocus-export --run=$RUN --export_dir=$WS/exports/adafocus/1
  adafocus-export --run=$RUN                  # next free version
  adafocus-export --run=$RUN --early_exit     # AdaFocus+ thresholds
  adafocus-export --run=$RUN --format=tflite  # $WS/exports/adafocus-tflite/N
  adafocus-export --run=$RUN --format=predictor   # ready to predict here

(``python launch/export.py`` is the same command.)

The version directory appears complete or not at all (written beside it
and renamed). Serve it with
``docker run -p 8501:8501 -v $WS/exports/adafocus:/models/adafocus
-e MODEL_NAME=adafocus tensorflow/serving``; signatures, formats and
clients: docs/SERVING.md. ``--format=tflite`` writes ``model.tflite`` and
``adafocus.json`` (``serving/tflite_model.py``; run it with
``adafocus-serve-client --tflite=DIR``). ``--format=predictor`` writes no
export: it does ahead of time, on this machine, what the first
``adafocus-predict`` on the run would (``predictor.prepare``: the compiled
forms and TFLite models cached in the run, the backends timed and the
fastest kept for ``--backend=auto``), so that the first prediction starts
warm.
"""
from absl import app
from absl import flags

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.serving import export
from adafocus_tf.serving import tflite_model

FLAGS = flags.FLAGS
COMMAND = common.Command(__name__, shared=("run", "workspace", "early_exit",
                                           "allow_unfinished"),
                         required=("run",))
SAVED_MODEL = "saved_model"
PREDICTOR = "predictor"
flags.DEFINE_enum("format", SAVED_MODEL,
                  [SAVED_MODEL, tflite_model.FORMAT, PREDICTOR],
                  "saved_model: TF Serving's SavedModel; tflite: a float32 "
                  "TensorFlow Lite flatbuffer (fastest on CPUs, with "
                  "XNNPACK) and its metadata; predictor: no export, the "
                  "run prepared for adafocus-predict on this machine "
                  "(forms cached, backends timed).")
flags.DEFINE_integer("tflite_batch", 1, "Videos per call fixed in the "
                     "TFLite model (its loader runs any number in chunks).")
flags.DEFINE_string("export_dir", None, "Version directory to write, "
                    "<model>/<N>; default: the next version under "
                    "<workspace>/exports/<model_name> (<model_name>-tflite "
                    "for --format=tflite, which TF Serving cannot load).")
flags.DEFINE_string("model_name", "adafocus", "Model directory name under "
                    "<workspace>/exports (TF Serving's MODEL_NAME).")
flags.DEFINE_string("class_names", None, "Text file of class names, one a "
                    "line (default: the run's data meta.json).")


def _prepare_predictor() -> None:
  """``--format=predictor``: ``predictor.prepare`` on the run."""
  if FLAGS.export_dir:
    raise app.UsageError("--format=predictor writes no export: drop "
                         "--export_dir")
  # Imported here: the export formats do not need the predictor's modules.
  from adafocus_tf.inference import predictor  # pylint: disable=g-import-not-at-top
  from adafocus_tf.inference import backend_calibration  # pylint: disable=g-import-not-at-top
  try:
    backends = predictor.prepare(FLAGS.run)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  print(f"prepared {FLAGS.run} for prediction on this machine: backend "
        f"{backend_calibration.describe(backends)} (--backend=auto)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.format == PREDICTOR:
    _prepare_predictor()
    return
  tflite = FLAGS.format == tflite_model.FORMAT
  model_name = FLAGS.model_name + ("-" + tflite_model.FORMAT if tflite
                                   else "")
  export_dir = FLAGS.export_dir or export.next_version_dir(
      io_utils.join(FLAGS.workspace, "exports", model_name))
  names = None
  if FLAGS.class_names:
    names = [line.strip() for line in
             io_utils.read_text(FLAGS.class_names).splitlines()
             if line.strip()]
  try:
    if tflite:
      meta = tflite_model.export_tflite(
          FLAGS.run, export_dir, batch_size=FLAGS.tflite_batch,
          early_exit_on=FLAGS.early_exit, class_names=names,
          allow_unfinished=FLAGS.allow_unfinished)
    else:
      meta = export.export_run(FLAGS.run, export_dir,
                               early_exit_on=FLAGS.early_exit,
                               class_names=names,
                               allow_unfinished=FLAGS.allow_unfinished)
  except (FileExistsError, FileNotFoundError, RuntimeError, ValueError) as e:
    raise app.UsageError(str(e))
  print(f"exported {export_dir} ({FLAGS.format}): {meta['patches']} patches, "
        f"early exit {'on' if meta['early_exit'] else 'off'}, "
        f"{meta['gflops_per_video']:.4g} GFLOPs per video")
  if tflite:
    lite = meta[tflite_model.FORMAT]
    for key, (dtype, shape) in lite["inputs"].items():
      print(f"  input {key}: {dtype} {shape} (normalised)")
    print(f"  outputs: {', '.join(lite['outputs'])}")
    return
  for name, sig in meta["signatures"].items():
    (key, (dtype, shape)), = sig["inputs"].items()
    print(f"  {name}: {key} {dtype} {shape}")
  outputs = next(iter(meta["signatures"].values()))["outputs"]
  print(f"  outputs: {', '.join(outputs)}")


def run() -> None:
  """The ``adafocus-export`` console script (and ``launch/export.py``)."""
  COMMAND.run(main)

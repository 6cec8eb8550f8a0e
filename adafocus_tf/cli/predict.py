"""Predicts the classes of video files and frame folders with a trained run.

  adafocus-predict --run=$RUN clip.mp4 frames_dir/ ...
  adafocus-predict --run=$RUN clip.mp4 --visualize=out/ --top_k=3
  adafocus-predict --run=$RUN clip.mp4 --json > predictions.json
  adafocus-predict --run=$RUN clip.mp4 --backend=tf

(``python launch/predict.py`` is the same command.)

Each input is read as evaluation reads a video of the run's data (stored as
``datasets/prepare.py`` stored that data, TSN centre frames, short side
resized and centre-cropped, normalised; see adafocus_tf/inference/predictor.py)
and gets: the top classes (names from the data's meta.json), the sampled
frame indices (a Uni-AdaFocus run's candidates, with the glance frames and
the ones it chose), each region's box in pixels of the original frame (P x
P patches, or Uni-AdaFocus's deformable regions at their own size), the step
it exited at and the GFLOPs spent up to it. ``--visualize=DIR`` writes
``DIR/<name>.png`` (contact sheet) and ``DIR/<name>.gif``. An input that
cannot be read is reported with its reason; the others are still
predicted, and the exit status is then 1. ``--backend`` chooses what runs
the model (``Predictor``; docs/BENCHMARKS.md has the measurements behind
the default).
"""
import json
import os
import sys

from absl import app
from absl import flags

from adafocus_tf.cli import common
from adafocus_tf.inference import clips
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import visualize

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__, shared=("run", "patches", "json", "early_exit",
                      "allow_unfinished"),
    choices={"patches": (predict_lib.AUTO,) + predict_lib.FILE_CHOICES})
flags.DEFINE_integer("top_k", 5, "Classes to report per input.")
flags.DEFINE_string("visualize", None, "Write a PNG contact sheet and an "
                    "animated GIF per input into this folder.")
flags.DEFINE_enum("backend", predict_lib.DEFAULT_BACKEND, predict_lib.BACKENDS,
                  "What runs the model: tflite (the whole model as a "
                  "TFLite model under XNNPACK; policy or centre patches, "
                  "not AdaFocusV2), hybrid (the glance network as a TFLite "
                  "model, the rest TensorFlow's kernels), tf (TensorFlow's "
                  "kernels) or auto: the fastest of those that run here, "
                  "timed once on this CPU and thread count and remembered "
                  "(tf on a GPU; ADAFOCUS_AUTO_BACKEND=order takes the "
                  "first that runs, untimed). TFLite models are converted "
                  "on first use and cached in <run>/tflite/, the compiled "
                  "model in <run>/ready/.")


def _stem(path: str, used: set) -> str:
  """A file name for an input's pictures, unique within this invocation."""
  base = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  base = base or "input"
  stem, n = base, 1
  while stem in used:
    n += 1
    stem = f"{base}-{n}"
  used.add(stem)
  return stem


def _text(result: dict, class_name) -> str:
  """A human-readable block for one input's JSON result."""
  lines = [f"{result['input']} ({result['kind']}, {result['num_frames']} "
           f"frames of {result['frame_width']}x{result['frame_height']})"]
  for rank, top in enumerate(result["top_k"], 1):
    lines.append(f"  {rank}. {class_name(top['class']):<30} "
                 f"{top['prob']:.4f}")
  how = ("early exit" if result["early_exit"] else "all steps")
  lines.append(f"  exit after step {result['exit_step'] + 1}/"
               f"{result['num_steps']} ({how}), {result['gflops']:.3f} "
               "GFLOPs")
  if result["glance_frames"]:
    lines.append("  glance frames: " + ", ".join(
        str(k) for k in result["glance_frames"]))
  chosen = result["patch_positions"] != list(range(len(
      result["sampled_frames"])))
  if chosen:
    lines.append(f"  {len(result['patch_frames'])} of "
                 f"{len(result['sampled_frames'])} candidates chosen")
  if not any(result["patches_read"]):
    lines.append("  exited before the focus network read any region (those "
                 "below were not run)")
  lines.append(f"  {result['plan']} ({result['patches']}), [x0, y0, x1, y1] "
               "in original pixels:")
  for k, position, box, read in zip(result["patch_frames"],
                                    result["patch_positions"],
                                    result["boxes"], result["patches_read"]):
    lines.append(f"    frame {k:>6}"
                 + (f" (candidate {position})" if chosen else "") + ": "
                 + ", ".join(f"{v:.1f}" for v in box)
                 + ("" if read else "  (not read: exited before)"))
  if "visualization" in result:
    lines.append(f"  pictures: {result['visualization']['png']}, "
                 f"{result['visualization']['gif']}")
  return "\n".join(lines)


def main(argv):
  inputs = argv[1:]
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if not inputs:
    raise app.UsageError("name at least one video file or frame folder")
  if FLAGS.top_k < 1:
    raise app.UsageError("--top_k must be at least 1")
  try:
    predictor = predict_lib.Predictor(
        FLAGS.run, FLAGS.patches, early_exit=FLAGS.early_exit,
        backend=FLAGS.backend, allow_unfinished=FLAGS.allow_unfinished)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  for warning in predictor.warnings:
    print(f"warning: {warning}", file=sys.stderr)
  names = predictor.class_names

  def class_name(c):
    return names[c] if names else f"class {c}"

  results, used, failed = [], set(), 0
  for path in inputs:
    try:
      clip = predictor.read(path)
    except clips.BadInput as e:
      failed += 1
      print(f"error: {path}: {e}", file=sys.stderr)
      results.append({"input": path, "ok": False, "error": str(e)})
      continue
    prediction = predictor.predict(clip, FLAGS.top_k)
    result = prediction.to_json()
    if FLAGS.visualize:
      png, gif = visualize.write_prediction(FLAGS.visualize,
                                            _stem(path, used), clip,
                                            prediction, class_name)
      result["visualization"] = {"png": png, "gif": gif}
    results.append(result)
    if not FLAGS.json:
      print(_text(result, class_name), flush=True)
  if FLAGS.json:
    print(json.dumps({
        "run": FLAGS.run,
        **predictor.weights.provenance(),
        "patches": predictor.patches,
        "backend": predictor.backend,
        "class_names": predictor.class_names_source
                       if names else None,
        "gflops_per_video": predictor.gflops_per_video(),
        "warnings": predictor.warnings,
        "results": results,
    }, indent=2))
  elif failed:
    print(f"{failed} of {len(inputs)} input(s) could not be read",
          file=sys.stderr)
  return 1 if failed else 0


def run() -> None:
  """The ``adafocus-predict`` console script (and ``launch/predict.py``)."""
  COMMAND.run(main)

"""Asks a TF Serving server running an AdaFocus export about videos.

  adafocus-serve-client --url=http://localhost:8501 --model=adafocus clip.mp4
  adafocus-serve-client --grpc=localhost:8500 --model=adafocus clip.mp4 frames_dir/
  adafocus-serve-client --signature=serving_default --json clip.mp4

  adafocus-serve-client --tflite=$WS/exports/adafocus-tflite/1 clip.mp4

(``python launch/serve_client.py`` is the same command.)

Each argument is a video file (decoded with PyAV) or a frame folder
(``image_00001.jpg``...). By default the client sends the T frames of TSN
centre sampling (T from the model's metadata; every frame to a two-stream
model, which samples its glance and focus frames itself) as a serialized
SequenceExample of JPEGs to the ``tf_example`` signature;
``--signature=serving_default`` sends raw uint8 pixels instead. The
answers are printed as text, or with ``--json`` as one JSON line per video.
With ``--tflite`` no server is involved: the TensorFlow Lite export
(``adafocus-export --format=tflite``) runs in this process, with XNNPACK on
``--threads`` CPU threads, on the same frames as ``serving_default`` gets.
Request and answer formats: docs/SERVING.md.
"""
import json
import sys

from absl import app
from absl import flags

from adafocus_tf.cli import common
from adafocus_tf.data import video_decode
from adafocus_tf.serving import client as serving_client
from adafocus_tf.serving import grpc_client
from adafocus_tf.serving import rest_client
from adafocus_tf.serving import tflite_model
from adafocus_tf.serving import tflite_runner

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__, shared=("num_frames", "short_side", "json"),
    defaults={"num_frames": 0, "short_side": 0})
flags.DEFINE_string("url", "http://localhost:8501", "REST root of the "
                    "server (used unless --grpc is given).")
flags.DEFINE_string("grpc", None, "host:port of the server's gRPC port "
                    "(8500); use gRPC instead of REST.")
flags.DEFINE_string("model", "adafocus", "Model name (the server's "
                    "MODEL_NAME).")
flags.DEFINE_integer("version", None, "Model version (default: the latest "
                     "the server has).")
flags.DEFINE_enum("signature", serving_client.EXAMPLE_SIGNATURE,
                  serving_client.SIGNATURES, "tf_example: JPEG frames in a "
                  "SequenceExample (compact); serving_default: uint8 pixels.")
flags.DEFINE_float("timeout", 60.0, "Seconds per request.")
flags.DEFINE_string("tflite", None, "A TensorFlow Lite export (version "
                    "directory or model.tflite) to run here instead of "
                    "asking a server.")
flags.DEFINE_integer("threads", tflite_runner.DEFAULT_THREADS, "CPU threads "
                     "of the TFLite interpreter (--tflite).")


def make_client():
  if FLAGS.grpc:
    return grpc_client.GrpcClient(FLAGS.grpc, FLAGS.model, FLAGS.version,
                                  FLAGS.timeout)
  return rest_client.RestClient(FLAGS.url, FLAGS.model, FLAGS.version,
                                FLAGS.timeout)


def _print(path, pred):
  if FLAGS.json:
    print(json.dumps({"video": path, **serving_client.to_json(pred)}))
  else:
    print(serving_client.format_prediction(path, pred))


def run_tflite(paths) -> int:
  """Predicts each video with the TFLite export in this process."""
  try:
    model = tflite_model.TFLiteModel(FLAGS.tflite, FLAGS.threads)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  num_frames = FLAGS.num_frames or model.metadata["num_frames"]
  failed = 0
  for path in paths:
    try:
      frames = serving_client.frames_to_send(path, num_frames,
                                             FLAGS.short_side)
      out = model.predict_frames(
          serving_client.decode_jpegs(frames.jpegs)[None])
    except (video_decode.BadInput, ValueError) as e:
      print(f"{path}: error: {e}", file=sys.stderr)
      failed += 1
      continue
    _print(path, {k: v[0] for k, v in out.items()})
  return 1 if failed else 0


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give at least one video file or frame folder")
  if FLAGS.tflite:
    return run_tflite(paths)
  client = make_client()
  num_frames = FLAGS.num_frames
  if not num_frames:
    try:
      num_frames = client.num_frames()
    except (serving_client.ServingError, ValueError) as e:
      print(f"model metadata unavailable ({e})", file=sys.stderr)
  failed = 0
  for path in paths:
    try:
      instance, inputs = serving_client.video_inputs(
          path, FLAGS.signature, num_frames, FLAGS.short_side)
      if FLAGS.grpc:
        (pred,) = client.predict(FLAGS.signature, inputs)
      else:
        (pred,) = client.predict(FLAGS.signature, [instance])
    except (serving_client.ServingError, video_decode.BadInput,
            ValueError) as e:
      print(f"{path}: error: {e}", file=sys.stderr)
      failed += 1
      continue
    _print(path, pred)
  return 1 if failed else 0


def run() -> None:
  """The ``adafocus-serve-client`` console script (and
  ``launch/serve_client.py``)."""
  COMMAND.run(main)

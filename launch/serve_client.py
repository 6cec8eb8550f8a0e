"""Asks a TF Serving server running an AdaFocus export about videos.

  python launch/serve_client.py --url=http://localhost:8501 --model=adafocus clip.mp4
  python launch/serve_client.py --grpc=localhost:8500 --model=adafocus clip.mp4 frames_dir/
  python launch/serve_client.py --signature=serving_default --json clip.mp4

Each argument is a video file (decoded with PyAV) or a frame folder
(``image_00001.jpg``...). By default the client sends the T frames of TSN
centre sampling (T from the model's metadata; every frame to a two-stream
model, which samples its glance and focus frames itself) as a serialized
SequenceExample of JPEGs to the ``tf_example`` signature;
``--signature=serving_default`` sends raw uint8 pixels instead. Request
and answer formats: docs/SERVING.md.
"""
import json
import os
import sys

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf.data import video_decode
from adafocus_tf.serving import client as serving_client

FLAGS = flags.FLAGS
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
flags.DEFINE_integer("num_frames", 0, "Frames to send: T (TSN centre "
                     "sampling), or -1 for every frame (a two-stream model); "
                     "0: ask the server's metadata (and send every frame to "
                     "tf_example if it does not say).")
flags.DEFINE_integer("short_side", 0, "Resize frames to this short side "
                     "before sending (0: as decoded). Datasets prepared "
                     "with datasets/prepare.py store 360.")
flags.DEFINE_float("timeout", 60.0, "Seconds per request.")
flags.DEFINE_bool("json", False, "Print every output as JSON, one line per "
                  "video.")


def make_client():
  if FLAGS.grpc:
    return serving_client.GrpcClient(FLAGS.grpc, FLAGS.model, FLAGS.version,
                                     FLAGS.timeout)
  return serving_client.RestClient(FLAGS.url, FLAGS.model, FLAGS.version,
                                   FLAGS.timeout)


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give at least one video file or frame folder")
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
    if FLAGS.json:
      print(json.dumps({"video": path, **serving_client.to_json(pred)}))
    else:
      print(serving_client.format_prediction(path, pred))
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)

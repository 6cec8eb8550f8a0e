"""A TFLite export timed in a process of its own, on request.

``benchmarks/inference.py`` times every user path in one process; a server
of the TFLite export (``adafocus-export --format=tflite``) runs it alone.
This worker loads the export in a fresh process, as such a server would,
and times ``TFLiteModel.predict_frames`` on uint8 frames when asked over a
pipe, so that its calls still alternate with the other paths':

  python benchmarks/tflite_worker.py --export=DIR --raw_side=256 --threads=2

Protocol (as ``torch_worker.py``): one JSON object per line on stdin, one
answer per line on stdout.
  {"op": "predict", "batch": B}  -> {"seconds": s} one timed call (the
                                    first call of a batch size is a warm-up,
                                    run before the timed one)
  {"op": "quit"}
"""
import argparse
import json
import os
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from adafocus_tf.serving import tflite_model  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--export", required=True,
                      help="the TFLite version directory")
  parser.add_argument("--raw_side", type=int, required=True,
                      help="side of the uint8 frames sent (centre-cropped)")
  parser.add_argument("--threads", type=int, default=2,
                      help="interpreter threads (and TensorFlow's, which "
                      "preprocess)")
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  model = tflite_model.TFLiteModel(args.export, num_threads=args.threads)
  frames = model.cfg.data.num_frames
  inputs = {}
  print(json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "quit":
      break
    b = int(request["batch"])
    if b not in inputs:
      inputs[b] = np.random.default_rng(b).integers(
          0, 256, (b, frames, args.raw_side, args.raw_side, 3),
          dtype=np.uint8)
      model.predict_frames(inputs[b])  # warm-up
    start = time.perf_counter()
    model.predict_frames(inputs[b])
    print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
  main()

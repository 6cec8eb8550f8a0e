"""Where a V1 or AdaFocusV2 model's time goes, part by part (issue 27).

  python benchmarks/parts.py --method=v2 --preset=actnet --batch_size=1 \
      [--repeats=7] [--threads=2]

Random weights, batch norms folded (as every user path loads a run). In
alternating rounds (one call of each per round, medians), on one batch of
random frames:

  * ``whole``: the recognizer's whole-clip forward pass in one compiled
    function (what ``Predictor(backend="tf")`` runs);
  * ``glance``, ``policy``, ``head``: its stages, each compiled on its own
    (``inference_parts``, as ``adafocus-profile`` times them): the glance
    network on every frame; the policy placing the patches; the patches
    cut, the focus network and the classifier;
  * ``focus_net``: the focus network alone on ready-cut patches
    ([B x T, P, P, 3]), so that ``head`` minus it is the crop and the
    classifier.

Each row gives its multiply-accumulates (the family's cost,
``adafocus-flops``), its speed and its fraction of the float32 matmul
peak measured in the same run before and after. The stages' sum beside
``whole`` shows what compiling them apart costs. Prints JSON.
"""
import json
import os
import statistics
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.families import registry
from adafocus_tf.inference import loading
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import inference_parts
from benchmarks import side_by_side
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_string("method", "v2", "Model family's method (v1 or v2).")
flags.DEFINE_string("preset", "actnet", "Preset to time.")
flags.DEFINE_integer("batch_size", 1, "Videos per call.")
flags.DEFINE_integer("repeats", 7, "Rounds (one timed call of each part "
                     "per round).")
flags.DEFINE_integer("threads", 2, "TensorFlow's intra-op threads (0: "
                     "TensorFlow's default).")
flags.DEFINE_integer("matmul_size", 2048, "Side of the matmul measuring the "
                     "float32 peak.")


def build_recognizer(cfg):
  """The family's recognizer with random weights, batch norms folded."""
  model = factory.build_model(cfg)
  model.build_all()
  policy = (None if registry.of(cfg).policy_in_model else
            greedy.GreedyPolicy.build(cfg, model.glance.map_shape))
  recognizer = loading.build(cfg, model, policy)
  batchnorm_folding.fold_at_inference(model)
  return recognizer


def main(_):
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  cfg = config_lib.get_preset(FLAGS.preset, method=FLAGS.method)
  d, m = cfg.data, cfg.model
  b, t = FLAGS.batch_size, d.num_frames
  cost = flops.video_macs(cfg)["per_video"]
  load_start = side_by_side.loadavg()
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  recognizer = build_recognizer(cfg)
  choice = recognizer.default_choice()
  batch = {"frames": tf.random.normal([b, t, d.frame_size, d.frame_size, 3]),
           "seed": tf.zeros([b, 2], tf.int64)}
  patches = tf.random.normal([b * t, m.patch_size, m.patch_size, 3])
  whole = tf.function(lambda x: recognizer(x, choice).probs, autograph=False)
  focus = tf.function(recognizer.model.focus, autograph=False)
  stages = inference_parts.inference_parts(recognizer, choice)

  # Each stage is timed on the outputs of the ones before it.
  inputs, x = {}, dict(batch)
  for name, fn in stages:
    inputs[name] = x
    x = fn(x)
  calls = {"whole": lambda: whole(batch).numpy(),
           "focus_net": lambda: focus(patches).numpy()}
  for name, fn in stages:
    calls[name] = lambda fn=fn, name=name: tf.nest.map_structure(
        lambda y: y.numpy() if isinstance(y, tf.Tensor) else y,
        fn(inputs[name]))
  macs = {"whole": cost["total"], "glance": cost["glance"],
          "policy": cost["policy"],
          "head": cost["focus"] + cost["classifier"],
          "focus_net": cost["focus"]}
  for call in calls.values():  # compile and warm up
    call()
    call()
  times = {name: [] for name in calls}
  for _ in range(FLAGS.repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - start)
  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  rows = []
  for name, seconds in times.items():
    s = statistics.median(seconds)
    gmacs = macs[name] * b / s / 1e9
    rows.append({"part": name, "median_s": round(s, 4),
                 "gmacs": round(macs[name] * b / 1e9, 3),
                 "gmacs_per_s": round(gmacs, 1),
                 "fraction_of_peak": round(gmacs / peak, 3),
                 "s_per_call": [round(v, 4) for v in seconds]})
  stage_sum = sum(statistics.median(times[name]) for name, _ in stages)
  print(json.dumps({
      "method": FLAGS.method, "preset": FLAGS.preset, "batch_size": b,
      "threads": FLAGS.threads, "patch_choice": choice,
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "loadavg_start": load_start, "loadavg_end": side_by_side.loadavg(),
      "matmul_peak_gmacs_per_s": round(peak, 1),
      "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
      "stages_sum_s": round(stage_sum, 4),
      "stages_sum_over_whole": round(
          stage_sum / statistics.median(times["whole"]), 3),
      "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

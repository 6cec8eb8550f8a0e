"""Inference speed of the whole AdaFocus model, in process and exported.

  python benchmarks/inference.py [--preset=minik] [--batch_sizes=1,32]
      [--repeats=3] [--exit_fractions=0.5,0.75] [--parts_batch=32]

Randomly initialised networks of a preset (the paper's minik setting by
default: T=16 frames of 224x224, MobileNetV2 glance, ResNet-50 focus on
P=128 patches, policy actor, GRU classifier). The speed of a network does
not depend on its weights, so no training is needed. For each batch size:

  * ``in_process``: one compiled tf.function of the model's ``Recognizer``
    (glance -> greedy policy -> patches -> focus -> classifier) through
    ``ServingModule.predict``, the exported graph's body, on normalised
    float frames;
  * ``saved_model``: the same module written with
    ``export.write_saved_model`` (the graph ``export_run`` writes, here with
    untrained weights instead of a run's checkpoints), loaded with
    ``tf.saved_model.load`` and called through ``serving_default`` on uint8
    frames of 256x256 (its preprocessing crops the centre 224x224).

Then, at the largest batch:
  * the time of each of the recognizer's stages (glance; policy; head:
    patches, focus, classifier) from ``inference_parts.inference_parts``, each its
    own compiled function;
  * early exit (``inference.early_exit.runner.EarlyExitRunner`` on the
    model's ``Recognizer``, the policy stepped frame by frame on the running
    videos) at budgets given as fractions of the full cost. Untrained
    networks have no meaningful confidence, so the thresholds are fitted
    (``thresholds.fit_thresholds``) on the step probabilities of the timed
    batch itself, to the geometric exit profile whose expected cost is
    ``fraction x`` the full cost (``ratio_for_budget``); the fraction of
    frames actually processed is reported beside it.

MACs come from ``flops.video_macs``; the float32 matmul peak is measured in
the same run, before and after.
"""
import json
import os
import statistics
import sys
import tempfile

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf import serving
from adafocus_tf.inference import loading
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import thresholds as thresholds_lib
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import inference_parts
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "minik", "Preset to time.")
flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes to time.")
flags.DEFINE_integer("repeats", 3, "Timed calls; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")
flags.DEFINE_list("exit_fractions", ["0.5", "0.75"],
                  "Early-exit budgets as fractions of the full cost "
                  "(empty: skip).")
flags.DEFINE_integer("parts_batch", 0, "Batch of the per-part and early-exit "
                     "timings (0: the largest of --batch_sizes).")
flags.DEFINE_boolean("saved_model", True, "Also time the exported model.")


def rate(batch, seconds, macs_per_video):
  return {"videos_per_s": round(batch / seconds, 3),
          "s_per_video": round(seconds / batch, 4),
          "gmacs_per_s": round(macs_per_video * batch / seconds / 1e9, 1),
          "median_s_per_call": round(seconds, 3)}


def main(_):
  cfg = config_lib.get_preset(FLAGS.preset)
  d = cfg.data
  t = d.num_frames
  cost = flops.video_macs(cfg)
  video_macs = cost["per_frame"] * t  # policy patches: every part
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)

  model = factory.build_model(cfg)
  model.build_all()
  recognizer = loading.build(
      cfg, model, greedy.GreedyPolicy.build(cfg, model.glance.map_shape))
  module = module_lib.ServingModule(
      recognizer, [f"class_{i}" for i in range(d.num_classes)])
  predict = tf.function(
      lambda f: module.predict({"frames": f})["probabilities"],
      autograph=False)

  serve = None
  if FLAGS.saved_model:
    export_dir = os.path.join(tempfile.mkdtemp(), "1")
    export.write_saved_model(module, export_dir, {"benchmark": True})
    serve = tf.saved_model.load(export_dir).signatures[
        serving.SERVING_DEFAULT]

  rows = []
  batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  for b in batch_sizes:
    frames = tf.random.normal([b, t, d.frame_size, d.frame_size, 3])
    s, all_s = timing.timed(lambda: predict(frames).numpy(), FLAGS.repeats)
    rows.append(dict(model="in_process", batch_size=b,
                     **rate(b, s, video_macs),
                     s_per_call=[round(x, 3) for x in all_s]))
    if serve is not None:
      raw = tf.random.uniform([b, t, 256, 256, 3], 0, 256, tf.int32)
      raw = tf.cast(raw, tf.uint8)
      s, all_s = timing.timed(lambda: serve(frames=raw)["probabilities"].numpy(),
                       FLAGS.repeats)
      rows.append(dict(model="saved_model", batch_size=b,
                       **rate(b, s, video_macs),
                       s_per_call=[round(x, 3) for x in all_s]))

  pb = FLAGS.parts_batch or max(batch_sizes)
  frames = tf.random.normal([pb, t, d.frame_size, d.frame_size, 3])
  parts = inference_parts.inference_parts(recognizer)
  batch = {"frames": frames, "seed": tf.zeros([pb, 2], tf.int64)}
  inference_parts.run_parts(parts, batch)  # warm-up (traces each part)
  timings = {}
  for _ in range(FLAGS.repeats):
    out = inference_parts.run_parts(parts, batch, timings=timings)
  part_macs = {"glance": cost["glance"], "policy": cost["policy"],
               "head": cost["focus"] + cost["classifier"]}
  part_rows = []
  total = sum(statistics.median(v) for v in timings.values())
  for name, v in timings.items():
    s = statistics.median(v)
    part_rows.append({
        "part": name, "median_s": round(s, 3),
        "share_of_time": round(s / total, 3),
        "share_of_macs": round(part_macs[name] / cost["per_frame"], 3),
        "gmacs_per_s": round(part_macs[name] * t * pb / s / 1e9, 1),
        "fraction_of_peak": round(part_macs[name] * t * pb / s / 1e9 / peak,
                                  3)})

  exit_rows = []
  fractions = [float(x) for x in FLAGS.exit_fractions if x]
  if fractions:
    conf = thresholds_lib.confidences(out["probs"])
    runner = runner_lib.EarlyExitRunner(recognizer, cost)
    never = [thresholds_lib.NEVER] * t
    full = runner.predict(batch, never)  # warm-up: traces the steps
    s_full, _ = timing.timed(lambda: runner.predict(batch, never),
                             FLAGS.repeats, warmup=0)
    exit_rows.append({"budget_fraction": 1.0, "frames_fraction": 1.0,
                      **rate(pb, s_full, video_macs)})
    del full
    for frac in fractions:
      q = thresholds_lib.ratio_for_budget(frac * video_macs / 1e9,
                                          runner.step_macs)
      thresholds = thresholds_lib.fit_thresholds(
          conf, thresholds_lib.geometric_profile(q, t))
      res = runner.predict(batch, thresholds)
      done = res.step_videos.sum() / (pb * t)
      s, _ = timing.timed(lambda th=thresholds: runner.predict(batch, th),
                          FLAGS.repeats, warmup=0)
      exit_rows.append({"budget_fraction": frac, "geometric_q": round(q, 4),
                        "frames_fraction": round(done, 3),
                        **rate(pb, s, video_macs * done),
                        "speedup_vs_no_exit": round(s_full / s, 2)})

  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  for r in rows + exit_rows:
    r["fraction_of_peak"] = round(r["gmacs_per_s"] / peak, 3)
  print(json.dumps({
      "preset": FLAGS.preset, "cpu_cores": os.cpu_count(),
      "gmacs_per_video": round(video_macs / 1e9, 3),
      "macs_per_frame": cost,
      "matmul_peak_gmacs_per_s": round(peak, 1),
      "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
      "rows": rows, "parts_batch": pb, "parts": part_rows,
      "early_exit": exit_rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

"""Inference speed of the whole AdaFocus model through every user path.

  python benchmarks/inference.py [--preset=minik] [--batch_sizes=1,32]
      [--repeats=3] [--exit_fractions=0.5,0.75] [--parts_batch=32]
  python benchmarks/inference.py --preset=actnet --batch_sizes=1,8 \
      --repeats=5 --torch --exit_fractions= --parts_batch=1

Randomly initialised networks of a preset (the paper's minik setting by
default: T=16 frames of 224x224, MobileNetV2 glance, ResNet-50 focus on
P=128 patches, policy actor, GRU classifier). The speed of a network does
not depend on its weights, so no training is needed; the weights are
written as a run directory (stage 2 done: model and policy actor) so that
the user paths load them as they load a trained run. For each batch size,
one call of each path per round, the paths alternating, medians over
``--repeats`` rounds:

  * ``predictor``: ``Predictor(run).predict_frames`` on normalised float
    frames, its default backend;
  * ``predictor_<backend>``: the same with ``backend=<backend>``: ``tf``
    (TensorFlow's kernels), ``hybrid`` (the glance network as a TFLite
    model under XNNPACK, the rest under TensorFlow's kernels) or ``tflite``
    (the whole recognizer as a TFLite model); the TFLite models are
    converted once and cached in the run directory (``*_load_s``: the
    predictor's construction, conversion included);
  * ``in_process``: one compiled tf.function of ``ServingModule.predict``,
    the exported graph's body, on normalised float frames;
  * ``in_process_unfolded``: the same with the backbones' batch norms run
    as Keras layers (``TrainedRun(run).recognizer(fold_batch_norms=False)``), not folded
    into their convolutions as every user path loads them;
  * ``saved_model``: the graph ``export_run`` writes, loaded with
    ``tf.saved_model.load`` and called through ``serving_default`` on uint8
    frames of 256x256 (its preprocessing crops the centre 224x224);
  * ``tflite``: the ``export_tflite`` model (batch 1 in the flatbuffer)
    through ``TFLiteModel.predict_frames`` on the same uint8 frames;
  * ``tflite_process``: the same export loaded in a process of its own
    (``benchmarks/tflite_worker.py``, as a server of it runs), asked for
    one timed call per round over a pipe;
  * ``torch`` (with ``--torch``): the PyTorch re-creation of the reference
    V1 model (``benchmarks/torch_worker.py``, in the parity tests' torch
    interpreter), one call per round between the others'; each row then
    gives its speed-up over it: the ratio of the medians (``vs_torch``)
    and the median over rounds of each call's ratio to the reference call
    right after it (``vs_torch_paired``, less moved by a slow spell of the
    machine).

Then, at ``--parts_batch``:
  * the time of each of the recognizer's stages (glance; policy; head:
    patches, focus, classifier) from ``inference_parts.inference_parts``,
    each its own compiled function (TensorFlow's kernels), and the glance
    network alone as a TFLite model (``glance_tflite``, one video per call);
  * early exit (``inference.early_exit.runner.EarlyExitRunner`` on the
    model's ``Recognizer``, the policy stepped frame by frame on the running
    videos) at budgets given as fractions of the full cost. Untrained
    networks have no meaningful confidence, so the thresholds are fitted
    (``threshold_fit.fit_thresholds``) on the step probabilities of the timed
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
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.inference import loading
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import inference_parts
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.serving import tflite_ops
from adafocus_tf.serving import tflite_runner
from benchmarks import scratch
from benchmarks import side_by_side
from benchmarks import timing

FLAGS = flags.FLAGS
side_by_side.define_flags("minik", ["1", "32"], 3, [
    "predictor_tf", "predictor_hybrid", "predictor_tflite", "in_process",
    "in_process_unfolded", "saved_model", "tflite", "tflite_process"])
flags.adopt_module_key_flags(side_by_side)  # --helpshort lists them
flags.DEFINE_list("exit_fractions", ["0.5", "0.75"],
                  "Early-exit budgets as fractions of the full cost "
                  "(empty: skip).")
flags.DEFINE_integer("parts_batch", 0, "Batch of the per-part and early-exit "
                     "timings (0: the largest of --batch_sizes).")
flags.DEFINE_boolean("torch", False, "Time the PyTorch re-creation of the "
                     "reference V1 model side by side (--torch_python).")


def write_random_run(run, cfg, model, policy):
  """A run directory whose stage 2 holds these weights (model and actor)."""
  run_dir.write_config(run, cfg)
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoints.Checkpointer(tf.distribute.get_strategy(),
                           run_dir.checkpoint_dir(run, 2), step=step,
                           model=model, actor=policy.actor).save(0)
  with open(run_dir.done_path(run, 2), "w") as f:
    json.dump({"benchmark": "random weights"}, f)


def torch_worker(cfg, python, threads) -> side_by_side.Worker:
  """``benchmarks/torch_worker.py``: the preset's reference model in torch."""
  m, d = cfg.model, cfg.data
  return side_by_side.Worker(python, "torch_worker.py", [
      "--family=v1", f"--frames={d.num_frames}",
      f"--frame_size={d.frame_size}", f"--patch_size={m.patch_size}",
      f"--num_classes={d.num_classes}", f"--num_actions={m.num_actions}",
      f"--hidden={m.classifier_hidden}", f"--policy_hidden={m.policy_hidden}",
      f"--policy_conv={m.policy_conv_channels}", f"--threads={threads}"])


def glance_tflite(model, cfg, repeats):
  """Median seconds per video of the glance net alone as a TFLite model."""
  d = cfg.data
  fn = tf.function(lambda x: model.glance(x, training=False))
  with tflite_ops.builtin_ops():
    concrete = fn.get_concrete_function(tf.TensorSpec(
        [d.num_frames, d.frame_size, d.frame_size, 3], tf.float32))
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete],
                                                              model.glance)
  interp = tflite_runner.make_interpreter(converter.convert(), FLAGS.threads)
  index = interp.get_input_details()[0]["index"]
  x = np.random.default_rng(0).standard_normal(
      (d.num_frames, d.frame_size, d.frame_size, 3), dtype=np.float32)

  def call():
    interp.set_tensor(index, x)
    interp.invoke()
  s, _ = timing.timed(call, repeats)
  return s


def main(_):
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  cfg = config_lib.get_preset(FLAGS.preset)
  d = cfg.data
  t = d.num_frames
  cost = flops.video_macs(cfg)
  video_macs = cost["per_frame"] * t  # policy patches: every part
  load_start = side_by_side.loadavg()
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  workdir = FLAGS.workdir or scratch.folder()

  model = factory.build_model(cfg)
  model.build_all()
  policy = greedy.GreedyPolicy.build(cfg, model.glance.map_shape)
  recognizer = loading.build(cfg, model, policy)
  run = os.path.join(workdir, "run")
  write_random_run(run, cfg, model, policy)
  batchnorm_folding.fold_at_inference(model)  # as the user paths load it
  paths, info, workers = side_by_side.user_paths(
      cfg, run, workdir, FLAGS.paths, FLAGS.threads)

  worker = None
  if FLAGS.torch:
    worker = torch_worker(cfg, FLAGS.torch_python, FLAGS.threads)
    info["torch"] = worker.hello["torch"]
    info["torch_matmul_peak_gmacs_per_s"] = round(
        worker.ask(op="peak", size=FLAGS.matmul_size)["gmacs"], 1)

  batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  rows = side_by_side.timed_rounds(paths, workers, worker, batch_sizes,
                                   FLAGS.repeats, FLAGS.settle_s, video_macs)
  for w in [worker, *workers.values()]:
    if w is not None:
      w.close()

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
  s = glance_tflite(model, cfg, FLAGS.repeats)
  gmacs = cost["glance"] * t / s / 1e9
  part_rows.append({"part": "glance_tflite", "median_s_per_video": round(s, 4),
                    "gmacs_per_s": round(gmacs, 1),
                    "fraction_of_peak": round(gmacs / peak, 3)})

  exit_rows = []
  fractions = [float(x) for x in FLAGS.exit_fractions if x]
  if fractions:
    conf = exit_rule.confidences(out["probs"])
    runner = runner_lib.EarlyExitRunner(recognizer, cost)
    never = [exit_rule.NEVER] * t
    full = runner.predict(batch, never)  # warm-up: traces the steps
    s_full, _ = timing.timed(lambda: runner.predict(batch, never),
                             FLAGS.repeats, warmup=0)
    exit_rows.append({"budget_fraction": 1.0, "frames_fraction": 1.0,
                      **side_by_side.rate(pb, s_full, video_macs)})
    del full
    for frac in fractions:
      q = exit_cost.ratio_for_budget(frac * video_macs / 1e9,
                                     runner.step_macs)
      thresholds = threshold_fit.fit_thresholds(
          conf, exit_cost.geometric_profile(q, t))
      res = runner.predict(batch, thresholds)
      done = res.step_videos.sum() / (pb * t)
      s, _ = timing.timed(lambda th=thresholds: runner.predict(batch, th),
                          FLAGS.repeats, warmup=0)
      exit_rows.append({"budget_fraction": frac, "geometric_q": round(q, 4),
                        "frames_fraction": round(done, 3),
                        **side_by_side.rate(pb, s, video_macs * done),
                        "speedup_vs_no_exit": round(s_full / s, 2)})

  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  for r in rows + exit_rows:
    r["fraction_of_peak"] = round(r["gmacs_per_s"] / peak, 3)
  print(json.dumps({
      "preset": FLAGS.preset, "cpu_cores": os.cpu_count(),
      "threads": FLAGS.threads,
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "loadavg_start": load_start, "loadavg_end": side_by_side.loadavg(),
      "gmacs_per_video": round(video_macs / 1e9, 3),
      "macs_per_frame": cost,
      "matmul_peak_gmacs_per_s": round(peak, 1),
      "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
      **info,
      "rows": rows, "parts_batch": pb, "parts": part_rows,
      "early_exit": exit_rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

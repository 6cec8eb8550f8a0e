"""Videos per second of a stage-1 training step and of stage-3 inference.

  python benchmarks/train_step.py [--presets=synthetic,minik] [--batch_size=8]
      [--method=v1] [--batch_norms=precise,keras]

For each preset, times on in-memory batches (no input pipeline, so this is
the compute side alone):
  * a stage-1 step: V1 (``--method=v1``): glance forward (frozen), random
    patches, focus forward and backward, classifier forward and backward,
    SGD update; V2 (``--method=v2``): its one end-to-end stage, glance,
    policy, focus (the policy's and random patches) and classifier forward
    and backward, SGD update;
  * stage-3 inference (V1) or the V2 recognizer's inference: glance,
    patches, focus and classifier forward.
Reports the median over timed repeats after a warm-up, the achieved
multiply-accumulates per second, and, measured in the same run, the peak of
a large float32 matmul on this machine. Training MACs are counted as the
forward MACs of every part plus twice those of the trained parts (the
backward pass of a layer costs about two forwards); a frozen part costs its
forward only. A V2 step runs the glance and the policy once and the focus
net and the classifier twice (two patch branches), every part trained.

``--batch_norms``: the training step is built, traced and timed once per
training-mode batch norm, the calls alternating (repeat i of each before
repeat i + 1 of any), with the paired ratio of each to the first, in
wall-clock and in this process's CPU time (steadier on a loaded machine):
``precise`` is the models' ``PreciseBatchNormalization`` (issue 24),
``keras`` the same layers running ``tf.keras`` ``BatchNormalization``'s own
call (the fused kernel for convolutions: the models before issue 24).
Inference runs on the moving statistics, the same code either way, and is
timed once.
"""
import contextlib
import json
import os
import statistics
import sys
import time
from unittest import mock

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.inference import loading
from adafocus_tf.models import precise_batchnorm
from adafocus_tf.profiling import flops
from adafocus_tf.training import experiment
from benchmarks import scratch
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["synthetic", "minik"], "Presets to time.")
flags.DEFINE_integer("batch_size", 8, "Videos per step.")
flags.DEFINE_integer("repeats", 5, "Timed calls; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")
flags.DEFINE_string("mixed_precision", "", "Keras mixed precision policy.")
flags.DEFINE_enum("method", "v1", ["v1", "v2", "uni"], "Training method.")
flags.DEFINE_list("batch_norms", ["precise"], "Training-mode batch norms "
                  "timed side by side: precise, keras.")


def fake_batch(cfg, batch_size):
  d = cfg.data
  return {
      "frames": tf.random.normal([batch_size, d.num_frames, d.frame_size,
                                  d.frame_size, 3]),
      "label": tf.zeros([batch_size], tf.int32),
      "multi_hot": tf.one_hot(tf.zeros([batch_size], tf.int32),
                              d.num_classes),
      "seed": tf.stack([tf.range(batch_size), tf.ones([batch_size],
                                                      tf.int32)], 1),
  }


@contextlib.contextmanager
def batch_norm(name):
  """Layers built and traced inside run ``name``'s training-mode batch norm.

  Args:
    name: ``precise`` (the models' layer) or ``keras`` (its parent's call).
  """
  if name == "precise":
    yield
    return
  with mock.patch.object(precise_batchnorm.PreciseBatchNormalization, "call",
                         tf.keras.layers.BatchNormalization.call):
    yield


def alternating(fns, repeats, warmup):
  """Times ``fns`` in turn, ``repeats`` rounds after ``warmup`` each.

  Returns:
    {name: (wall-clock seconds of every round, this process's CPU seconds
    of every round)}: on a loaded machine the CPU time, the work done, moves
    less than the wall clock.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: ([], []) for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start, cpu = time.perf_counter(), time.process_time()
      fn()
      times[name][0].append(time.perf_counter() - start)
      times[name][1].append(time.process_time() - cpu)
  return times


def video_macs(cfg):
  """One video's (inference forward, step forward, step's trained parts)
  MACs."""
  cost = flops.video_macs(cfg)
  frames = cfg.data.num_frames
  if FLAGS.method == "uni":
    # Uni-AdaFocus's stage: the glance and both policies once, the focus
    # net and the classifier on both branches; everything trains.
    per = cost["per_video"]
    step = (per["glance"] + per["policy"]
            + 2 * (per["focus"] + per["classifier"]))
    return per["total"], step, step
  forward = (cost["glance"] + cost["focus"] + cost["classifier"]) * frames
  if FLAGS.method == "v2":
    step = (cost["glance"] + cost["policy"]
            + 2 * (cost["focus"] + cost["classifier"])) * frames
    return forward, step, step
  return forward, forward, (cost["focus"] + cost["classifier"]) * frames


def bench_preset(name, batch_size, repeats):
  cfg = config_lib.get_preset(name, FLAGS.method)
  cfg.mixed_precision = FLAGS.mixed_precision
  strategy = tf.distribute.get_strategy()
  batch = fake_batch(cfg, batch_size)
  steps, trainer = {}, None
  for bn in FLAGS.batch_norms:
    with batch_norm(bn):
      # Stage 1: V1's random patches, V2's end-to-end stage.
      trainer = experiment.make_trainer(cfg, 1, strategy, scratch.folder(),
                                        progress=False)
      train = trainer.make_train_fn(batch_size)
      float(train(batch)["loss"])  # traced here, with this batch norm
    steps[bn] = lambda train=train: float(train(batch)["loss"])
  train_s = alternating(steps, repeats, warmup=1)

  recognizer = loading.build(cfg, trainer.task.model)

  @tf.function
  def infer(frames, seed):
    return recognizer({"frames": frames, "seed": seed}, "centre").logits
  infer_s = timing.timed(lambda: infer(batch["frames"], batch["seed"]).numpy(),
                         repeats, warmup=2)[0]

  forward, step, trained = video_macs(cfg)
  step_gmacs = (step + 2 * trained) * batch_size / 1e9
  first = FLAGS.batch_norms[0]
  row = {"preset": name, "method": FLAGS.method, "batch_size": batch_size}
  for bn, (wall, cpu) in train_s.items():
    median = statistics.median(wall)
    row[f"stage1_{bn}_step_s"] = round(median, 4)
    row[f"stage1_{bn}_step_cpu_s"] = round(statistics.median(cpu), 4)
    row[f"stage1_{bn}_videos_per_s"] = round(batch_size / median, 2)
    row[f"stage1_{bn}_gmacs_per_s"] = round(step_gmacs / median, 1)
    if bn != first:
      # Medians of the rounds' ratios (each round times both).
      for kind, i in (("", 0), ("_cpu", 1)):
        row[f"stage1_{bn}_over_{first}{kind}"] = round(statistics.median(
            t / f for t, f in zip(train_s[bn][i], train_s[first][i])), 3)
  row.update({
      "stage3_inference_videos_per_s": round(batch_size / infer_s, 2),
      "stage3_inference_gmacs_per_s": round(
          forward * batch_size / infer_s / 1e9, 1),
      "forward_gmacs_per_video": round(forward / 1e9, 3),
  })
  return row


def main(_):
  if FLAGS.mixed_precision:
    tf.keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  rows = [bench_preset(p, FLAGS.batch_size, FLAGS.repeats)
          for p in FLAGS.presets]
  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  for r in rows:
    for bn in FLAGS.batch_norms:
      r[f"stage1_{bn}_fraction_of_peak"] = round(
          r[f"stage1_{bn}_gmacs_per_s"] / peak, 3)
    r["stage3_fraction_of_peak"] = round(
        r["stage3_inference_gmacs_per_s"] / peak, 3)
  print(json.dumps({"matmul_peak_gmacs_per_s": round(peak, 1),
                    "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
                    "cpu_cores": os.cpu_count(),
                    "devices": [d.name for d in tf.config.list_logical_devices()],
                    "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

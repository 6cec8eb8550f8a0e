"""Videos per second of a stage-1 training step and of stage-3 inference.

  python benchmarks/train_step.py [--presets=synthetic,minik] [--batch_size=8]

For each preset, times on in-memory batches (no input pipeline, so this is
the compute side alone):
  * a stage-1 step: glance forward (frozen), random patches, focus forward
    and backward, classifier forward and backward, SGD update;
  * stage-3 inference: glance, patches, focus and classifier forward.
Reports the median over timed repeats after a warm-up, the achieved
multiply-accumulates per second, and, measured in the same run, the peak of
a large float32 matmul on this machine. Training MACs are counted as the
forward MACs of every part plus twice those of the trained parts (the
backward pass of a layer costs about two forwards); a frozen part costs its
forward only.
"""
import json
import os
import sys
import tempfile

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.inference import loading
from adafocus_tf.profiling import flops
from adafocus_tf.training import supervised
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["synthetic", "minik"], "Presets to time.")
flags.DEFINE_integer("batch_size", 8, "Videos per step.")
flags.DEFINE_integer("repeats", 5, "Timed calls; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")
flags.DEFINE_string("mixed_precision", "", "Keras mixed precision policy.")


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


def bench_preset(name, batch_size, repeats):
  cfg = config_lib.get_preset(name)
  cfg.mixed_precision = FLAGS.mixed_precision
  trainer = supervised.SupervisedTrainer(
      cfg, 1, tf.distribute.get_strategy(), tempfile.mkdtemp(), progress=False)
  batch = fake_batch(cfg, batch_size)
  train = trainer.make_train_fn(batch_size)
  train_s = timing.timed(lambda: float(train(batch)[0]), repeats, warmup=2)[0]

  recognizer = loading.build(cfg, trainer.model)

  @tf.function
  def infer(frames):
    return recognizer({"frames": frames}, "centre").logits
  infer_s = timing.timed(lambda: infer(batch["frames"]).numpy(), repeats,
                         warmup=2)[0]

  cost = flops.video_macs(cfg)
  frames = d.num_frames
  forward = (cost["glance"] + cost["focus"] + cost["classifier"]) * frames
  trained = (cost["focus"] + cost["classifier"]) * frames
  return {
      "preset": name, "batch_size": batch_size,
      "stage1_videos_per_s": round(batch_size / train_s, 2),
      "stage1_gmacs_per_s": round(
          (forward + 2 * trained) * batch_size / train_s / 1e9, 1),
      "stage3_inference_videos_per_s": round(batch_size / infer_s, 2),
      "stage3_inference_gmacs_per_s": round(
          forward * batch_size / infer_s / 1e9, 1),
      "forward_gmacs_per_video": round(forward / 1e9, 3),
  }


def main(_):
  if FLAGS.mixed_precision:
    tf.keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  rows = [bench_preset(p, FLAGS.batch_size, FLAGS.repeats)
          for p in FLAGS.presets]
  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  for r in rows:
    r["stage1_fraction_of_peak"] = round(r["stage1_gmacs_per_s"] / peak, 3)
    r["stage3_fraction_of_peak"] = round(
        r["stage3_inference_gmacs_per_s"] / peak, 3)
  print(json.dumps({"matmul_peak_gmacs_per_s": round(peak, 1),
                    "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
                    "cpu_cores": os.cpu_count(),
                    "devices": [d.name for d in tf.config.list_logical_devices()],
                    "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

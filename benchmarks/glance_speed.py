"""Achieved multiply-accumulates per second of the glance net, per option.

  python benchmarks/glance_speed.py [--preset=minik] [--frames=128]
      [--repeats=3]

Times the glance backbone of a preset (MobileNetV2 at 224 for ``minik``)
on one batch of ``--frames`` frames (the model batches all B x T frames of
a video batch into one call, so 128 frames = 8 videos of T=16), forward
only, inference mode, one option at a time, side by side with a float32
matmul peak measured in each process:

  * ``default``: ``tf.function`` around the Keras call (TF's default CPU
    path: oneDNN kernels where TensorFlow has them);
  * ``xla``: the same under ``tf.function(jit_compile=True)``;
  * ``threads_1x2`` (subprocess): inter-op 1, intra-op 2 threads;
  * ``no_onednn`` (subprocess): ``TF_ENABLE_ONEDNN_OPTS=0`` (Eigen kernels);
  * ``channels_first`` (subprocess): the backbone built with
    ``image_data_format = channels_first`` (NCHW), fed transposed frames.

Each row also gives the largest absolute difference of its pooled features
from ``default``'s (same weights: every process builds the backbone with
the same seed).
"""
import json
import os
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from benchmarks import timing  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "minik", "Preset whose glance net is timed.")
flags.DEFINE_integer("frames", 128, "Frames per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")
flags.DEFINE_string("variant", "", "Internal: run one variant in this "
                    "process (default,xla | threads_1x2 | no_onednn | "
                    "channels_first) and print JSON rows.")
flags.DEFINE_list("subprocess_variants",
                  ["threads_1x2", "no_onednn", "channels_first"],
                  "Variants that need a fresh process.")
flags.DEFINE_string("features_file", "/tmp/glance_speed_default.npy",
                    "Where the default variant's pooled features go (for "
                    "the differences).")


def run_variant(variant):
  """Times the glance backbone in this process; returns JSON rows."""
  import adafocus_tf  # pylint: disable=g-import-not-at-top,unused-import
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if variant == "threads_1x2":
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(2)
  if variant == "channels_first":
    tf.keras.backend.set_image_data_format("channels_first")
  from adafocus_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from adafocus_tf.profiling import flops  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import backbones  # pylint: disable=g-import-not-at-top

  median_s = lambda fn, repeats, warmup=1: timing.timed(fn, repeats,
                                                         warmup)[0]
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size)

  cfg = config_lib.get_preset(FLAGS.preset)
  m = cfg.model
  macs = flops.video_macs(cfg)["glance"]
  tf.keras.utils.set_random_seed(0)
  if variant == "channels_first" and m.glance_backbone == "mobilenet_v2":
    backbone = tf.keras.applications.MobileNetV2(
        input_shape=(3, m.glance_size, m.glance_size), alpha=m.glance_width,
        include_top=False, weights=None)
  else:
    backbone = backbones.build_backbone(m.glance_backbone, m.glance_size,
                                        m.glance_width, m.glance_weights)
  images = tf.random.stateless_normal(
      [FLAGS.frames, m.glance_size, m.glance_size, 3], [1, 2])
  if variant == "channels_first":
    images = tf.transpose(images, [0, 3, 1, 2])
  pool_axes = [2, 3] if variant == "channels_first" else [1, 2]

  def fwd(x):
    return tf.reduce_mean(backbone(x, training=False), pool_axes)

  kinds = ["default", "xla"] if variant == "default,xla" else [variant]
  rows = []
  for kind in kinds:
    fn = tf.function(fwd, jit_compile=(kind == "xla"))
    row = {"variant": kind, "frames": FLAGS.frames}
    try:
      start = time.perf_counter()
      feats = fn(images).numpy()
      row["first_call_s"] = round(time.perf_counter() - start, 2)
      s = median_s(lambda: fn(images).numpy(), FLAGS.repeats)
    except (tf.errors.OpError, ValueError) as e:  # e.g. no NCHW CPU kernel
      row["error"] = str(e).splitlines()[0][:200]
      rows.append(row)
      continue
    if kind == "default":
      np.save(FLAGS.features_file, feats)
    elif os.path.exists(FLAGS.features_file):
      row["max_abs_diff_vs_default"] = float(
          np.abs(feats - np.load(FLAGS.features_file)).max())
    gmacs = macs * FLAGS.frames / s / 1e9
    row.update({"median_s": round(s, 3),
                "frames_per_s": round(FLAGS.frames / s, 1),
                "gmacs_per_s": round(gmacs, 1),
                "matmul_peak_gmacs_per_s": round(peak, 1),
                "fraction_of_peak": round(gmacs / peak, 3)})
    rows.append(row)
  return rows


def main(_):
  if FLAGS.variant:
    print(timing.ROWS_PREFIX + json.dumps(run_variant(FLAGS.variant)))
    return
  rows = run_variant("default,xla")
  args = [f"--preset={FLAGS.preset}", f"--frames={FLAGS.frames}",
          f"--repeats={FLAGS.repeats}", f"--matmul_size={FLAGS.matmul_size}",
          f"--features_file={FLAGS.features_file}"]
  for v in FLAGS.subprocess_variants:
    rows += timing.variant_rows(os.path.abspath(__file__), v, args)
  print(json.dumps({"preset": FLAGS.preset, "cpu_cores": os.cpu_count(),
                    "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

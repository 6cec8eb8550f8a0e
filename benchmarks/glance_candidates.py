"""Glance net on CPU, first candidates side by side (issue 15).

  python benchmarks/glance_candidates.py [--preset=minik] [--frames=16]
      [--repeats=7] [--matmul_size=2048] [--subprocess_variants=no_onednn]

Times the glance network of a preset (``glance.from_config``, random
weights, seed 0; MobileNetV2 at 224 for ``minik``) on one video's frames,
[frames, 224, 224, 3] float32, forward in inference mode, under:

  * ``tf_default``: ``tf.function`` around ``GlanceNet.call`` (TensorFlow's
    default CPU path, oneDNN);
  * ``tflite_xnnpack``: a float32 TensorFlow Lite conversion of the same
    concrete function (``TFLiteConverter.from_concrete_functions``, no
    quantization), run by ``tf.lite.Interpreter(num_threads=2)`` with its
    default op resolver, which applies the XNNPACK delegate to float models;
  * ``no_onednn`` (subprocess): ``TF_ENABLE_ONEDNN_OPTS=0``;
  * ``threads_1x2`` (subprocess, optional): inter-op 1, intra-op 2.

Each row gives the median seconds per call (= per video of ``--frames``
frames) over ``--repeats`` timed calls after a warm-up, the achieved GMAC/s
(``flops.video_macs(cfg)["glance"] * frames`` MACs per call), the fraction of
a float32 matmul peak measured in the same process, the load average at the
time, and the largest absolute difference of its feature maps from
``tf_default``'s (same weights and inputs: every process seeds the build).
With ``--calibrate_bn`` (default) the BatchNorm moving statistics are first
set from one training-mode call on the timed input, so that the untrained
features are O(1) (otherwise ~1e-10, which makes any diff look tiny).
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
flags.DEFINE_integer("frames", 16, "Frames per call (one video).")
flags.DEFINE_integer("repeats", 7, "Timed calls; the median is reported.")
flags.DEFINE_integer("warmup", 2, "Untimed calls before timing.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")
flags.DEFINE_integer("tflite_threads", 2, "Interpreter num_threads.")
flags.DEFINE_string("variant", "", "Internal: run one variant in this "
                    "process (main | no_onednn | threads_1x2) and print "
                    "JSON rows.")
flags.DEFINE_list("subprocess_variants", ["no_onednn"],
                  "Variants that need a fresh process (no_onednn, "
                  "threads_1x2).")
flags.DEFINE_bool("calibrate_bn", True, "Set every BatchNorm's moving "
                  "statistics from one training-mode call on the input "
                  "(momentum 0) first, so the random-weight features are "
                  "O(1) rather than ~1e-10 and the parity check means "
                  "something.")
flags.DEFINE_string("fmap_file", "/tmp/glance_candidates_fmap.npy",
                    "Where tf_default's feature maps go (for the diffs).")


def run_variant(variant):
  """Times the candidates of ``variant`` in this process; returns rows."""
  # First: it selects tf-keras (TF_USE_LEGACY_KERAS) before TF is imported.
  import adafocus_tf  # pylint: disable=g-import-not-at-top,unused-import
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if variant == "threads_1x2":
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(2)
  from adafocus_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import glance as glance_lib  # pylint: disable=g-import-not-at-top
  from adafocus_tf.profiling import flops  # pylint: disable=g-import-not-at-top

  cfg = config_lib.get_preset(FLAGS.preset)
  size = cfg.model.glance_size
  macs = flops.video_macs(cfg)["glance"] * FLAGS.frames
  tf.keras.utils.set_random_seed(0)
  net = glance_lib.from_config(cfg)
  images = tf.random.stateless_normal([FLAGS.frames, size, size, 3], [1, 2])
  if FLAGS.calibrate_bn:
    net(images, training=False)  # builds the layers
    for layer in net.submodules:
      if isinstance(layer, tf.keras.layers.BatchNormalization):
        layer.momentum = 0.0
    net(images, training=True)
  fn = tf.function(lambda x: net(x, training=False))
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size)

  def row_for(name, call, fmap):
    s, times = timing.timed(call, FLAGS.repeats, warmup=FLAGS.warmup)
    gmacs = macs / s / 1e9
    row = {"variant": name, "frames": FLAGS.frames,
           "median_s_per_video": round(s, 4),
           "min_s": round(min(times), 4), "max_s": round(max(times), 4),
           "gmac_per_video": round(macs / 1e9, 3),
           "gmacs_per_s": round(gmacs, 1),
           "matmul_peak_gmacs_per_s": round(peak, 1),
           "fraction_of_peak": round(gmacs / peak, 3),
           "loadavg": [round(x, 2) for x in os.getloadavg()]}
    if name == "tf_default":
      np.save(FLAGS.fmap_file, fmap)
    elif os.path.exists(FLAGS.fmap_file):
      ref = np.load(FLAGS.fmap_file)
      row["max_abs_diff_fmap"] = float(np.abs(fmap - ref).max())
      row["max_abs_fmap"] = float(np.abs(ref).max())
      row["max_rel_diff_fmap"] = float(np.abs(fmap - ref).max() /
                                       np.abs(ref).max())
    return row

  start = time.perf_counter()
  fmap = fn(images)[0].numpy()
  first = time.perf_counter() - start
  name = "tf_default" if variant == "main" else variant
  rows = [row_for(name, lambda: fn(images)[0].numpy(), fmap)]
  rows[-1]["first_call_s"] = round(first, 2)
  if variant != "main":
    return rows

  # TensorFlow Lite, float32, XNNPACK (the interpreter's default delegate).
  start = time.perf_counter()
  concrete = fn.get_concrete_function(
      tf.TensorSpec([FLAGS.frames, size, size, 3], tf.float32))
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [concrete], net)
  blob = converter.convert()
  interp = tf.lite.Interpreter(model_content=blob,
                               num_threads=FLAGS.tflite_threads)
  interp.allocate_tensors()
  convert_s = time.perf_counter() - start
  inp = interp.get_input_details()[0]["index"]
  fmap_shape = list(fmap.shape)
  out = [d["index"] for d in interp.get_output_details()
         if list(d["shape"]) == fmap_shape][0]
  x = images.numpy()

  def tflite_call():
    interp.set_tensor(inp, x)
    interp.invoke()
    return interp.get_tensor(out)

  lite_fmap = tflite_call()
  rows.append(row_for("tflite_xnnpack", tflite_call, lite_fmap))
  rows[-1]["convert_s"] = round(convert_s, 2)
  rows[-1]["tflite_mb"] = round(len(blob) / 2**20, 1)
  # Alternate once more for a same-conditions re-check of the default.
  rows.append(row_for("tf_default_again", lambda: fn(images)[0].numpy(),
                      fn(images)[0].numpy()))
  return rows


def main(_):
  if FLAGS.variant:
    print(timing.ROWS_PREFIX + json.dumps(run_variant(FLAGS.variant)))
    return
  rows = run_variant("main")
  args = [f"--preset={FLAGS.preset}", f"--frames={FLAGS.frames}",
          f"--repeats={FLAGS.repeats}", f"--warmup={FLAGS.warmup}",
          f"--matmul_size={FLAGS.matmul_size}",
          f"--fmap_file={FLAGS.fmap_file}"]
  for v in FLAGS.subprocess_variants:
    rows += timing.variant_rows(os.path.abspath(__file__), v, args)
  print(json.dumps({"preset": FLAGS.preset, "cpu_cores": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                          time.gmtime()),
                    "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

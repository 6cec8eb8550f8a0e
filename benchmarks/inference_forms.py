"""Each inference-only form against what it replaces, side by side (issue 15).

  python benchmarks/inference_forms.py [--preset=actnet] [--repeats=15]

For the preset's sizes (one video of T frames; batch 8 too for the GRUs),
random weights (seed 0), 2 threads, calls of the two forms alternating,
prints one JSON row per pair: median milliseconds of each, the median of
the per-round ratios (``paired``), the largest absolute difference of their
outputs, and the float32 matmul peak measured in the same process:

  * ``glance_padding``: the folded glance backbone (batch norms fitted to
    the input first, so features are O(1)) with each stride-2 depthwise
    convolution given ``SAME`` padding, against the same with the separate
    ``ZeroPadding2D`` pass it had before (``batchnorm_folding._conv_padding``
    refusing depthwise convolutions);
  * ``classifier_gru_b1`` / ``_b8``: the GRU classifier's recurrence,
    ``gru_inference.gru_sequence`` against the Keras ``GRU`` layer;
  * ``policy_gru_b1``: the policy's GRU over a whole video, the same against
    tf-agents' ``DynamicUnroll`` (with the episode-start reset);
  * ``frame_resize``: ``augment.resize_square`` of T crops already at the
    frame size (the exported graph's case for 256-pixel frames) against
    ``tf.image.resize(antialias=True)``.
"""
import json
import os
import statistics
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from benchmarks import timing  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "actnet", "Preset whose sizes are timed.")
flags.DEFINE_integer("repeats", 15, "Rounds (one call of each form).")
flags.DEFINE_integer("threads", 2, "TensorFlow intra-op threads.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-matmul operands.")


def side_by_side(name, new, old, repeats):
  """Times ``new`` and ``old`` alternately; one JSON-able row."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = np.asarray(new()), np.asarray(old())  # warm-up (traces)
  diff = float(np.abs(a - b).max())
  new_s, old_s = [], []
  for _ in range(repeats):
    for fn, times in ((new, new_s), (old, old_s)):
      start = time.perf_counter()
      np.asarray(fn())
      times.append(time.perf_counter() - start)
  return {"pair": name,
          "new_ms": round(statistics.median(new_s) * 1e3, 2),
          "old_ms": round(statistics.median(old_s) * 1e3, 2),
          "paired_old_over_new": round(statistics.median(
              o / n for n, o in zip(new_s, old_s)), 3),
          "max_abs_diff": diff, "max_abs_output": float(np.abs(b).max()),
          "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main(_):
  import adafocus_tf  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_agents.keras_layers import dynamic_unroll_layer  # pylint: disable=g-import-not-at-top
  from adafocus_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from adafocus_tf.data import augment  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import batchnorm_folding  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import factory  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import gru_inference  # pylint: disable=g-import-not-at-top

  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  cfg = config_lib.get_preset(FLAGS.preset)
  d, m = cfg.data, cfg.model
  t, reps = d.num_frames, FLAGS.repeats
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size)
  tf.keras.utils.set_random_seed(0)
  model = factory.build_model(cfg)
  model.build_all()
  rows = []

  backbone = model.glance.backbone
  frames = tf.random.stateless_normal([t, m.glance_size, m.glance_size, 3],
                                      [1, 2])
  for layer in backbone.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      layer.momentum = 0.0
  backbone(frames, training=True)
  same = tf.function(batchnorm_folding.FoldedBackbone(backbone),
                     autograph=False)
  merged = batchnorm_folding._conv_padding  # pylint: disable=protected-access

  def padding_before(conv, pad):
    if isinstance(conv, tf.keras.layers.DepthwiseConv2D):
      return None
    return merged(conv, pad)
  batchnorm_folding._conv_padding = padding_before  # pylint: disable=protected-access
  try:
    padded = tf.function(batchnorm_folding.FoldedBackbone(backbone),
                         autograph=False)
  finally:
    batchnorm_folding._conv_padding = merged  # pylint: disable=protected-access
  rows.append(side_by_side("glance_padding", lambda: same(frames),
                           lambda: padded(frames), reps))

  gru = model.classifier.gru
  for b in (1, 8):
    x = tf.random.stateless_normal([b, t, gru.cell.kernel.shape[0]], [3, b])
    zeros = tf.zeros([b, gru.cell.units])
    new = tf.function(lambda x, z=zeros: gru_inference.gru_sequence(
        gru.cell, x, z)[0])
    old = tf.function(gru)
    rows.append(side_by_side(f"classifier_gru_b{b}", lambda x=x, f=new: f(x),
                             lambda x=x, f=old: f(x), reps))

  cell = tf.keras.layers.GRUCell(m.policy_hidden, reset_after=True)
  cell.build([None, m.policy_hidden])
  unroll = dynamic_unroll_layer.DynamicUnroll(cell)
  x = tf.random.stateless_normal([1, t, m.policy_hidden], [4, 5])
  zeros = tf.zeros([1, m.policy_hidden])
  first = tf.constant([[True] + [False] * (t - 1)])
  new = tf.function(lambda x: gru_inference.gru_sequence(cell, x, zeros,
                                                         first)[0])
  old = tf.function(lambda x: unroll(x, initial_state=zeros,
                                     reset_mask=first)[0])
  rows.append(side_by_side("policy_gru_b1", lambda: new(x), lambda: old(x),
                           reps))

  crops = tf.cast(tf.random.stateless_uniform(
      [t, d.frame_size, d.frame_size, 3], [6, 7], 0, 256, tf.int32),
                  tf.uint8)
  new = tf.function(lambda c: augment.resize_square(c, d.frame_size))
  old = tf.function(lambda c: tf.image.resize(c, [d.frame_size] * 2,
                                              antialias=True))
  rows.append(side_by_side("frame_resize", lambda: new(crops),
                           lambda: old(crops), reps))
  for row in rows:
    row.update(preset=FLAGS.preset, frames=t,
               matmul_peak_gmacs_per_s=round(peak, 1))
    print(json.dumps(row))


if __name__ == "__main__":
  app.run(main)

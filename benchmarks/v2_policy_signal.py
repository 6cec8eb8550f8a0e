"""What an AdaFocusV2 run's policy sees of the target, and why.

  python benchmarks/v2_policy_signal.py --run=$WS/runs/synthetic-v2-p16-s0 \
      [--data_dir=$WS/data/synthetic] [--max_videos=128]
  python benchmarks/v2_policy_signal.py \
      --run=$WS/runs/synthetic_objects-v2-p16-s0

For a V2 run on an embedded dataset (``synthetic`` or ``synthetic_objects``,
whose records hold the target's box in every frame, docs/SYNTHETIC.md),
trained or not: a run with only stage 0 done has an untrained focus net
and policy, one trained with ``--epochs=1`` or ``--max_steps`` a briefly
trained one (the signal the policy starts learning from). On the first
``--max_videos`` validation videos:

  policy    where the learned policy puts its patches: the correlation of
            each offset axis with each axis of the oracle offset (the patch
            centred on the target), and the fraction of frames within 4 px
            of it.
  gradient  what V2's only training signal for the policy says there
            (docs/METHOD.md V2-2, V2-4): at uniformly random offsets, the
            gradient of the step and focus cross-entropies with respect to
            the offsets, through the bilinear crop. For each band of
            distance to the oracle offset (Chebyshev, pixels), the mean
            cosine between the descent direction and the direction to the
            target, and how often each axis's sign agrees; and the same over
            4-20 px together (``band_4_20``, the range docs/SYNTHETIC.md
            states). A useful signal has cosines near 1 where the patch
            overlaps the target; 0 is no information.

Prints one JSON object; docs/SYNTHETIC.md quotes it.
"""
import json
import os
import sys

# The repo root replaces this script's folder on the path (see
# synthetic_separability.py).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.data import augment
from adafocus_tf.data import embedded
from adafocus_tf.data import synthetic
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A V2 run on an embedded dataset.",
                    required=True)
flags.DEFINE_string("data_dir", None, "Its embedded dataset (default: the "
                    "run's).")
flags.DEFINE_integer("max_videos", 128, "Validation videos to read.")
flags.DEFINE_integer("seed", 0, "Seed of the random offsets.")
# Distance bands (pixels from the oracle offset) of the gradient report.
BANDS = ((0, 4), (4, 10), (10, 20), (20, 1 << 16))
# The range the objects dataset is designed for, reported as one band too.
DESIGN_BAND = (4, 20)
NEAR_PX = 4


def _cross_entropy(labels, logits):
  labels = tf.broadcast_to(labels, tf.shape(logits))
  return tf.reduce_mean(
      tf.nn.softmax_cross_entropy_with_logits(labels, logits))


def main(_):
  cfg = run_dir.read_config(FLAGS.run)
  if (config_lib.method_of(cfg) != "v2" or
      cfg.data.dataset not in embedded.DATASETS):
    raise app.UsageError(f"{FLAGS.run} is not a V2 run on an embedded "
                         f"dataset {list(embedded.DATASETS)}")
  model = trained_run.TrainedRun(FLAGS.run).recognizer().model
  data = synthetic.load_split(
      os.path.join(FLAGS.data_dir or cfg.data.data_dir, "val"),
      FLAGS.max_videos)
  s, p = cfg.data.frame_size, cfg.model.patch_size
  frames = augment.normalize(tf.constant(data["frames"], tf.float32),
                             cfg.data.mean, cfg.data.std)
  box = data["boxes"] * s  # (ymin, xmin, ymax, xmax) pixels
  centre = np.stack([box[..., 0] + box[..., 2], box[..., 1] + box[..., 3]],
                    -1) / 2
  oracle = np.clip(centre - p / 2, 0, s - p)  # [N, T, (y, x)]
  maps, pooled = model.glance_features(frames)
  policy = model.policy_offsets(maps).numpy()
  axes = ("y", "x")
  report = {"run": FLAGS.run, "videos": len(data["labels"]), "policy": {
      f"corr_{a}_vs_target_{b}": round(float(np.corrcoef(
          policy[..., i].ravel(), oracle[..., j].ravel())[0, 1]), 3)
      for i, a in enumerate(axes) for j, b in enumerate(axes)}}
  report["policy"]["offset_std_px"] = [round(float(v), 1)
                                       for v in policy.std((0, 1))]
  report["policy"][f"within_{NEAR_PX}px_of_oracle"] = round(float(np.mean(
      np.abs(policy - oracle).max(-1) < NEAR_PX)), 4)

  labels = tf.one_hot(data["labels"], cfg.data.num_classes)[:, None]
  offsets = tf.constant(np.random.default_rng(FLAGS.seed).uniform(
      0, s - p, size=policy.shape), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(offsets)
    out = model.head_outputs(pooled, frames, offsets, training=False)
    loss = (_cross_entropy(labels, out.logits) + _cross_entropy(
        labels, tf.reshape(out.focus_logits, tf.shape(out.logits))))
  descent = -tape.gradient(loss, offsets).numpy()
  to_target = oracle - offsets.numpy()
  distance = np.abs(to_target).max(-1)
  report["gradient"] = [_band(descent, to_target, distance, lo, hi)
                        for lo, hi in BANDS]
  report["band_4_20"] = _band(descent, to_target, distance, *DESIGN_BAND)
  print(json.dumps(report, indent=1))


def _band(descent, to_target, distance, lo: int, hi: int) -> dict:
  """Cosine and sign agreement of the frames ``lo`` to ``hi`` px away.

  Args:
    descent: [N, T, 2] the descent directions.
    to_target: [N, T, 2] offset to the oracle offset.
    distance: [N, T] Chebyshev distance to it.
    lo: the band's nearest distance (included).
    hi: its farthest (excluded).
  """
  sel = (distance >= lo) & (distance < hi)
  cos = np.sum(descent[sel] * to_target[sel], -1) / (
      np.linalg.norm(descent[sel], axis=-1)
      * np.linalg.norm(to_target[sel], axis=-1) + 1e-12)
  return {"distance_px": [lo, hi], "frames": int(sel.sum()),
          "mean_cosine": round(float(cos.mean()), 3),
          "sign_agreement": round(float(np.mean(
              np.sign(descent[sel]) == np.sign(to_target[sel]))), 3)}


if __name__ == "__main__":
  app.run(main)

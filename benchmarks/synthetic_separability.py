"""How readable an embedded dataset's class is from each view of a video.

  python benchmarks/synthetic_separability.py [--data_dir=DIR] [--epochs=12]
  python benchmarks/synthetic_separability.py --kind=objects [--data_dir=DIR]

Trains the same small CNN (shared over frames, features pooled over time by
mean and max, then a linear layer) on several views of every video of the
training split and reports top-1 on the validation split:

  glance        whole frames box-averaged to GLANCE_SIZE (what the glance
                network sees): should be near chance (10%).
  glance_crop   the GLANCE_SIZE frame cut down to the cells around the
                target (6x6 of the textures, 4x4 of the objects: a margin
                around its box): the glance view told where the target is,
                the strongest test that the downsampled target gives no
                class.
  oracle        the PATCH_SIZE full-resolution patch centred on the stored
                box (as the ``oracle`` patch choice crops it): should be high.
  random        a uniformly random PATCH_SIZE patch per frame (fresh every
                epoch in training, fixed for evaluation): clearly lower.
  centre        the centre PATCH_SIZE patch.

For the patch views it also reports per-frame top-1 (the same model fed one
frame at a time). ``--kind``: the dataset, ``textures`` (``synthetic``, the
default) or ``objects`` (``synthetic_objects``). Without ``--data_dir`` it
generates the default dataset of that kind (seed 1234) into a temporary
directory. Prints one JSON object; the numbers
quoted in docs/SYNTHETIC.md come from this script.
"""
import json
import os
import sys
import time

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf.data import embedded
from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_objects_spec
from adafocus_tf.data import synthetic_spec
from benchmarks import scratch

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "textures", list(embedded.KINDS), "The embedded "
                  "dataset: textures (synthetic) or objects "
                  "(synthetic_objects).")
flags.DEFINE_string("data_dir", "", "Its dataset root (default: generate "
                    "the default one into a temporary directory).")
flags.DEFINE_list("views", ["glance", "glance_crop", "oracle", "random",
                            "centre"], "Views to evaluate.")
flags.DEFINE_integer("epochs", 12, "Training epochs per view.")
flags.DEFINE_integer("batch_size", 32, "Batch size in videos.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, order and patches.")
flags.DEFINE_integer("threads", 2, "TensorFlow intra- and inter-op threads.")

# Per kind: the constants module, and the glance_crop side in glance cells
# (the target's box and a margin).
KINDS = {"textures": (synthetic_spec, 6),
         "objects": (synthetic_objects_spec, 4)}


def _spec():
  return KINDS[FLAGS.kind][0]


def glance_frames(frames):
  """Box-averages frames to GLANCE_SIZE as the glance network does.

  Args:
    frames: uint8 [N, T, S, S, 3].

  Returns:
    float32 tensor [N, T, G, G, 3].
  """
  spec = _spec()
  n, t, s = frames.shape[:3]
  flat = tf.reshape(tf.cast(frames, tf.float32), [n * t, s, s, 3])
  small = tf.image.resize(flat, [spec.GLANCE_SIZE] * 2, method="area")
  return tf.reshape(small, [n, t, spec.GLANCE_SIZE, spec.GLANCE_SIZE, 3])


def glance_crops(frames, boxes):
  """The glance cells around each frame's target.

  Args:
    frames: uint8 [N, T, S, S, 3].
    boxes: float [N, T, 4] target boxes (fractions of the frame).

  Returns:
    float32 [N, T, side, side, 3], side the kind's crop cells.
  """
  spec = _spec()
  side = KINDS[FLAGS.kind][1]
  small = glance_frames(frames).numpy()
  cell = spec.FRAME_SIZE // spec.GLANCE_SIZE
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2 * spec.FRAME_SIZE
  top = np.clip(np.floor(centre / cell).astype(int) - side // 2, 0,
                spec.GLANCE_SIZE - side)
  n, t = frames.shape[:2]
  out = np.empty((n, t, side, side, 3), np.float32)
  for i in range(n):
    for j in range(t):
      y, x = top[i, j]
      out[i, j] = small[i, j, y:y + side, x:x + side]
  return out


def oracle_offsets(boxes):
  """Patch offsets centred on the boxes, as patches.box_offsets computes them.

  Args:
    boxes: float [..., 4] boxes (fractions of the frame).
  """
  spec = _spec()
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0 * spec.FRAME_SIZE
  return np.clip(np.round(centre - spec.PATCH_SIZE / 2.0), 0,
                 spec.FRAME_SIZE - spec.PATCH_SIZE).astype(np.int64)


def random_offsets(rng, shape):
  """Uniform patch offsets [*shape, 2].

  Args:
    rng: numpy Generator.
    shape: leading shape, (N, T).
  """
  spec = _spec()
  return rng.integers(0, spec.FRAME_SIZE - spec.PATCH_SIZE + 1,
                      size=tuple(shape) + (2,))


def crop(frames, offsets):
  """Cuts one PATCH_SIZE patch per frame.

  Args:
    frames: uint8 [N, T, S, S, 3].
    offsets: int [N, T, 2] top-left (y, x) of each patch.

  Returns:
    float32 [N, T, P, P, 3].
  """
  spec = _spec()
  p = spec.PATCH_SIZE
  n, t = frames.shape[:2]
  rows = offsets[..., 0, None] + np.arange(p)            # [N, T, P]
  cols = offsets[..., 1, None] + np.arange(p)
  ni = np.arange(n)[:, None, None, None]
  ti = np.arange(t)[None, :, None, None]
  return frames[ni, ti, rows[..., :, None], cols[..., None, :]].astype(
      np.float32)


def make_model(side: int) -> tf.keras.Model:
  """Per-frame CNN, time pooling (mean and max), linear classifier.

  Args:
    side: height and width of one frame of the input view.
  """
  spec = _spec()
  frame_in = tf.keras.Input([side, side, 3])
  x = tf.keras.layers.Rescaling(1 / 127.5, -1.0)(frame_in)
  for width in (32, 32):
    x = tf.keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
  if side >= 8:
    x = tf.keras.layers.MaxPool2D()(x)
  for width in (64, 64):
    x = tf.keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  cnn = tf.keras.Model(frame_in, x)
  video_in = tf.keras.Input([None, side, side, 3])
  feats = tf.keras.layers.TimeDistributed(cnn)(video_in)
  pooled = tf.keras.layers.Concatenate()([
      tf.keras.layers.GlobalAveragePooling1D()(feats),
      tf.keras.layers.GlobalMaxPooling1D()(feats)])
  logits = tf.keras.layers.Dense(spec.NUM_CLASSES)(pooled)
  model = tf.keras.Model(video_in, logits)
  model.compile(tf.keras.optimizers.Adam(1e-3),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def top1(model, x, labels) -> float:
  """Video top-1 in percent.

  Args:
    model: from ``make_model``.
    x: inputs [N, T, side, side, 3].
    labels: int [N].
  """
  pred = np.argmax(model.predict(x, batch_size=256, verbose=0), -1)
  return float(np.mean(pred == labels) * 100)


def per_frame_top1(model, x, labels) -> float:
  """Top-1 of the model fed each frame alone, averaged over frames.

  Args:
    model: from ``make_model``.
    x: inputs [N, T, side, side, 3].
    labels: int [N].
  """
  n, t = x.shape[:2]
  single = x.reshape((n * t, 1) + x.shape[2:])
  pred = np.argmax(model.predict(single, batch_size=1024, verbose=0), -1)
  return float(np.mean(pred == np.repeat(labels, t)) * 100)


def run_view(view, train, val, rng):
  """Trains on one view of the training split; returns its result dict.

  Args:
    view: one of the names in the module docstring.
    train: ``synthetic.load_split`` of the training split.
    val: the same of the validation split.
    rng: numpy Generator of the random patches.
  """
  spec = _spec()
  start = time.perf_counter()
  if view == "glance":
    xs = [glance_frames(d["frames"]).numpy() for d in (train, val)]
  elif view == "glance_crop":
    xs = [glance_crops(d["frames"], d["boxes"]) for d in (train, val)]
  elif view == "oracle":
    xs = [crop(d["frames"], oracle_offsets(d["boxes"])) for d in (train, val)]
  elif view == "centre":
    c = (spec.FRAME_SIZE - spec.PATCH_SIZE) // 2
    xs = [crop(d["frames"], np.full(d["boxes"].shape[:2] + (2,), c))
          for d in (train, val)]
  elif view == "random":
    xs = [None, crop(val["frames"], random_offsets(
        rng, val["frames"].shape[:2]))]
  else:
    raise app.UsageError(f"unknown view {view!r}")
  side = xs[1].shape[2]
  model = make_model(side)
  y_train = train["labels"]
  for _ in range(FLAGS.epochs):
    if view == "random":
      # Fresh patches every epoch, as stage 1 draws them.
      x_train = crop(train["frames"], random_offsets(
          rng, train["frames"].shape[:2]))
    else:
      x_train = xs[0]
    model.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=1,
              shuffle=True, verbose=0)
  result = {"val_top1": top1(model, xs[1], val["labels"]),
            "train_top1": top1(model, x_train, y_train),
            "seconds": round(time.perf_counter() - start, 1)}
  if view in ("oracle", "random", "centre"):
    result["val_top1_per_frame"] = per_frame_top1(model, xs[1], val["labels"])
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  tf.keras.utils.set_random_seed(FLAGS.seed)
  data_dir = FLAGS.data_dir
  if not data_dir:
    dataset = embedded.KINDS[FLAGS.kind]
    data_dir = embedded.ensure(
        dataset, os.path.join(scratch.folder("synthetic-"), dataset))
  train = synthetic.load_split(os.path.join(data_dir, "train"))
  val = synthetic.load_split(os.path.join(data_dir, "val"))
  rng = np.random.default_rng(FLAGS.seed)
  spec = _spec()
  results = {"kind": FLAGS.kind, "data_dir": data_dir, "epochs": FLAGS.epochs,
             "num_train": int(len(train["labels"])),
             "num_val": int(len(val["labels"])), "chance": 100.0 /
             spec.NUM_CLASSES, "views": {}}
  for view in FLAGS.views:
    results["views"][view] = run_view(view, train, val, rng)
    print(view, json.dumps(results["views"][view]), flush=True)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)

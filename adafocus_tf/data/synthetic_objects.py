"""The embedded objects dataset: a large, smooth object a gradient can find.

Each video is ``NUM_FRAMES`` frames of ``FRAME_SIZE``x``FRAME_SIZE`` RGB.
Its class is carried only by the *target*: a soft-edged red disc, larger
than the focus patch, whose luminance is modulated by the class's pattern
(gratings of period ``TEXTURE_PERIOD``) with a contrast that falls off
smoothly from the centre. Distractors are the same discs in other hues with
no pattern; all move at constant velocities and bounce off the borders.
Box-averaged to ``GLANCE_SIZE`` (one cell per pattern period) the target is
a red blob that says where it is but not which class it is; a
``PATCH_SIZE`` patch reads the pattern, more clearly the nearer it is to the
centre. ``docs/SYNTHETIC.md`` ("The objects dataset") gives the design and
its measurements.

Everything but the picture itself is the texture dataset's machinery
(``synthetic``): the random streams keyed by (seed, split, index), the
labels, the shard writing and resumption, the background, the motion.

  from adafocus_tf.data import synthetic_objects
  data_dir = synthetic_objects.ensure_synthetic(
      "workspace/data/synthetic_objects")
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_objects_spec as spec

DATASET = "synthetic_objects"
GENERATOR = "adafocus_tf.data.synthetic_objects"


def _smoothstep(x: np.ndarray) -> np.ndarray:
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def pattern(label: int, centre: np.ndarray, phases: np.ndarray,
            size: int = spec.FRAME_SIZE) -> np.ndarray:
  """The class pattern of a target centred at ``centre``, float [S, S].

  Its gratings (unit amplitude each, divided by the square root of their
  number) in the target's coordinates, so that the pattern moves with it.

  Args:
    label: the class.
    centre: (y, x) integer pixel of the target's centre.
    phases: one phase (radians) per grating of the class.
    size: S.
  """
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  yy, xx = yy - centre[0], xx - centre[1]
  k = 2.0 * np.pi / spec.TEXTURE_PERIOD
  gratings = spec.CLASS_GRATINGS[label]
  out = np.zeros((size, size))
  for g, phase in zip(gratings, phases):
    dy, dx = spec.GRATINGS[g][1]
    out += np.sin(k * (dy * yy + dx * xx) + phase)
  return out / np.sqrt(len(gratings))


def disc(centre: np.ndarray, size: int = spec.FRAME_SIZE):
  """Opacity [S, S] of an object disc and each pixel's distance to its centre.

  Args:
    centre: (y, x) pixel of the centre.
    size: S.

  Returns:
    (alpha, r): float [S, S] each; alpha is 1 within OBJECT_RADIUS -
    OBJECT_EDGE of the centre, 0 from OBJECT_RADIUS on, smooth between.
  """
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  r = np.hypot(yy - centre[0], xx - centre[1])
  return _smoothstep((spec.OBJECT_RADIUS - r) / spec.OBJECT_EDGE), r


def render_video(rng: np.random.Generator, label: int
                 ) -> Dict[str, np.ndarray]:
  """Draws one video of class ``label`` from ``rng``.

  Args:
    rng: the video's own random stream.
    label: class index, selects the target's pattern.

  Returns:
    A dict: ``frames`` uint8 [T, S, S, 3]; ``boxes`` float32 [T, 4] the
    target's boxes (ymin, xmin, ymax, xmax) as fractions of the frame (the
    disc's whole extent); ``centres`` int [T, 2] the target's centre pixels;
    ``distractor_centres`` int [D, T, 2].
  """
  s, t_len, radius = spec.FRAME_SIZE, spec.NUM_FRAMES, spec.OBJECT_RADIUS
  room = s - 2 * radius
  # Every random decision in a fixed order, so the stream is stable.
  back = synthetic.background(rng, s, spec.BACKGROUND_TEXTURE_STD)
  target_colour = synthetic.palette(rng, (spec.TARGET_COLOUR,))[0]
  phases = rng.uniform(0.0, 2.0 * np.pi, size=2)
  target_path = synthetic.trajectory(rng, t_len, room) + radius
  distractors = []
  for _ in range(spec.NUM_DISTRACTORS):
    hue = rng.integers(0, len(spec.DISTRACTOR_COLOURS))
    colour = synthetic.palette(rng, (spec.DISTRACTOR_COLOURS[hue],))[0]
    distractors.append((colour, synthetic.trajectory(rng, t_len, room)
                        + radius))
  noise = rng.normal(0.0, spec.FRAME_NOISE_STD, size=(t_len, s, s, 3))
  frames = np.empty((t_len, s, s, 3), np.uint8)
  for t in range(t_len):
    img = back.copy()
    for colour, path in distractors:
      alpha = disc(path[t], s)[0][..., None]
      img = img * (1.0 - alpha) + colour * alpha
    # The target last, on top: it is never occluded.
    alpha, r = disc(target_path[t], s)
    contrast = spec.TEXTURE_AMPLITUDE * alpha * np.exp(
        -r ** 2 / (2.0 * spec.TEXTURE_SIGMA ** 2))
    img = (img * (1.0 - alpha[..., None]) + target_colour * alpha[..., None]
           + (contrast * pattern(label, target_path[t], phases, s))[..., None])
    frames[t] = np.clip(np.rint(img + noise[t]), 0, 255).astype(np.uint8)
  boxes = np.concatenate([target_path - radius, target_path + radius],
                         1) / float(s)
  return {"frames": frames, "boxes": boxes.astype(np.float32),
          "centres": target_path,
          "distractor_centres": np.stack([p for _, p in distractors])}


OBJECTS = synthetic.Recipe(DATASET, GENERATOR, spec.GENERATOR_VERSION,
                           spec.CLASS_NAMES, spec.FRAME_SIZE,
                           spec.JPEG_QUALITY, render_video)


def generate(out_dir: str, seed: int = spec.DEFAULT_SEED,
             num_train: int = spec.NUM_TRAIN, num_val: int = spec.NUM_VAL,
             videos_per_shard: int = spec.VIDEOS_PER_SHARD) -> str:
  """Writes (or completes) ``<out_dir>/train`` and ``<out_dir>/val``.

  ``synthetic.generate`` (same arguments and result) with this dataset's
  recipe and default sizes.
  """
  return synthetic.generate(out_dir, seed, num_train, num_val,
                            videos_per_shard, OBJECTS)


def ensure_synthetic(out_dir: str, seed: int = spec.DEFAULT_SEED,
                     num_train: int = spec.NUM_TRAIN,
                     num_val: int = spec.NUM_VAL,
                     videos_per_shard: int = spec.VIDEOS_PER_SHARD) -> str:
  """Generates the dataset into ``out_dir`` unless it is already there.

  ``synthetic.ensure_synthetic`` (same arguments and result) with this
  dataset's recipe and default sizes.
  """
  return synthetic.ensure_synthetic(out_dir, seed, num_train, num_val,
                                    videos_per_shard, OBJECTS)

"""The embedded synthetic dataset: where the class is only in a small patch.

Each video is ``NUM_FRAMES`` frames of ``FRAME_SIZE``x``FRAME_SIZE`` RGB. Its
class is carried only by the *target*: an ``OBJECT_SIZE`` square wearing the
class's fine texture (period 4 pixels) in the target colours, moving at a
constant velocity and bouncing off the borders. Distractor squares wear
random textures of the same set in other colours; the background is a smooth
random field with fine texture and noise. Box-averaged to ``GLANCE_SIZE``
(what the glance network sees) the target is a uniform blob whose colour
says where it is but not which class it is; a ``PATCH_SIZE`` patch over it
shows the texture. ``docs/SYNTHETIC.md`` gives the design and the measured
separability (``benchmarks/synthetic_separability.py``).

Generation is deterministic: every video draws from its own random stream
keyed by (seed, split, index), so the same seed gives byte-identical shards
whatever the shard size or the order shards are written in, and a
generation killed half-way resumes by writing only the shards missing.

The shard writing, the random streams, the JPEG encoding and the pieces of
a picture (background, motion, colours) serve every embedded dataset: a
``Recipe`` names a dataset and the function that draws one of its videos,
and the functions from ``make_video`` on take one (default ``TEXTURES``,
this dataset; ``synthetic_objects.OBJECTS`` is the other).

  from adafocus_tf.data import synthetic
  data_dir = synthetic.ensure_synthetic("workspace/data/synthetic")
"""
from __future__ import annotations

import dataclasses
import io
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
from PIL import Image

from adafocus_tf import io_utils
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.data import synthetic_spec as spec

DATASET = "synthetic"
SPLITS = ("train", "val")
GENERATOR = "adafocus_tf.data.synthetic"
# Independent random streams of one video and of the label blocks.
_STREAM_VIDEO, _STREAM_LABELS = 0, 1


def texture_bank() -> np.ndarray:
  """The class textures: uint8 [NUM_CLASSES, period, period] of 0/1."""
  return np.array([[[int(c) for c in row] for row in rows]
                   for _, rows in spec.TEXTURES], np.uint8)


def _split_key(split: str) -> int:
  # A stable integer per split name (Python's hash() is salted per process).
  return zlib.crc32(split.encode("utf-8"))


def _rng(seed: int, split: str, stream: int, index: int) -> np.random.Generator:
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
  return np.random.default_rng(
      np.random.SeedSequence([seed, _split_key(split), stream, index]))


def labels_for(seed: int, split: str, start: int, stop: int,
               num_classes: int = spec.NUM_CLASSES) -> np.ndarray:
  """Labels of videos ``start`` to ``stop`` (exclusive) of a split.

  Every block of ``num_classes`` consecutive videos holds each class once,
  in a random order of its own, so a split of n videos is balanced to
  within one video per class (exactly when n is a multiple of the number
  of classes) and a video's label does not depend on how many videos the
  split has.

  Args:
    seed: dataset seed.
    split: split name.
    start: first video index.
    stop: one past the last video index.
    num_classes: classes of the dataset.

  Returns:
    int64 [stop - start] labels.
  """
  c = num_classes
  out = []
  for block in range(start // c, -(-stop // c)):
    perm = _rng(seed, split, _STREAM_LABELS, block).permutation(c)
    lo, hi = max(start, block * c), min(stop, (block + 1) * c)
    out.append(perm[lo - block * c:hi - block * c])
  return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def trajectory(rng: np.random.Generator, num_frames: int,
               room: int) -> np.ndarray:
  """Top-left corners [T, 2] of a square bouncing inside [0, room]^2.

  A uniform integer start, a constant integer velocity of MIN_SPEED to
  MAX_SPEED pixels per frame in each axis (random signs).

  Args:
    rng: the video's random stream.
    num_frames: T.
    room: the largest corner coordinate (frame side less object side).
  """
  pos = rng.integers(0, room + 1, size=2)
  speed = rng.integers(spec.MIN_SPEED, spec.MAX_SPEED + 1, size=2)
  vel = np.where(rng.random(2) < 0.5, -speed, speed)
  out = np.empty((num_frames, 2), np.int64)
  for t in range(num_frames):
    out[t] = pos
    pos = pos + vel
    # Reflect at the borders; one reflection suffices as speed < room.
    low, high = pos < 0, pos > room
    pos = np.where(low, -pos, np.where(high, 2 * room - pos, pos))
    vel = np.where(low | high, -vel, vel)
  return out


def _interp_matrix(size: int, points: int) -> np.ndarray:
  """[size, points] weights of linear interpolation between even points."""
  coords = np.linspace(0.0, points - 1.0, size)
  lo = np.minimum(np.floor(coords).astype(int), points - 2)
  frac = coords - lo
  m = np.zeros((size, points))
  m[np.arange(size), lo] = 1.0 - frac
  m[np.arange(size), lo + 1] = frac
  return m


def background(rng: np.random.Generator, size: int = spec.FRAME_SIZE,
               texture_std: float = spec.BACKGROUND_TEXTURE_STD
               ) -> np.ndarray:
  """A static float background [S, S, 3]: tinted grey, smooth field, texture.

  Args:
    rng: the video's random stream.
    size: S, the frame side.
    texture_std: standard deviation of the static per-pixel texture.
  """
  s, g = size, spec.BACKGROUND_GRID
  level = rng.uniform(*spec.BACKGROUND_LEVEL)
  tint = rng.uniform(-spec.BACKGROUND_TINT, spec.BACKGROUND_TINT, size=3)
  coarse = (rng.normal(0.0, spec.BACKGROUND_FIELD_STD, size=(g, g, 1)) +
            rng.normal(0.0, spec.BACKGROUND_CHROMA_STD, size=(g, g, 3)))
  m = _interp_matrix(s, g)
  field = np.einsum("yi,ijc,xj->yxc", m, coarse, m)
  texture = rng.normal(0.0, texture_std, size=(s, s, 3))
  return level + tint + field + texture


def palette(rng: np.random.Generator, colours) -> np.ndarray:
  """Colours [n, 3] (float), each channel jittered by up to +-COLOUR_JITTER.

  Args:
    rng: the video's random stream.
    colours: n RGB triples.
  """
  base = np.asarray(colours, np.float64)
  return base + rng.uniform(-spec.COLOUR_JITTER, spec.COLOUR_JITTER,
                            size=base.shape)


def _object_pixels(texture: np.ndarray, phase: np.ndarray,
                   palette: np.ndarray) -> np.ndarray:
  """The OBJECT_SIZE square [k, k, 3] of a texture at a phase, in a palette."""
  k, p = spec.OBJECT_SIZE, spec.TEXTURE_PERIOD
  idx = np.arange(k)
  # The pattern is attached to the object (it moves with it), shifted by the
  # object's own random phase.
  bits = texture[(idx[:, None] + phase[0]) % p, (idx[None, :] + phase[1]) % p]
  return np.where(bits[..., None] == 1, palette[0], palette[1])


def render_video(rng: np.random.Generator, label: int) -> Dict[str, np.ndarray]:
  """Draws one video of class ``label`` from ``rng``.

  Args:
    rng: the video's own random stream.
    label: class index, selects the target's texture.

  Returns:
    A dict: ``frames`` uint8 [T, S, S, 3]; ``boxes`` float32 [T, 4] target
    boxes (ymin, xmin, ymax, xmax) as fractions of the frame;
    ``corners`` int [T, 2] target top-left pixels; ``distractor_corners``
    int [D, T, 2]; ``distractor_labels`` int [D] textures of the distractors.
  """
  s, k, t_len = spec.FRAME_SIZE, spec.OBJECT_SIZE, spec.NUM_FRAMES
  room = s - k
  bank = texture_bank()
  # Draw every random decision in a fixed order so the stream is stable.
  back = background(rng)
  target_palette = palette(rng, spec.TARGET_COLOURS)
  target_phase = rng.integers(0, spec.TEXTURE_PERIOD, size=2)
  target_path = trajectory(rng, t_len, room)
  objects = []
  d_labels = rng.integers(0, spec.NUM_CLASSES, size=spec.NUM_DISTRACTORS)
  d_paths = []
  for d in range(spec.NUM_DISTRACTORS):
    which = rng.integers(0, len(spec.DISTRACTOR_COLOURS))
    colours = palette(rng, spec.DISTRACTOR_COLOURS[which])
    phase = rng.integers(0, spec.TEXTURE_PERIOD, size=2)
    path = trajectory(rng, t_len, room)
    objects.append((_object_pixels(bank[d_labels[d]], phase, colours), path))
    d_paths.append(path)
  # The target is drawn last, on top: it is never occluded.
  objects.append((_object_pixels(bank[label], target_phase, target_palette),
                  target_path))
  noise = rng.normal(0.0, spec.FRAME_NOISE_STD, size=(t_len, s, s, 3))
  frames = np.empty((t_len, s, s, 3), np.uint8)
  for t in range(t_len):
    img = back.copy()
    for pixels, path in objects:
      y, x = path[t]
      img[y:y + k, x:x + k] = pixels
    frames[t] = np.clip(np.rint(img + noise[t]), 0, 255).astype(np.uint8)
  boxes = np.concatenate([target_path, target_path + k], 1) / float(s)
  return {"frames": frames, "boxes": boxes.astype(np.float32),
          "corners": target_path, "distractor_corners": np.stack(d_paths),
          "distractor_labels": d_labels}


def encode_jpeg(frame: np.ndarray, quality: int = spec.JPEG_QUALITY) -> bytes:
  """JPEG bytes of one frame, 4:4:4.

  Args:
    frame: uint8 [H, W, 3] RGB.
    quality: JPEG quality.
  """
  buf = io.BytesIO()
  # subsampling=0 keeps chroma at full resolution: 1-pixel colour features
  # of the textures would blur away under the default 4:2:0.
  Image.fromarray(frame).save(buf, format="JPEG", quality=quality,
                              subsampling=0)
  return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One embedded dataset: what its files record and how a video is drawn.

  Attributes:
    dataset: the dataset name (meta.json, video ids, record sources; the
      config preset of the same name reads it).
    generator: the generating module, recorded in every manifest.
    version: the generator version, recorded too; a shard of another
      version is rewritten.
    class_names: the class names, in label order.
    frame_size: S, the side of the stored square frames.
    jpeg_quality: quality of the stored JPEG frames.
    render: draws one video, ``render(rng, label)`` -> a dict with at
      least ``frames`` uint8 [T, S, S, 3] and ``boxes`` float32 [T, 4].
  """
  dataset: str
  generator: str
  version: int
  class_names: Tuple[str, ...]
  frame_size: int
  jpeg_quality: int
  render: Callable[[np.random.Generator, int], Dict[str, np.ndarray]]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


TEXTURES = Recipe(DATASET, GENERATOR, spec.GENERATOR_VERSION,
                  spec.CLASS_NAMES, spec.FRAME_SIZE, spec.JPEG_QUALITY,
                  render_video)


def video_id(split: str, index: int, dataset: str = DATASET) -> str:
  """The id of video ``index`` of ``split`` (unique within the split).

  Args:
    split: split name.
    index: video index within the split.
    dataset: the dataset's name.
  """
  return f"{dataset}-{split}-{index:06d}"


def make_video(seed: int, split: str, index: int,
               recipe: Recipe = TEXTURES) -> Tuple[int, dict]:
  """Renders one video exactly as the generator stores it (before JPEG).

  Args:
    seed: dataset seed.
    split: split name.
    index: video index within the split.
    recipe: the dataset.

  Returns:
    (label, the dict of the recipe's ``render``).
  """
  label = int(labels_for(seed, split, index, index + 1,
                         recipe.num_classes)[0])
  return label, recipe.render(_rng(seed, split, _STREAM_VIDEO, index), label)


def make_records(seed: int, split: str, start: int, stop: int,
                 recipe: Recipe = TEXTURES
                 ) -> Tuple[List[str], List[bytes]]:
  """Serialized SequenceExamples of videos ``start`` to ``stop`` (exclusive).

  Args:
    seed: dataset seed.
    split: split name.
    start: first video index.
    stop: one past the last video index.
    recipe: the dataset.

  Returns:
    (video ids, serialized records), in index order.
  """
  ids, records = [], []
  s = recipe.frame_size
  for index, label in zip(range(start, stop),
                          labels_for(seed, split, start, stop,
                                     recipe.num_classes)):
    video = recipe.render(_rng(seed, split, _STREAM_VIDEO, index),
                          int(label))
    vid = video_id(split, index, recipe.dataset)
    records.append(schema.encode_video(
        vid, [int(label)],
        [encode_jpeg(f, recipe.jpeg_quality) for f in video["frames"]], s, s,
        source=f"{recipe.dataset}:seed={seed}/{split}/{index}",
        boxes=video["boxes"]))
    ids.append(vid)
  return ids, records


def _made_by(seed: int, split: str, num_videos: int, videos_per_shard: int,
             recipe: Recipe) -> dict:
  # No time stamps or paths: the same call must write the same bytes.
  return {"generator": recipe.generator, "version": recipe.version,
          "seed": int(seed), "split": split, "num_videos": int(num_videos),
          "videos_per_shard": int(videos_per_shard)}


def _check_no_foreign_shards(split_dir: str, num_shards: int) -> None:
  for path in shards.foreign_shards(split_dir, num_shards)[:1]:
    raise ValueError(
        f"{path} does not belong to a split of {num_shards} shard(s); "
        f"{split_dir} holds another generation, delete it first")


def write_split(split_dir: str, split: str, seed: int, num_videos: int,
                videos_per_shard: int = spec.VIDEOS_PER_SHARD,
                recipe: Recipe = TEXTURES) -> dict:
  """Generates one split into ``split_dir``, resuming a partial one.

  A finished shard (manifest present) made with the same generator version,
  seed, split size and shard size is kept; any other is (re)written. The
  meta.json is written last, when every shard is there (a split that was
  complete already is not touched at all).

  Args:
    split_dir: the split's directory (local or ``s3://``).
    split: split name (part of every video's random stream and id).
    seed: dataset seed.
    num_videos: videos in the split.
    videos_per_shard: videos per shard file.
    recipe: the dataset.

  Returns:
    The split's meta dict.

  Raises:
    ValueError: bad sizes, or the directory holds shards of another split
      size.
  """
  if num_videos < 1 or videos_per_shard < 1:
    raise ValueError(f"need num_videos >= 1 and videos_per_shard >= 1, got "
                     f"{num_videos} and {videos_per_shard}")
  num_shards = -(-num_videos // videos_per_shard)
  made_by = _made_by(seed, split, num_videos, videos_per_shard, recipe)
  io_utils.makedirs(split_dir)
  _check_no_foreign_shards(split_dir, num_shards)
  written = 0
  for i in range(num_shards):
    _, manifest_path = shards.shard_paths(split_dir, i, num_shards)
    if (shards.is_finished(split_dir, i, num_shards) and
        io_utils.read_json(manifest_path).get("made_by") == made_by):
      continue
    start, stop = i * videos_per_shard, min((i + 1) * videos_per_shard,
                                            num_videos)
    ids, records = make_records(seed, split, start, stop, recipe)
    shards.write_shard(split_dir, i, num_shards, records,
                       {"videos": ids, "skipped": [], "made_by": made_by})
    written += 1
  logging.info("%s %s: wrote %d of %d shard(s) in %s", recipe.dataset, split,
               written, num_shards, split_dir)
  meta_path = io_utils.join(split_dir, shards.META)
  if not written and io_utils.exists(meta_path):
    meta = io_utils.read_json(meta_path)
    # Leave a complete split untouched (its files keep their times).
    if (meta.get("made_by") == made_by and
        meta.get("format_version") == schema.FORMAT_VERSION and
        meta.get("class_names") == list(recipe.class_names)):
      return meta
  return shards.write_meta(
      split_dir, dataset=recipe.dataset, split=split,
      class_names=recipe.class_names, num_videos=num_videos, num_skipped=0,
      multi_label=False, num_shards=num_shards, made_by=made_by)


def generate(out_dir: str, seed: int = spec.DEFAULT_SEED,
             num_train: int = spec.NUM_TRAIN, num_val: int = spec.NUM_VAL,
             videos_per_shard: int = spec.VIDEOS_PER_SHARD,
             recipe: Recipe = TEXTURES) -> str:
  """Writes (or completes) ``<out_dir>/train`` and ``<out_dir>/val``.

  Args:
    out_dir: dataset root (local or ``s3://``).
    seed: dataset seed.
    num_train: training videos.
    num_val: validation videos.
    videos_per_shard: videos per shard file.
    recipe: the dataset.

  Returns:
    ``out_dir``.
  """
  for split, n in zip(SPLITS, (num_train, num_val)):
    write_split(io_utils.join(out_dir, split), split, seed, n,
                videos_per_shard, recipe)
  return out_dir


def ensure_synthetic(out_dir: str, seed: int = spec.DEFAULT_SEED,
                     num_train: int = spec.NUM_TRAIN,
                     num_val: int = spec.NUM_VAL,
                     videos_per_shard: int = spec.VIDEOS_PER_SHARD,
                     recipe: Recipe = TEXTURES) -> str:
  """Generates the dataset into ``out_dir`` unless it is already there.

  "There" means both ``train/meta.json`` and ``val/meta.json`` exist; then
  nothing is read or written beyond those two files (a dataset made with
  other parameters is used as it is, with a logged warning). Otherwise the
  splits are generated, keeping any finished shards of an interrupted
  generation with the same parameters.

  Args:
    out_dir: dataset root (local or ``s3://``).
    seed: dataset seed.
    num_train: training videos.
    num_val: validation videos.
    videos_per_shard: videos per shard file.
    recipe: the dataset.

  Returns:
    ``out_dir``, ready to use as ``DataConfig.data_dir``.
  """
  metas = [io_utils.join(out_dir, s, shards.META) for s in SPLITS]
  if all(io_utils.exists(m) for m in metas):
    for split, n, path in zip(SPLITS, (num_train, num_val), metas):
      found = io_utils.read_json(path).get("made_by")
      if found != _made_by(seed, split, n, videos_per_shard, recipe):
        logging.warning("using the existing %s, made by %s (asked for seed "
                        "%d, %d videos)", path, found, seed, n)
    return out_dir
  logging.info("generating the %s dataset (seed %d, %d + %d videos) into %s",
               recipe.dataset, seed, num_train, num_val, out_dir)
  return generate(out_dir, seed, num_train, num_val, videos_per_shard,
                  recipe)


def load_split(split_dir: str, max_videos: Optional[int] = None
               ) -> Dict[str, np.ndarray]:
  """Reads a synthetic split back into memory (for tests and experiments).

  Args:
    split_dir: a split written by ``write_split``.
    max_videos: read at most this many videos (in shard order).

  Returns:
    A dict of numpy arrays: ``frames`` uint8 [N, T, S, S, 3] (decoded),
    ``labels`` int64 [N], ``boxes`` float32 [N, T, 4], ``video_ids`` [N].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = tf.data.TFRecordDataset(shards.list_records(split_dir))
  if max_videos is not None:
    ds = ds.take(max_videos)

  def parse(serialized):
    v = schema.parse_video(serialized, with_boxes=True)
    frames = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3),
                       v[schema.FRAMES], fn_output_signature=tf.uint8)
    return frames, v[schema.LABELS][0], v[schema.BOXES], v[schema.VIDEO_ID]

  frames, labels, boxes, ids = [], [], [], []
  for f, l, b, i in ds.map(parse).as_numpy_iterator():
    frames.append(f)
    labels.append(l)
    boxes.append(b)
    ids.append(i.decode())
  return {"frames": np.stack(frames), "labels": np.array(labels, np.int64),
          "boxes": np.stack(boxes), "video_ids": np.array(ids)}


def class_counts(labels: Sequence[int],
                 num_classes: int = spec.NUM_CLASSES) -> np.ndarray:
  """Videos per class, int [num_classes].

  Args:
    labels: class index of every video.
    num_classes: classes of the dataset.
  """
  return np.bincount(np.asarray(labels, np.int64), minlength=num_classes)

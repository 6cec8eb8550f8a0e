"""Video files and frame folders as network inputs, read as evaluation reads.

An input goes through exactly the steps a video of the run's data goes
through in evaluation: it is stored the way ``datasets/prepare.py`` stored the
data (``video_decode``, ``frame_folders``: PyAV or the frame files, short
side resized with the settings recorded in the data's ``meta.json``, JPEG),
then the evaluation transform of ``pipeline.make_video_fn`` reads it (TSN
segment centres of each frame stream, "resize the short side to eval_resize,
centre-crop frame_size" as one crop window, ImageNet normalisation). A video
evaluated from its prepared shard and the same video read here therefore
reach the network as the same tensors.

Sampling depends only on the number of stored frames, so an input is read
sparsely: the count first (a demux pass over a video's packets, a listing of
a folder), then only the sampled frames are decoded (seeking) and stored,
with the same bytes ``prepare`` would store for them
(``video_seek.read_video_frames``). Memory and time follow the frames
sampled, not the video's length.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import augment
from adafocus_tf.data import frame_folders
from adafocus_tf.data import pipeline
from adafocus_tf.data import sampling
from adafocus_tf.data import shards
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_seek
from adafocus_tf.families import registry
from adafocus_tf.policy import patch_choice

BadInput = video_decode.BadInput


def frame_streams(cfg: ExperimentConfig) -> Dict[str, int]:
  """Network input key -> frames sampled: ``frames`` (T), or the two streams."""
  return registry.of(cfg).frame_streams(cfg)


def read_data_meta(cfg: ExperimentConfig) -> Tuple[Optional[dict], str]:
  """The ``meta.json`` of the run's data (evaluation split, else training).

  Args:
    cfg: the run's config (``data.data_dir`` and the split names).

  Returns:
    ``(meta, where)``: the meta dict and its split directory, or ``(None,
    reason)`` when no split's meta.json can be read.
  """
  if not cfg.data.data_dir:
    return None, "the run's config names no data_dir"
  reasons = []
  for split in dict.fromkeys((cfg.data.eval_split, cfg.data.train_split)):
    where = pipeline.split_dir(cfg.data, split)
    try:
      return shards.read_meta(where), where
    except (FileNotFoundError, ValueError, tf.errors.OpError) as e:
      reasons.append(str(e))
  return None, "; ".join(reasons)


def class_names_of(cfg: ExperimentConfig, meta: Optional[dict],
                   where: str) -> Tuple[Optional[List[str]], str]:
  """The run's class names, or why there are none.

  Args:
    cfg: the run's config.
    meta: the data's meta.json (``read_data_meta``), or None.
    where: its split directory, or the reason it is missing.

  Returns:
    ``(names, source)``: the names and the meta.json they came from, or
    ``(None, reason)``.
  """
  if meta is None:
    return None, f"no readable meta.json ({where})"
  names = meta.get("class_names") or []
  if len(names) != cfg.data.num_classes:
    return None, (f"{where}/meta.json has {len(names)} class names but the "
                  f"run has {cfg.data.num_classes} classes")
  return [str(n) for n in names], io_utils.join(where, shards.META)


def frame_settings_of(meta: Optional[dict]) -> video_decode.FrameSettings:
  """How the run's data stored frames (``made_by`` of meta.json).

  Data prepared by ``datasets/prepare.py`` records its short side, frame
  rate and JPEG quality; data without a record (the synthetic set, hand-made
  test data) gets prepare's defaults.

  Args:
    meta: the data's meta.json, or None.
  """
  made_by = (meta or {}).get("made_by") or {}
  default = video_decode.FrameSettings()
  return video_decode.FrameSettings(
      short_side=int(made_by.get("short_side", default.short_side)),
      fps=float(made_by.get("fps", default.fps)),
      jpeg_quality=int(made_by.get("jpeg_quality", default.jpeg_quality)))


@dataclasses.dataclass
class Clip:
  """One input, stored and preprocessed as evaluation reads a video.

  Attributes:
    path: the input as given.
    kind: ``video`` or ``frames`` (a frame folder).
    original_size: (width, height) of the input's frames.
    stored: the frames as ``prepare`` would store them (resized JPEGs):
      ``len(stored.jpegs)`` is the stored-frame count, and only the sampled
      frames were read (``video_decode.SparseJpegs``).
    indices: {input key: int [T_k]} the frames sampled for each network
      input (``frame_streams``), 0-based indices into ``stored`` (frame
      ``k`` of a folder is file number ``k + 1``).
    window: int [4] the crop window (offset_y, offset_x, height, width) in
      stored pixels.
    inputs: {input key: float32 [T_k, S, S, 3]} the network inputs
      (normalised).
    patch_key: the input whose frames the patches are cut from.
  """
  path: str
  kind: str
  original_size: Tuple[int, int]
  stored: video_decode.Frames
  indices: Dict[str, np.ndarray]
  window: np.ndarray
  inputs: Dict[str, np.ndarray]
  patch_key: str

  @property
  def patch_indices(self) -> np.ndarray:
    """int [K] the sampled frames the patches are cut from."""
    return self.indices[self.patch_key]

  @property
  def stored_size(self) -> Tuple[int, int]:
    """(width, height) of the stored frames."""
    return self.stored.width, self.stored.height

  def stored_image(self, t: int) -> Image.Image:
    """Patch frame ``t`` (``patch_indices``) as stored (RGB), for drawing."""
    return self.stored_frame(int(self.patch_indices[t]))

  def stored_frame(self, k: int) -> Image.Image:
    """Stored frame ``k`` (0-based, one of the sampled ones) as RGB."""
    with Image.open(io.BytesIO(self.stored.jpegs[int(k)])) as image:
      return image.convert("RGB")


def _original_size(kind: str, path: str) -> Tuple[int, int]:
  """(width, height) of a video's frames or of a folder's first frame."""
  if kind == "frames":
    found = frame_folders.list_frame_folder(path)
    with Image.open(os.path.join(path, found.name_of(min(found.names)))) as im:
      return im.width, im.height
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    ctx = container.streams.video[0].codec_context
    return int(ctx.width), int(ctx.height)


def sampled_indices(num_stored: int, cfg: ExperimentConfig
                    ) -> Dict[str, np.ndarray]:
  """The stored frames evaluation samples for each network input.

  Args:
    num_stored: frames the video stores.
    cfg: the run's config (frame streams, TSN or dense sampling).

  Returns:
    {key of ``frame_streams``: int [T_k]} 0-based stored-frame indices.
  """
  num = tf.constant(num_stored)
  return {key: sampling.sample_indices(num, count, False,
                                       cfg.data.dense_sampling).numpy()
          for key, count in frame_streams(cfg).items()}


def _frames_needed(num_stored: int, cfg: ExperimentConfig) -> np.ndarray:
  """Every stored index some network input samples (``video_decode.Choose``).

  Args:
    num_stored: frames the video stores.
    cfg: the run's config.
  """
  return np.concatenate(list(sampled_indices(num_stored, cfg).values()))


def preprocess(stored: video_decode.Frames, cfg: ExperimentConfig):
  """The evaluation transform of ``pipeline.make_video_fn`` on stored frames.

  Args:
    stored: a video's stored JPEG frames: all of them, or a
      ``video_decode.SparseJpegs`` holding at least the sampled ones.
    cfg: the run's config (frame streams, sizes, normalisation).

  Returns:
    ``(indices {key: int [T_k]}, window int [4], inputs {key: float32
    [T_k, S, S, 3]})`` for each key of ``frame_streams``.
  """
  d = cfg.data
  window = augment.eval_window(tf.constant(stored.height),
                               tf.constant(stored.width), d.eval_resize,
                               d.frame_size)
  indices = sampled_indices(len(stored.jpegs), cfg)
  inputs = {}
  for key, idx in indices.items():
    jpegs = tf.constant([stored.jpegs[i] for i in idx])
    inputs[key] = augment.normalize(
        augment.decode_frames(jpegs, window, d.frame_size), d.mean,
        d.std).numpy()
  return indices, window.numpy(), inputs


def read_clip(path: str, cfg: ExperimentConfig,
              settings: video_decode.FrameSettings) -> Clip:
  """Reads a video file or frame folder into a preprocessed ``Clip``.

  Only the frames sampled are decoded (see the module docstring).

  Args:
    path: a local video file (anything FFmpeg decodes) or a folder of
      ``image_00001.jpg``... frames.
    cfg: the run's config.
    settings: how the run's data stored frames (``frame_settings_of``).

  Returns:
    The clip.

  Raises:
    BadInput: missing, unreadable, undecodable, truncated or empty input
      (the message says why, without the path).
  """
  needed = functools.partial(_frames_needed, cfg=cfg)
  if os.path.isdir(path):
    kind = "frames"
    stored = frame_folders.read_frame_folder(path, None, settings, needed)
  elif os.path.isfile(path):
    kind = "video"
    stored = video_seek.read_video_frames(path, settings, needed)
  else:
    raise BadInput("no such file or directory")
  try:
    original = _original_size(kind, path)
    indices, window, inputs = preprocess(stored, cfg)
  except tf.errors.InvalidArgumentError as e:
    raise BadInput(f"frames do not decode: {e.message}") from None
  except (OSError, ValueError) as e:
    raise BadInput(str(e)) from None
  return Clip(path, kind, original, stored, indices, window, inputs,
              patch_choice.patch_stream(cfg))


def patch_boxes(offsets, window, frame_size: int, patch_size: int,
                stored_size: Tuple[int, int], original_size: Tuple[int, int]):
  """Maps patch offsets in the network input to stored and original pixels.

  ``region_boxes`` of P x P regions at the offsets.

  Args:
    offsets: [T, 2] top-left (y, x) in network pixels, int or float
      (sub-pixel, AdaFocusV2).
    window: [4] (offset_y, offset_x, height, width) in stored pixels.
    frame_size: S, side of the network input.
    patch_size: P.
    stored_size: (width, height) of the stored frames.
    original_size: (width, height) of the original frames.

  Returns:
    ``(stored [T, 4], original [T, 4])`` float64 boxes ``[x0, y0, x1, y1]``.
  """
  off = np.asarray(offsets, np.float64).reshape(-1, 2)
  regions = np.concatenate([off, np.full_like(off, float(patch_size))], 1)
  return region_boxes(regions, window, frame_size, stored_size,
                      original_size)


def region_boxes(regions, window, frame_size: int,
                 stored_size: Tuple[int, int],
                 original_size: Tuple[int, int]):
  """Maps regions of the network input to stored and original pixels.

  The network input is the crop ``window`` resized to ``frame_size``; the
  stored frame is the original resized (per axis) to ``stored_size``.

  Args:
    regions: [K, 4] (y, x, height, width) in network pixels
      (``Recognizer.patch_regions``: P x P patches, or Uni-AdaFocus's
      deformable regions).
    window: [4] (offset_y, offset_x, height, width) in stored pixels.
    frame_size: S, side of the network input.
    stored_size: (width, height) of the stored frames.
    original_size: (width, height) of the original frames.

  Returns:
    ``(stored [K, 4], original [K, 4])`` float64 boxes ``[x0, y0, x1, y1]``.
  """
  r = np.asarray(regions, np.float64).reshape(-1, 4)
  wy, wx, wh, ww = (float(v) for v in window)
  y0 = wy + r[:, 0] * wh / frame_size
  x0 = wx + r[:, 1] * ww / frame_size
  stored = np.stack([x0, y0, x0 + r[:, 3] * ww / frame_size,
                     y0 + r[:, 2] * wh / frame_size], 1)
  scale = np.array([original_size[0] / stored_size[0],
                    original_size[1] / stored_size[1]] * 2)
  return stored, stored * scale

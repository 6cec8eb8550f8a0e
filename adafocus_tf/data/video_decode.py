"""Video files -> resized JPEG frames, deterministically; the shared pieces.

A video file is decoded with PyAV (FFmpeg). Every frame is resized with
Pillow (bilinear) so that its short side is ``short_side`` and encoded with
Pillow's JPEG encoder at ``jpeg_quality``, so every stored frame decodes with
``tf.io.decode_jpeg``. The same input and settings always give the same bytes
(same decoder, same resize, same encoder), which is what lets a resumed
``prepare`` run write shards identical to an uninterrupted one.

This module holds what every reader shares (``FrameSettings``, ``Frames``,
``SparseJpegs``, ``BadInput``, the resize and JPEG encoding, the ``fps`` rule,
opening a video and the truncation check) and the full decode preparation
stores (``decode_video_file``: one decoding pass holding nothing but the JPEGs
made). The other readers:

  * ``frame_folders``: folders of numbered frame files (``read_frame_folder``);
  * ``video_seek``: only the frames prediction samples, by seeking, with the
    bytes the full decode makes (``read_video_frames``);
  * ``video_sources``: what a list entry names, read whole for storing
    (``resolve_source``, ``read_source``).

Anything wrong with one input raises ``BadInput`` with a reason meant for a
report, never a crash of the whole preparation.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import io
import math
import os
import re
from typing import (AbstractSet, Callable, Dict, Iterable, List, Optional,
                    Sequence, Tuple)

import av
import tensorflow as tf
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR
# A video whose decoded frames cover less than this fraction of the duration
# its container declares is reported as truncated.
MIN_DURATION_COVERED = 0.9
_DURATION_TAG = re.compile(r"^(\d+):(\d\d):(\d\d(?:\.\d+)?)$")
# Which stored frames to read, given how many there are (0-based indices).
Choose = Callable[[int], Iterable[int]]


class BadInput(Exception):
  """One video or frame folder that cannot be used; str() is the reason."""


@dataclasses.dataclass(frozen=True)
class FrameSettings:
  """How frames are stored.

  Attributes:
    short_side: resize so the shorter side has this many pixels (0 keeps the
      original size).
    fps: keep at most this many frames per second of video, the first frame
      of every 1/fps interval (0 keeps every frame; frame folders are never
      subsampled).
    jpeg_quality: JPEG quality of re-encoded frames (1..95).
  """
  short_side: int = 360
  fps: float = 0.0
  jpeg_quality: int = 90

  def validate(self) -> None:
    """Raises ValueError for settings out of range."""
    if self.short_side < 0:
      raise ValueError(f"short_side must be >= 0, got {self.short_side}")
    if self.fps < 0:
      raise ValueError(f"fps must be >= 0, got {self.fps}")
    if not 1 <= self.jpeg_quality <= 95:
      raise ValueError(f"jpeg_quality must be in 1..95, got "
                       f"{self.jpeg_quality}")


@dataclasses.dataclass
class Frames:
  """The stored frames of one video.

  Attributes:
    jpegs: JPEG bytes of every frame, in time order: a list, or a
      ``SparseJpegs`` when only some frames were read (``choose``).
    height: frame height in pixels.
    width: frame width in pixels.
  """
  jpegs: Sequence[bytes]
  height: int
  width: int


class SparseJpegs(collections.abc.Sequence):
  """JPEGs of some of a video's stored frames, indexed as the whole list.

  ``len()`` is the number of frames the video stores; looking up a frame that
  was not read raises KeyError (so does iterating past one), never a wrong
  frame.

  Attributes:
    decoded: frames decoded (frame files read) to read these.
  """

  def __init__(self, count: int, jpegs: Dict[int, bytes], decoded: int):
    """Holds the frames read.

    Args:
      count: frames the video stores.
      jpegs: stored index -> JPEG bytes, for the frames read.
      decoded: frames decoded (frame files read) to read them.
    """
    self._count = count
    self._jpegs = jpegs
    self.decoded = decoded

  def __len__(self) -> int:
    return self._count

  def __getitem__(self, index) -> bytes:
    index = int(index)
    if not 0 <= index < self._count:
      raise IndexError(f"frame {index} of {self._count}")
    if index not in self._jpegs:
      raise KeyError(f"stored frame {index} was not read")
    return self._jpegs[index]

  @property
  def indices(self) -> List[int]:
    """The stored indices read, ascending."""
    return sorted(self._jpegs)


def resized_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
  """(width, height) with the short side scaled to ``short_side``.

  Args:
    width: input width.
    height: input height.
    short_side: target short side (0 keeps the size).
  """
  if short_side <= 0 or min(width, height) == short_side:
    return width, height
  short, long_ = min(width, height), max(width, height)
  # Integer round-half-up, so the size never depends on float rounding.
  scaled = max(1, (2 * long_ * short_side + short) // (2 * short))
  return (scaled, short_side) if width >= height else (short_side, scaled)


def encode_frame(image: Image.Image, settings: FrameSettings
                 ) -> Tuple[bytes, int, int]:
  """Resizes one RGB frame and encodes it as JPEG.

  Args:
    image: a Pillow image (converted to RGB if needed).
    settings: target short side and JPEG quality.

  Returns:
    ``(jpeg bytes, height, width)``.
  """
  if image.mode != "RGB":
    image = image.convert("RGB")
  size = resized_size(image.width, image.height, settings.short_side)
  if size != image.size:
    image = image.resize(size, RESAMPLE)
  buf = io.BytesIO()
  # Baseline, non-optimised, default 4:2:0: every JPEG decoder reads it and
  # the bytes depend on nothing but the pixels and the quality.
  image.save(buf, format="JPEG", quality=settings.jpeg_quality)
  return buf.getvalue(), image.height, image.width


def tensorflow_decodes(jpeg: bytes, height: int, width: int) -> bool:
  """Whether ``tf.io.decode_jpeg`` reads ``jpeg`` as a height x width image.

  Pillow reads JPEGs that TensorFlow's older libjpeg-turbo refuses (lossless
  ones, for example), so an image Pillow opened may still stop training.

  Args:
    jpeg: the JPEG bytes.
    height: the height Pillow read.
    width: the width Pillow read.
  """
  try:
    shape = tf.io.decode_jpeg(jpeg, channels=3).shape
  except tf.errors.InvalidArgumentError:
    return False
  return tuple(shape[:2]) == (height, width)


def same_size(size: Optional[Tuple[int, int]], height: int, width: int,
              what: str) -> Tuple[int, int]:
  """(height, width) of a frame, checked against the frames read before.

  Args:
    size: (height, width) of the frames read before (None: none yet).
    height: this frame's height after resizing.
    width: this frame's width after resizing.
    what: the frame, as the message names it (``frame 3``, a file name).

  Returns:
    ``(height, width)``, the size the next frames must have.

  Raises:
    BadInput: a size other than the earlier frames'.
  """
  if size is not None and (height, width) != size:
    raise BadInput(f"{what} is {width}x{height} after resizing but earlier "
                   f"frames are {size[1]}x{size[0]}")
  return height, width


def chosen(choose: Choose, count: int) -> List[int]:
  """The distinct stored indices ``choose`` picks of ``count``, ascending.

  Args:
    choose: which stored frames to read, given the count.
    count: frames the video stores.
  """
  return sorted({int(i) for i in choose(count)})


def _frame_time(frame, index: int, rate) -> Optional[float]:
  if frame.time is not None:
    return float(frame.time)
  return index / float(rate) if rate else None


class FrameRateRule:
  """``FrameSettings.fps``: keeps the first frame of every 1/fps slot since
  the first frame (every frame when fps is 0)."""

  def __init__(self, fps: float):
    """Starts before the first frame.

    Args:
      fps: ``FrameSettings.fps`` (0 keeps every frame).
    """
    self._fps = fps
    self._first = None
    self._slots = set()

  def keeps(self, t: Optional[float]) -> bool:
    """Whether the next frame, shown at ``t`` seconds, is stored.

    Args:
      t: the frame's time in seconds (None: unknown).

    Raises:
      BadInput: no time while subsampling.
    """
    if not self._fps:
      return True
    if t is None:
      raise BadInput("frames have no timestamps and the stream no frame "
                     "rate, so --fps cannot subsample it")
    if self._first is None:
      self._first = t
    slot = math.floor((t - self._first) * self._fps + 1e-6)
    if slot in self._slots:
      return False
    self._slots.add(slot)
    return True


def _declared_duration(container, stream) -> Optional[float]:
  """The video stream's duration in seconds as the container declares it."""
  if stream.duration and stream.time_base:
    return float(stream.duration * stream.time_base)
  # Matroska/WebM: a per-track DURATION tag, HH:MM:SS.fraction.
  tag = _DURATION_TAG.match(stream.metadata.get("DURATION", ""))
  if tag:
    hours, minutes, seconds = tag.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
  # Last resort, the whole file's (an audio track may make it longer).
  if container.duration:
    return container.duration / 1_000_000  # FFmpeg's AV_TIME_BASE
  return None


def _frame_rate(stream):
  return stream.average_rate or stream.guessed_rate


def check_complete(container, stream, frames: int,
                   first_time: Optional[float],
                   last_time: Optional[float]) -> None:
  """Raises BadInput("truncated: ...") for a video missing its end.

  Args:
    container: the open container.
    stream: its video stream.
    frames: frames the stream has (decoded, or packets demuxed).
    first_time: the first frame's time in seconds (None: unknown).
    last_time: the last frame's time in seconds (None: unknown).
  """
  declared = stream.frames
  if declared and frames < MIN_DURATION_COVERED * declared:
    raise BadInput(f"truncated: decoded {frames} of the {declared} frames "
                   "the container declares")
  duration = _declared_duration(container, stream)
  rate = _frame_rate(stream)
  if duration and rate and last_time is not None:
    covered = last_time - first_time + 1.0 / float(rate)
    if covered < MIN_DURATION_COVERED * duration:
      raise BadInput(f"truncated: frames cover {covered:.2f} s of the "
                     f"{duration:.2f} s the container declares")


def open_video(path: str):
  """Opens a video file that has a video stream.

  Args:
    path: the file.

  Returns:
    The open PyAV container (close it, or use it in ``with``).

  Raises:
    BadInput: empty, unreadable, or no video stream.
  """
  try:
    if os.path.getsize(path) == 0:
      raise BadInput("empty file (0 bytes)")
    container = av.open(path)
  except BadInput:
    raise
  except (av.FFmpegError, OSError, ValueError) as e:
    raise BadInput(f"cannot open: {e}") from None
  if not container.streams.video:
    container.close()
    raise BadInput("no video stream")
  return container


@dataclasses.dataclass
class FramesRead:
  """What one reading of a video kept.

  Attributes:
    count: frames the video stores.
    jpegs: stored index -> JPEG bytes of the frames kept.
    size: (height, width) of the stored frames, None if none was kept.
    decoded: frames decoded.
  """
  count: int
  jpegs: Dict[int, bytes]
  size: Optional[Tuple[int, int]]
  decoded: int

  def frames(self, sparse: bool) -> Frames:
    """The frames kept: a list of all, or a ``SparseJpegs``.

    Args:
      sparse: make ``jpegs`` a ``SparseJpegs`` (only some frames were kept).
    """
    height, width = self.size or (0, 0)
    if sparse:
      return Frames(SparseJpegs(self.count, self.jpegs, self.decoded), height,
                    width)
    return Frames(list(self.jpegs.values()), height, width)


def decode_pass(path: str, settings: FrameSettings,
                wanted: Optional[AbstractSet[int]]) -> FramesRead:
  """Decodes a video from start to end, encoding the stored frames wanted.

  Args:
    path: the video file.
    settings: short side, frame-rate subsampling and JPEG quality.
    wanted: stored indices to keep; None keeps every stored frame.

  Returns:
    The frames kept and the stored-frame count.

  Raises:
    BadInput: see ``decode_video_file``.
  """
  with open_video(path) as container:
    stream = container.streams.video[0]
    rate = _frame_rate(stream)
    rule = FrameRateRule(settings.fps)
    jpegs, size, stored, decoded = {}, None, 0, 0
    first_time = last_time = None
    try:
      for frame in container.decode(stream):
        t = _frame_time(frame, decoded, rate)
        decoded += 1
        if t is not None:
          first_time = t if first_time is None else first_time
          last_time = t
        if not rule.keeps(t):
          continue
        if wanted is None or stored in wanted:
          jpeg, h, w = encode_frame(frame.to_image(), settings)
          size = same_size(size, h, w, f"frame {decoded}")
          jpegs[stored] = jpeg
        stored += 1
    except BadInput:
      raise
    except (av.FFmpegError, OSError, ValueError) as e:
      raise BadInput(f"decoding failed after {decoded} frame(s): {e}") from None
    if not stored:
      raise BadInput("no frames decoded")
    check_complete(container, stream, decoded, first_time, last_time)
  return FramesRead(stored, jpegs, size, decoded)


def decode_video_file(path: str, settings: FrameSettings) -> Frames:
  """Decodes a video file into resized JPEG frames, every stored frame.

  Args:
    path: a local video file FFmpeg can read.
    settings: short side, frame-rate subsampling and JPEG quality.

  Returns:
    The frames.

  Raises:
    BadInput: empty, unreadable, no video stream, a decoding error, no
      frames, or truncated (fewer frames than the container declares, or
      frames covering less than MIN_DURATION_COVERED of its duration).
  """
  return decode_pass(path, settings, None).frames(sparse=False)

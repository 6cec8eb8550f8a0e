"""Video files and frame folders -> resized JPEG frames, deterministically.

A video file is decoded with PyAV (FFmpeg); a frame folder holds
``image_00001.jpg``, ``image_00002.jpg``, ... (1-indexed, no gaps; see
``list_frame_folder`` for the other namings read). Every
frame is resized with Pillow (bilinear) so that its short side is
``short_side`` and encoded with Pillow's JPEG encoder at ``jpeg_quality``;
a frame folder's JPEG that already has that size is kept as it is when
TensorFlow's decoder (what training reads frames with) reads it, so every
stored frame decodes with ``tf.io.decode_jpeg``. The same input and settings
always give the same bytes (same decoder, same resize, same encoder), which
is what lets a resumed ``prepare`` run write shards identical to an
uninterrupted one.

Anything wrong with one input raises ``BadInput`` with a reason meant for a
report, never a crash of the whole preparation.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import av
import tensorflow as tf
from PIL import Image
from PIL import UnidentifiedImageError

# Frame files: image_00001.jpg (the papers' extraction), img_00001.jpg, or
# bare numbers (Something-Something's 00001.jpg / 000001.jpg); 1-indexed.
FRAME_FILE = re.compile(r"^(image_|img_|)(\d+)\.jpg$")
# Tried, in order, when a listed video path has no extension.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")
RESAMPLE = Image.Resampling.BILINEAR
# A video whose decoded frames cover less than this fraction of the duration
# its container declares is reported as truncated.
MIN_DURATION_COVERED = 0.9
_DURATION_TAG = re.compile(r"^(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


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
    jpegs: JPEG bytes of every frame, in time order.
    height: frame height in pixels.
    width: frame width in pixels.
  """
  jpegs: List[bytes]
  height: int
  width: int


def resolve_source(videos_dir: str, path: str) -> Tuple[str, str]:
  """Finds what a list entry names under ``videos_dir``.

  Args:
    videos_dir: the ``--videos`` directory.
    path: the entry's path, relative to ``videos_dir`` or absolute.

  Returns:
    ``(kind, full path)``; kind is ``"frames"`` for a directory, else
    ``"video"``. A path without an extension that is not there as given is
    tried with each of VIDEO_EXTENSIONS.

  Raises:
    BadInput: nothing found.
  """
  full = path if os.path.isabs(path) else os.path.join(videos_dir, path)
  if os.path.isdir(full):
    return "frames", full
  if os.path.isfile(full):
    return "video", full
  tried = [full]
  if not os.path.splitext(full)[1]:
    for ext in VIDEO_EXTENSIONS:
      if os.path.isfile(full + ext):
        return "video", full + ext
      tried.append(full + ext)
  raise BadInput(f"not found (tried {', '.join(tried)})")


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


def _add(frames: Optional[Frames], jpeg: bytes, height: int, width: int,
         what: str) -> Frames:
  if frames is None:
    return Frames([jpeg], height, width)
  if (height, width) != (frames.height, frames.width):
    raise BadInput(f"{what} is {width}x{height} after resizing but earlier "
                   f"frames are {frames.width}x{frames.height}")
  frames.jpegs.append(jpeg)
  return frames


def _frame_time(frame, index: int, rate) -> Optional[float]:
  if frame.time is not None:
    return float(frame.time)
  return index / float(rate) if rate else None


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


def decode_video_file(path: str, settings: FrameSettings) -> Frames:
  """Decodes a video file into resized JPEG frames.

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
  try:
    if os.path.getsize(path) == 0:
      raise BadInput("empty file (0 bytes)")
    container = av.open(path)
  except BadInput:
    raise
  except (av.FFmpegError, OSError, ValueError) as e:
    raise BadInput(f"cannot open: {e}") from None
  with container:
    if not container.streams.video:
      raise BadInput("no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    frames, decoded, slots = None, 0, set()
    first_time = last_time = None
    try:
      for frame in container.decode(stream):
        t = _frame_time(frame, decoded, rate)
        decoded += 1
        if t is not None:
          first_time = t if first_time is None else first_time
          last_time = t
        if settings.fps:
          if t is None:
            raise BadInput("frames have no timestamps and the stream no "
                           "frame rate, so --fps cannot subsample it")
          # Keep the first frame of every 1/fps slot since the first frame.
          slot = math.floor((t - first_time) * settings.fps + 1e-6)
          if slot in slots:
            continue
          slots.add(slot)
        jpeg, h, w = encode_frame(frame.to_image(), settings)
        frames = _add(frames, jpeg, h, w, f"frame {decoded}")
    except BadInput:
      raise
    except (av.FFmpegError, OSError, ValueError) as e:
      raise BadInput(f"decoding failed after {decoded} frame(s): {e}") from None
    if frames is None:
      raise BadInput("no frames decoded")
    declared = stream.frames
    if declared and decoded < MIN_DURATION_COVERED * declared:
      raise BadInput(f"truncated: decoded {decoded} of the {declared} frames "
                     "the container declares")
    duration = _declared_duration(container, stream)
    if duration and rate and last_time is not None:
      covered = last_time - first_time + 1.0 / float(rate)
      if covered < MIN_DURATION_COVERED * duration:
        raise BadInput(f"truncated: frames cover {covered:.2f} s of the "
                       f"{duration:.2f} s the container declares")
  return frames


@dataclasses.dataclass
class FrameFolder:
  """The numbered frame files of a folder.

  Attributes:
    names: frame number (1-based) -> file name.
    prefix: the naming style's prefix (``image_``, ``img_`` or empty).
    digits: zero-padded width of the numbers (for messages).
  """
  names: Dict[int, str]
  prefix: str
  digits: int

  @property
  def count(self) -> int:
    """The highest frame number present (0 when empty)."""
    return max(self.names) if self.names else 0

  def first_gap(self, upto: int) -> Optional[int]:
    """The lowest frame number in 1..upto without its file, or None."""
    return next((k for k in range(1, upto + 1) if k not in self.names), None)

  def name_of(self, k: int) -> str:
    """The file name frame ``k`` has (or would have) in this folder."""
    return self.names.get(k, f"{self.prefix}{k:0{self.digits}d}.jpg")


def list_frame_folder(folder: str) -> FrameFolder:
  """Finds the numbered frames of a folder.

  Args:
    folder: a directory of ``image_00001.jpg``... (``img_00001.jpg`` and
      bare ``00001.jpg`` / ``000001.jpg``, as in Something-Something frame
      extractions, are read too).

  Returns:
    The frames found.

  Raises:
    BadInput: unlistable, or two naming styles in one folder.
  """
  try:
    entries = sorted(os.listdir(folder))
  except OSError as e:
    raise BadInput(f"cannot list frame folder: {e}") from None
  matches = [m for m in map(FRAME_FILE.match, entries) if m]
  styles = sorted({m.group(1) for m in matches})
  if len(styles) > 1:
    raise BadInput("frame files named in several styles: " +
                   ", ".join(f"{p}NNNNN.jpg" for p in styles))
  names = {}
  for m in matches:
    k = int(m.group(2))
    if k in names:
      raise BadInput(f"frames {names[k]} and {m.group(0)} have the same "
                     "number")
    names[k] = m.group(0)
  if not names:
    return FrameFolder({}, "image_", 5)
  first = names[min(names)]
  digits = len(FRAME_FILE.match(first).group(2))
  return FrameFolder(names, styles[0], digits)


def read_frame_folder(folder: str, num_frames: Optional[int],
                      settings: FrameSettings) -> Frames:
  """Reads the numbered frames of a frame folder into stored frames.

  A frame already at the target size and stored as an RGB JPEG that
  TensorFlow decodes is kept byte for byte (re-encoding would only lose
  quality); others are resized and re-encoded. The TensorFlow check costs
  one more decode of the frames that would be kept, and only of those: a
  frame Pillow encodes is baseline JPEG, which TensorFlow reads.

  Args:
    folder: the frame folder (see ``list_frame_folder``).
    num_frames: frames the split list says it has (the first ``num_frames``
      are stored); None stores every frame.
    settings: short side and JPEG quality (``fps`` does not apply).

  Returns:
    The frames.

  Raises:
    BadInput: no frames, a missing frame (gap), fewer frames than listed,
      an unreadable image, or frames of different sizes.
  """
  found = list_frame_folder(folder)
  present = found.count
  if present == 0:
    raise BadInput("frame folder has no image_NNNNN.jpg frames")
  want = present if num_frames is None else num_frames
  gap = found.first_gap(min(want, present))
  if gap is not None:
    raise BadInput(f"missing frame {found.name_of(gap)} (frames "
                   f"1..{present} expected without gaps)")
  if present < want:
    raise BadInput(f"frame folder has {present} frames, the list says "
                   f"{num_frames}")
  if want == 0:
    raise BadInput("the list says 0 frames")
  frames = None
  for k in range(1, want + 1):
    name = found.name_of(k)
    try:
      with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
      with Image.open(io.BytesIO(data)) as image:
        image.load()
        size = resized_size(image.width, image.height, settings.short_side)
        if (image.format == "JPEG" and image.mode == "RGB" and
            size == image.size and
            tensorflow_decodes(data, image.height, image.width)):
          jpeg, h, w = data, image.height, image.width
        else:
          jpeg, h, w = encode_frame(image, settings)
    except UnidentifiedImageError:
      # Its message names the in-memory buffer (an object address).
      raise BadInput(f"cannot read {name}: not an image file Pillow can "
                     "read") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      raise BadInput(f"cannot read {name}: {e}") from None
    frames = _add(frames, jpeg, h, w, name)
  return frames


def read_source(kind: str, source: str, num_frames: Optional[int],
                settings: FrameSettings) -> Frames:
  """Reads the frames of a resolved list entry.

  Args:
    kind: ``"frames"`` or ``"video"``, from ``resolve_source``.
    source: the frame folder or video file.
    num_frames: the listed frame count (checked for frame folders only; for
      a video file it is informational).
    settings: how frames are stored.

  Returns:
    The frames.

  Raises:
    BadInput: see ``read_frame_folder`` and ``decode_video_file``.
  """
  if kind == "frames":
    return read_frame_folder(source, num_frames, settings)
  return decode_video_file(source, settings)

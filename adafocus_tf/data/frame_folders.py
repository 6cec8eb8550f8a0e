"""Frame folders -> stored JPEG frames, as ``video_decode`` stores videos.

A frame folder holds ``image_00001.jpg``, ``image_00002.jpg``, ...
(1-indexed, no gaps; see ``list_frame_folder`` for the other namings read).
A frame's JPEG that already has the stored size is kept as it is when
TensorFlow's decoder (what training reads frames with) reads it; any other
frame is resized and re-encoded as ``video_decode.encode_frame`` does, so
every stored frame decodes with ``tf.io.decode_jpeg``.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Dict, Optional, Tuple

from PIL import Image
from PIL import UnidentifiedImageError

from adafocus_tf.data import video_decode

# Frame files: image_00001.jpg (the papers' extraction), img_00001.jpg, or
# bare numbers (Something-Something's 00001.jpg / 000001.jpg); 1-indexed.
FRAME_FILE = re.compile(r"^(image_|img_|)(\d+)\.jpg$")


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
    video_decode.BadInput: unlistable, or two naming styles in one folder.
  """
  try:
    entries = sorted(os.listdir(folder))
  except OSError as e:
    raise video_decode.BadInput(f"cannot list frame folder: {e}") from None
  matches = [m for m in map(FRAME_FILE.match, entries) if m]
  styles = sorted({m.group(1) for m in matches})
  if len(styles) > 1:
    raise video_decode.BadInput("frame files named in several styles: " +
                                ", ".join(f"{p}NNNNN.jpg" for p in styles))
  names = {}
  for m in matches:
    k = int(m.group(2))
    if k in names:
      raise video_decode.BadInput(f"frames {names[k]} and {m.group(0)} have "
                                  "the same number")
    names[k] = m.group(0)
  if not names:
    return FrameFolder({}, "image_", 5)
  first = names[min(names)]
  digits = len(FRAME_FILE.match(first).group(2))
  return FrameFolder(names, styles[0], digits)


def _read_frame_file(folder: str, name: str,
                     settings: video_decode.FrameSettings
                     ) -> Tuple[bytes, int, int]:
  """One frame file as stored: kept as it is or re-encoded.

  Args:
    folder: the frame folder.
    name: the file's name.
    settings: short side and JPEG quality.

  Returns:
    ``(jpeg bytes, height, width)``.

  Raises:
    video_decode.BadInput: unreadable.
  """
  try:
    with open(os.path.join(folder, name), "rb") as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      size = video_decode.resized_size(image.width, image.height,
                                       settings.short_side)
      if (image.format == "JPEG" and image.mode == "RGB" and
          size == image.size and
          video_decode.tensorflow_decodes(data, image.height, image.width)):
        return data, image.height, image.width
      return video_decode.encode_frame(image, settings)
  except UnidentifiedImageError:
    # Its message names the in-memory buffer (an object address).
    raise video_decode.BadInput(f"cannot read {name}: not an image file "
                                "Pillow can read") from None
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise video_decode.BadInput(f"cannot read {name}: {e}") from None


def read_frame_folder(folder: str, num_frames: Optional[int],
                      settings: video_decode.FrameSettings,
                      choose: Optional[video_decode.Choose] = None
                      ) -> video_decode.Frames:
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
    choose: read only the stored indices this picks, given the count (the
      folder is still checked for gaps); None reads every frame.

  Returns:
    The frames; ``jpegs`` a ``video_decode.SparseJpegs`` with ``choose``.

  Raises:
    video_decode.BadInput: no frames, a missing frame (gap), fewer frames
      than listed, an unreadable image, or frames of different sizes.
  """
  found = list_frame_folder(folder)
  present = found.count
  if present == 0:
    raise video_decode.BadInput("frame folder has no image_NNNNN.jpg frames")
  want = present if num_frames is None else num_frames
  gap = found.first_gap(min(want, present))
  if gap is not None:
    raise video_decode.BadInput(f"missing frame {found.name_of(gap)} (frames "
                                f"1..{present} expected without gaps)")
  if present < want:
    raise video_decode.BadInput(f"frame folder has {present} frames, the list "
                                f"says {num_frames}")
  if want == 0:
    raise video_decode.BadInput("the list says 0 frames")
  jpegs, size = {}, None
  for i in range(want) if choose is None else video_decode.chosen(choose, want):
    name = found.name_of(i + 1)
    jpeg, h, w = _read_frame_file(folder, name, settings)
    size = video_decode.same_size(size, h, w, name)
    jpegs[i] = jpeg
  return video_decode.FramesRead(want, jpegs, size, len(jpegs)).frames(
      sparse=choose is not None)

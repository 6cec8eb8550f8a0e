"""What a split list entry names, read whole: a frame folder or a video file.

``resolve_source`` finds the entry under ``--videos``; ``read_source`` stores
every frame of it (``frame_folders.read_frame_folder`` or
``video_decode.decode_video_file``), as preparation does.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from adafocus_tf.data import frame_folders
from adafocus_tf.data import video_decode

# Tried, in order, when a listed video path has no extension.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")


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
    video_decode.BadInput: nothing found.
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
  raise video_decode.BadInput(f"not found (tried {', '.join(tried)})")


def read_source(kind: str, source: str, num_frames: Optional[int],
                settings: video_decode.FrameSettings) -> video_decode.Frames:
  """Reads the frames of a resolved list entry (every frame, for storing).

  Args:
    kind: ``"frames"`` or ``"video"``, from ``resolve_source``.
    source: the frame folder or video file.
    num_frames: the listed frame count (checked for frame folders only; for
      a video file it is informational).
    settings: how frames are stored.

  Returns:
    The frames.

  Raises:
    video_decode.BadInput: see ``frame_folders.read_frame_folder`` and
      ``video_decode.decode_video_file``.
  """
  if kind == "frames":
    return frame_folders.read_frame_folder(source, num_frames, settings)
  return video_decode.decode_video_file(source, settings)

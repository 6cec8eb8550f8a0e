"""Some stored frames of a video file, with the bytes the full decode makes.

Prediction needs only the frames it samples, and sampling needs only the
number of stored frames: ``read_video_frames`` counts them in a demux pass
over the packets (no decoding; packet timestamps sorted into presentation
order, so the ``fps`` rule counts exactly as a full decode does), then seeks
to the keyframe before each frame it needs and decodes forward from there,
making the same JPEG bytes as ``video_decode.decode_video_file``. Memory is
bounded by the frames kept and time by the frames decoded, not by the video's
length. A stream that cannot be read that way (packets without timestamps, a
container that does not seek, frames that do not come out as the packets
said) is decoded in one streaming pass keeping only the needed frames.
"""
from __future__ import annotations

import array
import itertools
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import av
import numpy as np

from adafocus_tf.data import video_decode


class _CannotSeek(Exception):
  """The stream cannot be read by seeking; decode it from the start."""


class _PacketIndex:
  """A video stream's packets as a demux pass sees them (no decoding).

  Packets are numbered in decode order (their "position"); a frame's "rank"
  is its place in presentation order, the order a decoder outputs frames in.
  Only compact arrays are kept: 8 bytes a packet.

  Attributes:
    pts: int64 [N] presentation timestamps by position (stream time base).
    timed: whether every packet has a distinct timestamp (else the ranks
      are unknown and the stream is read by ``video_decode.decode_pass``).
    order: int64 [N] position of each rank.
    sorted_pts: int64 [N] timestamps by rank.
    keyframes: int64 [K] positions of the keyframes, ascending.
  """

  def __init__(self, pts: Sequence[int], timed: bool,
               keyframes: Sequence[int], seek_offsets: Dict[int, List[int]]):
    """Builds the lookups.

    Args:
      pts: timestamps by position (0 for a packet without one).
      timed: every packet has a timestamp.
      keyframes: positions of the keyframes, ascending.
      seek_offsets: keyframe position -> timestamps to seek to it with.
    """
    self.pts = np.asarray(pts, np.int64)
    self.order = np.argsort(self.pts, kind="stable")
    self.sorted_pts = self.pts[self.order]
    self.timed = timed and bool(np.all(np.diff(self.sorted_pts) > 0))
    self.keyframes = np.asarray(keyframes, np.int64)
    self._seek_offsets = seek_offsets

  def __len__(self) -> int:
    return len(self.pts)

  def time(self, rank: int, time_base) -> float:
    """Seconds of frame ``rank``, computed exactly as ``frame.time`` is."""
    return (float(self.sorted_pts[rank]) * time_base.numerator /
            time_base.denominator)

  def stored_ranks(self, time_base, fps: float) -> np.ndarray:
    """int64 [S] the ranks of the stored frames (``FrameSettings.fps``)."""
    if not fps:
      return np.arange(len(self))
    rule = video_decode.FrameRateRule(fps)
    return np.array([r for r in range(len(self))
                     if rule.keeps(self.time(r, time_base))], np.int64)

  def rank_of(self, position: int) -> int:
    """The presentation rank of the packet at ``position``."""
    return int(np.searchsorted(self.sorted_pts, self.pts[position]))

  def keyframe_for(self, rank: int) -> int:
    """The keyframe to decode from to get frame ``rank``.

    The last keyframe before the frame in decode order, or an earlier one
    while the frame is shown before that keyframe (a leading picture of an
    open GOP may refer to the GOP before).

    Raises:
      _CannotSeek: no keyframe comes first.
    """
    k = int(np.searchsorted(self.keyframes, self.order[rank], "right")) - 1
    while k > 0 and self.pts[self.keyframes[k]] > self.sorted_pts[rank]:
      k -= 1
    if k < 0:
      raise _CannotSeek()
    return int(self.keyframes[k])

  def seek_offsets(self, keyframe: int) -> List[int]:
    """Timestamps to try seeking to keyframe ``keyframe`` with: its pts
    (Matroska indexes those), then its dts if lower (MP4 and AVI index
    those)."""
    return self._seek_offsets[keyframe]

  def landing(self, packet, keyframe: int) -> int:
    """The position of the first packet after a seek to ``keyframe``.

    Raises:
      _CannotSeek: not a keyframe at or before ``keyframe``.
    """
    if packet.pts is None or not packet.is_keyframe:
      raise _CannotSeek()
    rank = int(np.searchsorted(self.sorted_pts, packet.pts))
    if rank == len(self) or self.sorted_pts[rank] != packet.pts:
      raise _CannotSeek()
    position = int(self.order[rank])
    if position > keyframe:
      raise _CannotSeek()
    return position


def _index_packets(container, stream) -> _PacketIndex:
  """One demux pass over the video stream's packets.

  Args:
    container: the open container, at its start.
    stream: its video stream.

  Returns:
    The index.

  Raises:
    video_decode.BadInput: the demuxer fails (a damaged file).
  """
  pts, keyframes, seek_offsets, timed = array.array("q"), [], {}, True
  try:
    for packet in container.demux(stream):
      # Empty packets only drain the decoder; discarded ones (before an MP4
      # edit list's start) give no frame.
      if not packet.size or packet.is_discard:
        continue
      if packet.pts is None:
        timed = False
      elif packet.is_keyframe:
        keyframes.append(len(pts))
        seek_offsets[len(pts)] = [packet.pts]
        if packet.dts is not None and packet.dts < packet.pts:
          seek_offsets[len(pts)].append(packet.dts)
      pts.append(packet.pts if packet.pts is not None else 0)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise video_decode.BadInput(
        f"decoding failed after {len(pts)} frame(s): {e}") from None
  return _PacketIndex(pts, timed, keyframes, seek_offsets)


class _SeekingReader:
  """Decodes chosen frames of an indexed stream, seeking between GOPs.

  Every frame that comes out is checked against the index (its timestamp
  must be the next one in presentation order), so a frame is only ever kept
  at the rank the full decode gives it; any surprise raises _CannotSeek.
  """

  def __init__(self, container, stream, index: _PacketIndex,
               settings: video_decode.FrameSettings):
    """Reads from an open container.

    Args:
      container: the open container.
      stream: its video stream.
      index: its packets (``timed``).
      settings: how frames are stored.
    """
    self._container = container
    self._stream = stream
    self._index = index
    self._settings = settings
    self._position = -1  # position of the last packet given to the decoder
    self.decoded = 0

  def read(self, targets: Dict[int, int]) -> Tuple[Dict[int, bytes],
                                                   Optional[Tuple[int, int]]]:
    """Decodes the frames of the given ranks.

    Args:
      targets: rank -> stored index, of the frames wanted.

    Returns:
      ``(stored index -> JPEG bytes, (height, width))``.

    Raises:
      video_decode.BadInput: frames of different sizes.
      _CannotSeek: the stream did not behave as its index says.
    """
    jpegs, size, frames = {}, None, None
    for rank in sorted(targets):
      if targets[rank] in jpegs:
        continue
      keyframe = self._index.keyframe_for(rank)
      # Reuse the decoder while the keyframe is behind it (same GOP, or the
      # next GOP starts before the frame); else skip ahead.
      if frames is None or keyframe > self._position:
        frames = self._frames_from(keyframe)
      for got, frame in frames:
        if got in targets and targets[got] not in jpegs:
          jpeg, h, w = video_decode.encode_frame(frame.to_image(),
                                                 self._settings)
          size = video_decode.same_size(size, h, w, f"frame {got + 1}")
          jpegs[targets[got]] = jpeg
        if got >= rank:
          break
      if targets[rank] not in jpegs:
        raise _CannotSeek()
    return jpegs, size

  def _seek(self, keyframe: int) -> Tuple[Iterator, int]:
    """Seeks to ``keyframe`` (or a keyframe before it).

    Returns:
      ``(packets, position)``: the demuxer from the keyframe landed on, and
      that keyframe's position.
    """
    for offset in self._index.seek_offsets(keyframe):
      try:
        self._container.seek(offset, stream=self._stream)
        packets = self._container.demux(self._stream)
        first = next(p for p in packets if p.size and not p.is_discard)
      except (av.FFmpegError, OSError, StopIteration):
        raise _CannotSeek() from None
      try:
        position = self._index.landing(first, keyframe)
      except _CannotSeek:
        continue  # landed after it: try the next offset
      return itertools.chain([first], packets), position
    raise _CannotSeek()

  def _frames_from(self, keyframe: int) -> Iterator[Tuple[int, object]]:
    """Seeks to ``keyframe`` and yields ``(rank, frame)`` from there."""
    packets, position = self._seek(keyframe)
    index = self._index
    floor = index.pts[position]
    rank = index.rank_of(position)
    try:
      for packet in packets:
        if packet.size and not packet.is_discard:
          if position >= len(index) or packet.pts != index.pts[position]:
            raise _CannotSeek()
          self._position = position
          position += 1
        for frame in packet.decode():
          self.decoded += 1
          # Leading pictures of the GOP the seek landed in: not needed.
          if frame.pts is not None and frame.pts < floor:
            continue
          if rank >= len(index) or frame.pts != index.sorted_pts[rank]:
            raise _CannotSeek()
          yield rank, frame
          rank += 1
    except (av.FFmpegError, OSError, ValueError):
      # A damaged stream: video_decode.decode_pass reports it as the full
      # decode does.
      raise _CannotSeek() from None


def read_video_frames(path: str, settings: video_decode.FrameSettings,
                      choose: video_decode.Choose) -> video_decode.Frames:
  """Reads only some stored frames of a video file, as the full decode would.

  Counts the stored frames in a demux pass, then decodes the frames
  ``choose`` picks by seeking (see the module docstring); a stream that
  cannot be read that way is decoded in one streaming pass keeping only
  those frames (two if its count was not known from the demux pass).

  Args:
    path: a local video file FFmpeg can read.
    settings: short side, frame-rate subsampling and JPEG quality.
    choose: the stored indices to read, given the count (e.g. the TSN
      centres of T segments).

  Returns:
    The frames, ``jpegs`` a ``video_decode.SparseJpegs``: ``len()`` the
    stored-frame count of ``video_decode.decode_video_file``, and the JPEG
    bytes it makes for the frames read.

  Raises:
    video_decode.BadInput: as ``video_decode.decode_video_file``; damage in
      frames not read goes unnoticed unless the demux pass sees it.
  """
  with video_decode.open_video(path) as container:
    stream = container.streams.video[0]
    index = _index_packets(container, stream)
    count = len(index)
    if index.timed and count:
      ranks = index.stored_ranks(stream.time_base, settings.fps)
      video_decode.check_complete(container, stream, len(index),
                                  index.time(0, stream.time_base),
                                  index.time(len(index) - 1, stream.time_base))
      count = len(ranks)
      reader = _SeekingReader(container, stream, index, settings)
      try:
        jpegs, size = reader.read(
            {int(ranks[i]): i for i in video_decode.chosen(choose, count)})
        return video_decode.FramesRead(count, jpegs, size,
                                       reader.decoded).frames(sparse=True)
      except _CannotSeek:
        pass
  # Decode from the start; the demux pass's count is a guess when packets
  # lack timestamps (or frames did not come out as packets said).
  read = video_decode.decode_pass(path, settings,
                                  set(video_decode.chosen(choose, count)))
  if read.count != count:
    read = video_decode.decode_pass(
        path, settings, set(video_decode.chosen(choose, read.count)))
  return read.frames(sparse=True)

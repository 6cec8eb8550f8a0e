"""Test helpers: real encoded videos, frame folders, and reading shards back.

Frame i of every video or folder made here is one solid colour,
``frame_colour(i)``, so that after decoding, resizing and JPEG the frame
order and count of a prepared video can be checked from colour means
(``frame_means``, ``match_frames``).
"""
import os
import struct
from typing import Dict, List, Sequence

import adafocus_tf  # pylint: disable=unused-import
import av
import numpy as np
from PIL import Image

from adafocus_tf.data import schema

# Codec -> (PyAV encoder, encoder options). yuv420p throughout.
CODECS = {
    "h264": ("libx264", {"crf": "12", "preset": "ultrafast"}),
    "mpeg4": ("mpeg4", {"qscale": "2"}),
    "vp8": ("libvpx", {"crf": "4", "b": "2M"}),
}


def frame_colour(i: int) -> np.ndarray:
  """The RGB colour of frame i (0-based): distinct for i < 12, inside YUV's
  gamut so a codec's colour conversion keeps it within a few levels."""
  return np.array([40 + 15 * (i % 12), 200 - 13 * (i % 12),
                   60 + 60 * (i % 3)], np.uint8)


def write_video(path: str, num_frames: int, codec: str = "h264",
                width: int = 64, height: int = 48, fps: int = 10,
                audio_seconds: float = 0.0) -> str:
  """Encodes a video of solid-colour frames with PyAV.

  Args:
    path: output file; the extension picks the container (.mp4, .avi,
      .mkv, .webm).
    num_frames: frames to encode.
    codec: a key of CODECS.
    width: frame width (even).
    height: frame height (even).
    fps: frame rate.
    audio_seconds: also mux a silent AAC track this long (0: none).

  Returns:
    ``path``.
  """
  encoder, options = CODECS[codec]
  with av.open(path, "w") as container:
    stream = container.add_stream(encoder, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = dict(options)
    audio = None
    if audio_seconds:
      audio = container.add_stream("aac", rate=16000)
      audio.layout = "mono"
    for i in range(num_frames):
      img = np.broadcast_to(frame_colour(i), (height, width, 3)).copy()
      frame = av.VideoFrame.from_ndarray(img, format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
    if audio is not None:
      silence = np.zeros((1, 1024), np.float32)
      for k in range(int(audio_seconds * 16000 / 1024)):
        chunk = av.AudioFrame.from_ndarray(silence, format="fltp",
                                           layout="mono")
        chunk.sample_rate, chunk.pts = 16000, k * 1024
        for packet in audio.encode(chunk):
          container.mux(packet)
      for packet in audio.encode():
        container.mux(packet)
  return path


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
  return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def lossless_jpeg(pixels: np.ndarray) -> bytes:
  """Encodes RGB pixels as a lossless JPEG (ITU T.81 annex H, SOF3).

  Pillow (libjpeg-turbo 3) decodes it exactly, as an RGB JPEG; TensorFlow's
  decoder (libjpeg-turbo 2.1) rejects it ("Unsupported JPEG process: SOF
  type 0xc3"): real JPEG bytes that a check with Pillow alone lets through.

  Args:
    pixels: uint8 [H, W, 3].

  Returns:
    The JPEG file's bytes.
  """
  h, w, c = pixels.shape
  p = pixels.astype(np.int64)
  # Predictor 1 (the left neighbour); the first row predicts from the left,
  # the first column from above, the first sample from 128.
  pred = np.empty_like(p)
  pred[0, 0] = 128
  pred[0, 1:] = p[0, :-1]
  pred[1:, 0] = p[:-1, 0]
  pred[1:, 1:] = p[1:, :-1]
  bits = []
  for d in (p - pred).reshape(-1).tolist():  # interleaved, one MCU a pixel
    size = abs(d).bit_length()
    # One Huffman table: difference category s has the 5-bit code s.
    bits.append(format(size, "05b"))
    if size:
      bits.append(format(d if d > 0 else d + (1 << size) - 1, f"0{size}b"))
  stream = "".join(bits)
  stream += "1" * (-len(stream) % 8)
  data = bytearray()
  for i in range(0, len(stream), 8):
    data.append(int(stream[i:i + 8], 2))
    if data[-1] == 0xFF:
      data.append(0)  # byte stuffing
  sof = struct.pack(">BHHB", 8, h, w, c) + b"".join(
      bytes([k + 1, 0x11, 0]) for k in range(c))
  dht = bytes([0, 0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
  sos = bytes([c]) + b"".join(bytes([k + 1, 0]) for k in range(c)) + \
      bytes([1, 0, 0])  # predictor 1, no point transform
  return (b"\xff\xd8" + _jpeg_segment(0xC3, sof) + _jpeg_segment(0xC4, dht) +
          _jpeg_segment(0xDA, sos) + bytes(data) + b"\xff\xd9")


def write_frame_folder(folder: str, num_frames: int, width: int = 64,
                       height: int = 48, missing: Sequence[int] = (),
                       quality: int = 95,
                       pattern: str = "image_{:05d}.jpg",
                       lossless: bool = False) -> str:
  """Writes ``image_00001.jpg``... (1-indexed) solid-colour JPEG frames.

  Args:
    folder: the folder (created).
    num_frames: frames; file k holds ``frame_colour(k - 1)``.
    width: frame width.
    height: frame height.
    missing: 1-based frame numbers not to write (gaps).
    quality: JPEG quality.
    pattern: file name of frame k, ``pattern.format(k)``.
    lossless: write lossless JPEGs (``lossless_jpeg``), which TensorFlow
      cannot decode, instead of Pillow's baseline ones.

  Returns:
    ``folder``.
  """
  os.makedirs(folder, exist_ok=True)
  for k in range(1, num_frames + 1):
    if k in missing:
      continue
    img = np.broadcast_to(frame_colour(k - 1), (height, width, 3)).copy()
    path = os.path.join(folder, pattern.format(k))
    if lossless:
      with open(path, "wb") as f:
        f.write(lossless_jpeg(img))
    else:
      Image.fromarray(img).save(path, quality=quality)
  return folder


def corrupt_copy(src: str, dst: str, keep_fraction: float = 1.0,
                 garble: int = 0, seed: int = 0) -> str:
  """Writes a damaged copy of a file: truncated and/or with random bytes.

  Args:
    src: the good file.
    dst: where the copy goes.
    keep_fraction: keep this leading fraction of the bytes.
    garble: overwrite this many random bytes after the first quarter.
    seed: random seed of the garbling.

  Returns:
    ``dst``.
  """
  with open(src, "rb") as f:
    data = bytearray(f.read())
  data = data[:int(len(data) * keep_fraction)]
  rng = np.random.default_rng(seed)
  for i in rng.integers(len(data) // 4, len(data), garble):
    data[i] = int(rng.integers(0, 256))
  with open(dst, "wb") as f:
    f.write(bytes(data))
  return dst


def read_split(split_dir: str) -> List[Dict]:
  """Every video of a prepared split (local or s3://), in shard order.

  Args:
    split_dir: the split directory.

  Returns:
    One dict per video: ``video_id``, ``source`` (str), ``labels`` (list),
    ``num_frames``, ``height``, ``width`` (int), ``frames`` (list of JPEG
    bytes).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from adafocus_tf.data import shards  # pylint: disable=g-import-not-at-top
  out = []
  for raw in tf.data.TFRecordDataset(shards.list_records(split_dir)):
    v = schema.parse_video(raw)
    out.append({
        "video_id": v[schema.VIDEO_ID].numpy().decode(),
        "source": v[schema.SOURCE].numpy().decode(),
        "labels": v[schema.LABELS].numpy().tolist(),
        "num_frames": int(v[schema.NUM_FRAMES]),
        "height": int(v[schema.HEIGHT]),
        "width": int(v[schema.WIDTH]),
        "frames": list(v[schema.FRAMES].numpy()),
    })
  return out


def frame_means(jpegs: Sequence[bytes]) -> np.ndarray:
  """Mean RGB colour of each JPEG frame, float [N, 3]."""
  import io  # pylint: disable=g-import-not-at-top
  return np.array([np.asarray(Image.open(io.BytesIO(j)).convert("RGB"),
                              np.float64).reshape(-1, 3).mean(0)
                   for j in jpegs])


def match_frames(jpegs: Sequence[bytes], candidates: int = 12) -> List[int]:
  """The source frame index of each JPEG: the nearest ``frame_colour``.

  Args:
    jpegs: stored frames.
    candidates: frame indices 0..candidates-1 to choose from.
  """
  palette = np.stack([frame_colour(i) for i in range(candidates)]).astype(
      np.float64)
  means = frame_means(jpegs)
  dist = np.linalg.norm(means[:, None, :] - palette[None], axis=-1)
  return dist.argmin(1).tolist()


def colour_error(jpegs: Sequence[bytes], indices: Sequence[int]) -> float:
  """Largest per-channel difference between frame means and their colours."""
  expected = np.stack([frame_colour(i) for i in indices]).astype(np.float64)
  return float(np.abs(frame_means(jpegs) - expected).max())

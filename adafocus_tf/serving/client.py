"""What the TF Serving clients share: the videos they send, the answers read.

``rest_client.RestClient`` and ``grpc_client.GrpcClient`` send the requests
``docs/SERVING.md`` documents; this module makes their inputs from a video
and reads their answers. For ``tf_example`` a REST instance is ``{"b64":
<base64 of a serialized SequenceExample>}``; for ``serving_default`` it is
one video's uint8 frames as nested lists [N][H][W][3]. The gRPC input is
``examples`` (DT_STRING [B]) or ``frames`` (DT_UINT8 [B, N, H, W, 3]).

N, the frames to send, is read from the model's signature metadata (``GET
.../metadata``, or ``GetModelMetadata``: dimension 1 of ``frames``). The V1
model takes T: the client sends just the T frames of TSN centre sampling
instead of the whole video, and decodes only those (``frames_to_send``:
the frames are counted in a demux pass, then only the T are decoded by
seeking; see ``video_seek.read_video_frames``). The two-stream model takes
any number (``ALL_FRAMES``) and samples its glance and focus frames itself:
the client sends every frame.
"""
from __future__ import annotations

import base64
import functools
import io
import os
from typing import Dict, Optional, Sequence

import numpy as np

from adafocus_tf.data import frame_folders
from adafocus_tf.data import schema
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_seek
from adafocus_tf.serving import EXAMPLES_INPUT
from adafocus_tf.serving import EXAMPLE_SIGNATURE
from adafocus_tf.serving import FRAMES_INPUT
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import SIGNATURES

# The frames dimension of a model that takes any number of frames (the
# two-stream model, which samples its streams from them): send them all.
ALL_FRAMES = -1


class ServingError(RuntimeError):
  """The server refused a request or could not be reached; str() says why."""


# -- videos ------------------------------------------------------------------
def tsn_centre_indices(num_stored: int, num_frames: int) -> np.ndarray:
  """TSN evaluation sampling: the centre frame of each of T equal segments.

  The same float32 arithmetic as ``sampling.segment_indices`` (so that
  sending only these frames gives the model the frames it would sample).

  Args:
    num_stored: frames of the video.
    num_frames: T.

  Returns:
    int [T] indices into the video's frames.
  """
  n = np.float32(num_stored)
  position = (np.arange(num_frames, dtype=np.float32) + np.float32(0.5)) * (
      n / np.float32(num_frames))
  return np.clip(np.floor(position).astype(np.int64), 0, num_stored - 1)


def _sends_every_frame(num_frames: Optional[int]) -> bool:
  """Whether ``num_frames`` (see ``sample_frames``) means every frame."""
  return not num_frames or num_frames == ALL_FRAMES


def read_video(path: str, short_side: int = 0, jpeg_quality: int = 95,
               num_frames: Optional[int] = None) -> video_decode.Frames:
  """Reads a video file (PyAV) or a frame folder into JPEG frames.

  Args:
    path: a video file or a folder of ``image_00001.jpg``...
    short_side: resize so the short side has this many pixels (0: keep).
    jpeg_quality: quality of re-encoded frames.
    num_frames: T: read only the T frames ``sample_frames`` sends (``jpegs``
      is then a ``video_decode.SparseJpegs``); None or ``ALL_FRAMES``: read
      every frame.

  Raises:
    video_decode.BadInput: unreadable input.
  """
  settings = video_decode.FrameSettings(short_side=short_side,
                                        jpeg_quality=jpeg_quality)
  choose = None
  if not _sends_every_frame(num_frames):
    choose = functools.partial(tsn_centre_indices, num_frames=num_frames)
  if os.path.isdir(path):
    return frame_folders.read_frame_folder(path, None, settings, choose)
  if choose is None:
    return video_decode.decode_video_file(path, settings)
  return video_seek.read_video_frames(path, settings, choose)


def sample_frames(frames: video_decode.Frames,
                  num_frames: Optional[int]) -> video_decode.Frames:
  """The frames to send of a video.

  Args:
    frames: the video's JPEG frames (all, or at least these).
    num_frames: T: the T frames of TSN centre sampling; None or
      ``ALL_FRAMES``: every frame.
  """
  if _sends_every_frame(num_frames):
    return frames
  idx = tsn_centre_indices(len(frames.jpegs), num_frames)
  return video_decode.Frames([frames.jpegs[i] for i in idx], frames.height,
                             frames.width)


def frames_to_send(path: str, num_frames: Optional[int],
                   short_side: int = 0) -> video_decode.Frames:
  """The frames to send of a video file or frame folder, reading only those.

  Args:
    path: a video file or a folder of ``image_00001.jpg``...
    num_frames: see ``sample_frames``.
    short_side: resize so the short side has this many pixels (0: keep).

  Raises:
    video_decode.BadInput: unreadable input.
  """
  return sample_frames(read_video(path, short_side, num_frames=num_frames),
                       num_frames)


def encode_example(frames: video_decode.Frames, video_id: str,
                   source: str = "") -> bytes:
  """A serialized SequenceExample of the project's format, without labels.

  Args:
    frames: the JPEG frames.
    video_id: any id (echoed nowhere; required by the format).
    source: where the video came from.
  """
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
  ex = example_pb2.SequenceExample()
  ctx = ex.context.feature
  ctx[schema.VIDEO_ID].bytes_list.value.append(video_id.encode())
  ctx[schema.LABELS].int64_list.SetInParent()
  ctx[schema.NUM_FRAMES].int64_list.value.append(len(frames.jpegs))
  ctx[schema.HEIGHT].int64_list.value.append(frames.height)
  ctx[schema.WIDTH].int64_list.value.append(frames.width)
  ctx[schema.SOURCE].bytes_list.value.append(source.encode())
  steps = ex.feature_lists.feature_list[schema.FRAMES].feature
  for jpeg in frames.jpegs:
    steps.append(feature_pb2.Feature(
        bytes_list=feature_pb2.BytesList(value=[jpeg])))
  return ex.SerializeToString()


def decode_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
  """uint8 [T, H, W, 3] RGB pixels of JPEG frames (Pillow)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = []
  for jpeg in jpegs:
    with Image.open(io.BytesIO(jpeg)) as image:
      out.append(np.asarray(image.convert("RGB"), np.uint8))
  return np.stack(out)


# -- REST instances ------------------------------------------------------------
def example_instances(serialized: Sequence[bytes]) -> list:
  """REST instances of the ``tf_example`` signature: base64 objects."""
  return [{"b64": base64.b64encode(s).decode("ascii")} for s in serialized]


def frames_instances(videos: Sequence[np.ndarray]) -> list:
  """REST instances of ``serving_default``: uint8 [N, H, W, 3] as lists."""
  out = []
  for v in videos:
    v = np.asarray(v)
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
      raise ValueError(f"a video is uint8 [N, H, W, 3], got {v.dtype} "
                       f"{v.shape}")
    out.append(v.tolist())
  return out


# -- one video end to end ----------------------------------------------------
def video_inputs(path: str, signature: str, num_frames: Optional[int],
                 short_side: int = 0):
  """The REST instance and the gRPC input of one video.

  Args:
    path: video file or frame folder.
    signature: ``tf_example`` or ``serving_default``.
    num_frames: T, or ``ALL_FRAMES`` (every frame, for a model that takes
      any number); None sends every frame to ``tf_example`` (which samples
      them as evaluation does) and is an error for ``serving_default``.
    short_side: resize frames so the short side has this many pixels
      before sending (0: as decoded).

  Returns:
    (REST instance, {input name: array with a batch of one}).

  Raises:
    ValueError: ``serving_default`` without ``num_frames``, or an unknown
      signature.
  """
  frames = frames_to_send(path, num_frames, short_side)
  if signature == EXAMPLE_SIGNATURE:
    ex = encode_example(frames, os.path.basename(path.rstrip("/")), path)
    return example_instances([ex])[0], {
        EXAMPLES_INPUT: np.array([ex], dtype=object)}
  if signature == SERVING_DEFAULT:
    if not num_frames:
      raise ValueError("serving_default needs the model's number of frames: "
                       "give --num_frames (T, or -1 for every frame; the "
                       "server's metadata did not say)")
    pixels = decode_jpegs(frames.jpegs)
    return frames_instances([pixels])[0], {FRAMES_INPUT: pixels[None]}
  raise ValueError(f"unknown signature {signature!r}; choose one of "
                   f"{SIGNATURES}")


def _text(x) -> str:
  return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def format_prediction(name: str, pred: Dict[str, np.ndarray]) -> str:
  """A short human-readable summary of one video's outputs."""
  classes = [_text(c) for c in np.asarray(pred["top_k_classes"]).ravel()]
  probs = np.asarray(pred["top_k_probabilities"]).ravel()
  ranked = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, probs))
  return f"{name}: {ranked} (exit step {int(pred['exit_step'])})"


def to_json(pred: Dict[str, np.ndarray]) -> dict:
  """One video's outputs as JSON-able values."""
  out = {}
  for k, v in pred.items():
    v = np.asarray(v)
    out[k] = ([_text(x) for x in v.ravel()] if v.dtype.kind in "OSU"
              else v.tolist())
  return out

"""Client side of an exported AdaFocus model under TF Serving (REST and gRPC).

Builds the requests ``docs/SERVING.md`` documents and reads the answers:

  * REST: ``POST <url>/v1/models/<model>[/versions/<v>]:predict`` with
    ``{"signature_name": ..., "instances": [...]}``. For ``tf_example`` an
    instance is ``{"b64": <base64 of a serialized SequenceExample>}``; for
    ``serving_default`` it is one video's uint8 frames as nested lists
    [N][H][W][3]. The answer is ``{"predictions": [{output: value}, ...]}``.
  * gRPC: ``PredictionService/Predict`` with a ``PredictRequest`` whose
    input is ``examples`` (DT_STRING [B]) or ``frames`` (DT_UINT8
    [B, N, H, W, 3]).

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
import dataclasses
import functools
import io
import json
import os
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Sequence

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


# -- REST ----------------------------------------------------------------------
def model_path(model: str, version: Optional[int] = None) -> str:
  """``/v1/models/<model>[/versions/<v>]``."""
  path = f"/v1/models/{model}"
  return f"{path}/versions/{int(version)}" if version else path


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


def predict_body(signature: str, instances: list) -> dict:
  """The JSON body of a REST predict request (row format)."""
  return {"signature_name": signature, "instances": instances}


def _http(url: str, body: Optional[dict], timeout: float) -> dict:
  data = None if body is None else json.dumps(body).encode("utf-8")
  req = urllib.request.Request(
      url, data=data, method="GET" if body is None else "POST",
      headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as resp:
      return json.loads(resp.read().decode("utf-8"))
  except urllib.error.HTTPError as e:
    # TF Serving answers errors as {"error": "<message>"}.
    text = e.read().decode("utf-8", "replace")
    try:
      text = json.loads(text).get("error", text)
    except ValueError:
      pass
    raise ServingError(f"{url}: HTTP {e.code}: {text}") from None
  except (urllib.error.URLError, OSError) as e:
    raise ServingError(f"{url}: {e}") from None


def parse_predictions(response: dict) -> List[Dict[str, np.ndarray]]:
  """Per-video outputs of a REST predict answer.

  Args:
    response: the JSON answer, row format (``predictions``: one object per
      instance) or columnar (``outputs``: one list per output).

  Returns:
    One dict per video: output name -> numpy array.
  """
  if "predictions" in response:
    rows = response["predictions"]
    return [{k: np.asarray(v) for k, v in row.items()} for row in rows]
  if "outputs" in response:
    cols = {k: np.asarray(v) for k, v in response["outputs"].items()}
    n = len(next(iter(cols.values())))
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]
  raise ServingError(f"not a predict answer: keys {sorted(response)}")


def num_frames_of(signature_defs: dict) -> Optional[int]:
  """The frames a model takes, from a JSON signature-def map.

  Args:
    signature_defs: signature name -> JSON ``SignatureDef``.

  Returns:
    Dimension 1 of ``serving_default``'s ``frames``: T, or ``ALL_FRAMES``
    (any number); None when the map does not say.
  """
  try:
    dims = signature_defs[SERVING_DEFAULT]["inputs"][FRAMES_INPUT][
        "tensor_shape"]["dim"]
    return int(dims[1]["size"])
  except (KeyError, IndexError, TypeError, ValueError):
    return None


@dataclasses.dataclass
class RestClient:
  """TF Serving's REST API for one model.

  Attributes:
    url: server root, e.g. ``http://localhost:8501``.
    model: the model name (``MODEL_NAME`` of the server).
    version: a model version, or None for the latest.
    timeout: seconds per request.
  """
  url: str
  model: str
  version: Optional[int] = None
  timeout: float = 60.0

  def predict_url(self) -> str:
    return self.url.rstrip("/") + model_path(self.model, self.version) + (
        ":predict")

  def metadata_url(self) -> str:
    return self.url.rstrip("/") + model_path(self.model, self.version) + (
        "/metadata")

  def num_frames(self) -> Optional[int]:
    """T or ``ALL_FRAMES``, from the model's metadata (None: unavailable)."""
    meta = _http(self.metadata_url(), None, self.timeout)
    return num_frames_of(meta.get("metadata", {}).get("signature_def", {})
                         .get("signature_def", {}))

  def predict(self, signature: str, instances: list
              ) -> List[Dict[str, np.ndarray]]:
    """Sends one predict request; returns one output dict per instance."""
    body = predict_body(signature, instances)
    return parse_predictions(_http(self.predict_url(), body, self.timeout))


# -- gRPC ----------------------------------------------------------------------
def grpc_request(model: str, signature: str, inputs: Dict[str, np.ndarray],
                 version: Optional[int] = None):
  """A ``PredictRequest``.

  Args:
    model: model name.
    signature: signature name.
    inputs: input name -> array (``examples``: bytes [B]; ``frames``: uint8
      [B, N, H, W, 3]).
    version: model version, or None for the latest.

  Returns:
    ``tensorflow_serving.apis.predict_pb2.PredictRequest``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  req = predict_pb2.PredictRequest()
  req.model_spec.name = model
  req.model_spec.signature_name = signature
  if version:
    req.model_spec.version.value = int(version)
  for name, value in inputs.items():
    if name == EXAMPLES_INPUT:
      proto = tf.make_tensor_proto(list(value), dtype=tf.string,
                                   shape=[len(value)])
    else:
      proto = tf.make_tensor_proto(np.asarray(value))
    req.inputs[name].CopyFrom(proto)
  return req


def parse_grpc_response(response) -> List[Dict[str, np.ndarray]]:
  """Per-video outputs of a ``PredictResponse``."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cols = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
  n = len(next(iter(cols.values())))
  return [{k: v[i] for k, v in cols.items()} for i in range(n)]


@dataclasses.dataclass
class GrpcClient:
  """TF Serving's gRPC API for one model.

  Attributes:
    target: ``host:port`` of the gRPC port (8500 by default).
    model: the model name.
    version: a model version, or None for the latest.
    timeout: seconds per call.
  """
  target: str
  model: str
  version: Optional[int] = None
  timeout: float = 60.0

  def __post_init__(self):
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self._grpc = grpc
    # Requests carry whole videos: lift gRPC's 4 MB default message cap.
    options = [("grpc.max_send_message_length", -1),
               ("grpc.max_receive_message_length", -1)]
    self._channel = grpc.insecure_channel(self.target, options=options)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)

  def close(self):
    self._channel.close()

  def _call(self, method, request):
    try:
      return method(request, timeout=self.timeout)
    except self._grpc.RpcError as e:
      raise ServingError(f"{self.target}: {e.code().name}: {e.details()}"
                         ) from None

  def num_frames(self) -> Optional[int]:
    """T or ``ALL_FRAMES``, from ``GetModelMetadata`` (None: unavailable)."""
    from tensorflow_serving.apis import get_model_metadata_pb2  # pylint: disable=g-import-not-at-top
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = self.model
    if self.version:
      req.model_spec.version.value = int(self.version)
    req.metadata_field.append("signature_def")
    resp = self._call(self._stub.GetModelMetadata, req)
    defs = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(defs)
    sig = defs.signature_def.get(SERVING_DEFAULT)
    if sig is None or FRAMES_INPUT not in sig.inputs:
      return None
    dims = sig.inputs[FRAMES_INPUT].tensor_shape.dim
    return int(dims[1].size) if len(dims) > 1 else None

  def predict(self, signature: str, inputs: Dict[str, np.ndarray]
              ) -> List[Dict[str, np.ndarray]]:
    """Sends one Predict call; returns one output dict per video."""
    req = grpc_request(self.model, signature, inputs, self.version)
    return parse_grpc_response(self._call(self._stub.Predict, req))


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

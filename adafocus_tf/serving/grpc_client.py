"""TF Serving's gRPC API for one exported AdaFocus model (``GrpcClient``).

``PredictionService/Predict`` with a ``PredictRequest`` whose input is
``examples`` (DT_STRING [B]) or ``frames`` (DT_UINT8 [B, N, H, W, 3]) (the
inputs of ``client.video_inputs``). The frames a model takes (T, or
``client.ALL_FRAMES`` for any number) are read from ``GetModelMetadata``
(``docs/SERVING.md``).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from adafocus_tf.serving import EXAMPLES_INPUT
from adafocus_tf.serving import FRAMES_INPUT
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import client


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
      raise client.ServingError(
          f"{self.target}: {e.code().name}: {e.details()}") from None

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

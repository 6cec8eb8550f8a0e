"""TF Serving's REST API for one exported AdaFocus model (``RestClient``).

``POST <url>/v1/models/<model>[/versions/<v>]:predict`` with
``{"signature_name": ..., "instances": [...]}`` (the instances of
``client.video_inputs``). The answer is ``{"predictions": [{output: value},
...]}``. The frames a model takes (T, or ``client.ALL_FRAMES`` for any
number) are read from ``GET .../metadata`` (``docs/SERVING.md``).
"""
from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Dict, List, Optional

import numpy as np

from adafocus_tf.serving import FRAMES_INPUT
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import client


def model_path(model: str, version: Optional[int] = None) -> str:
  """``/v1/models/<model>[/versions/<v>]``."""
  path = f"/v1/models/{model}"
  return f"{path}/versions/{int(version)}" if version else path


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
    raise client.ServingError(f"{url}: HTTP {e.code}: {text}") from None
  except (urllib.error.URLError, OSError) as e:
    raise client.ServingError(f"{url}: {e}") from None


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
  raise client.ServingError(f"not a predict answer: keys {sorted(response)}")


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

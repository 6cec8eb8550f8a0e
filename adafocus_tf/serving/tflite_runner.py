"""A TensorFlow Lite flatbuffer run on any number of videos.

``make_interpreter`` loads a flatbuffer (``tflite_model.convert``) with
TFLite's XNNPACK delegate; ``Runner`` invokes its ``serving_default``
signature on N videos, in chunks of the batch size fixed in the flatbuffer
(the last one padded). ``tflite_model.TFLiteModel`` runs a TFLite export
through it, ``Predictor`` its cached flatbuffers.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from adafocus_tf.serving import SERVING_DEFAULT

DEFAULT_THREADS = 2


def make_interpreter(model_content: bytes, num_threads: int = DEFAULT_THREADS,
                     xnnpack: bool = True) -> tf.lite.Interpreter:
  """A TFLite interpreter (allocated), with XNNPACK unless told otherwise.

  Args:
    model_content: the flatbuffer.
    num_threads: CPU threads of the interpreter (and XNNPACK).
    xnnpack: apply XNNPACK (the default op resolver's delegate for float
      models); False runs TFLite's reference builtin kernels.
  """
  resolver = (tf.lite.experimental.OpResolverType.AUTO if xnnpack else
              tf.lite.experimental.OpResolverType
              .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  interpreter = tf.lite.Interpreter(model_content=model_content,
                                    num_threads=num_threads,
                                    experimental_op_resolver_type=resolver)
  # The default delegate is applied lazily by the interpreter's own
  # allocate_tensors or invoke; a signature runner allocates and invokes its
  # subgraph directly, which skips that, so without this call XNNPACK never
  # runs (2.6x slower for the glance net: docs/BENCHMARKS.md, issue 15).
  interpreter.allocate_tensors()
  return interpreter


class Runner:
  """A flatbuffer's signature run on any number of videos.

  Args:
    model_content: the flatbuffer (``tflite_model.convert``).
    num_threads: interpreter threads.
    xnnpack: see ``make_interpreter``.

  Attributes:
    batch_size: videos per invocation, fixed in the flatbuffer.
    input_shapes: {input name: shape}.
    output_shapes: {output name: shape}.
  """

  def __init__(self, model_content: bytes,
               num_threads: int = DEFAULT_THREADS, xnnpack: bool = True):
    self.interpreter = make_interpreter(model_content, num_threads, xnnpack)
    self._run = self.interpreter.get_signature_runner(SERVING_DEFAULT)
    details = self._run.get_input_details()
    self.input_shapes = {k: tuple(int(x) for x in v["shape"])
                         for k, v in details.items()}
    self.output_shapes = {k: tuple(int(x) for x in v["shape"])
                          for k, v in self._run.get_output_details().items()}
    self.batch_size = next(iter(self.input_shapes.values()))[0]

  def __call__(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Outputs of N videos.

    Args:
      inputs: {input name: float32 [N, T_k, S, S, 3]}, N >= 1.

    Returns:
      {output name: [N, ...]}.

    Raises:
      ValueError: missing inputs or shapes that do not fit (named).
    """
    if set(inputs) != set(self.input_shapes):
      raise ValueError(f"inputs {sorted(inputs)}; the model takes "
                       f"{sorted(self.input_shapes)}")
    arrays = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    n = None
    for k, v in arrays.items():
      want = self.input_shapes[k][1:]
      if v.ndim != len(want) + 1 or v.shape[1:] != want:
        raise ValueError(f"input {k!r} has shape {v.shape}; the model takes "
                         f"[N, {', '.join(str(x) for x in want)}]")
      if n is not None and v.shape[0] != n:
        raise ValueError("the inputs hold different numbers of videos: "
                         f"{ {k: a.shape[0] for k, a in arrays.items()} }")
      n = v.shape[0]
    if not n:
      raise ValueError("empty batch: give at least one video")
    b = self.batch_size
    chunks = []
    for start in range(0, n, b):
      part = {k: v[start:start + b] for k, v in arrays.items()}
      real = next(iter(part.values())).shape[0]
      if real < b:
        # The batch is fixed in the flatbuffer: pad, then drop the padding.
        part = {k: np.concatenate([v, np.zeros((b - real,) + v.shape[1:],
                                               np.float32)])
                for k, v in part.items()}
      out = self._run(**part)
      chunks.append({k: v[:real] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

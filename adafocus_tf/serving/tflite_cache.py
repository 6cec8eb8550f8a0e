"""A trained run's TFLite models, converted once and cached beside it.

The flatbuffers sit in ``<run>/tflite/`` (for an ``s3://`` run, and a
read-only one without them, in the local
``tflite_model.default_cache_dir()``), named by the part converted (the
whole recognizer or its glance), the patch choice and a digest of
what they are made from: the weights' content
(``final_weights.FinalWeights.digest``, not their checkpoints' paths), the
config, the patch choice and the package's cache version. Weights retrained
or replaced under the same checkpoint name get a new conversion; the run's
outdated files of that part are deleted then.
"""
from __future__ import annotations

import os

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.serving import tflite_model

# The run's subdirectory holding them.
DIRECTORY = "tflite"


def cache_path(run, patches: str, part: str) -> str:
  """Where the flatbuffer of ``part`` is cached (module doc).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice it is converted for.
    part: ``tflite_model.WHOLE`` or ``tflite_model.GLANCE``.
  """
  key = tflite_model.cache_key(
      weights=run.weights.digest, config=run.cfg.to_json(), patches=patches,
      batch_size=1, part=part)
  local = os.path.join(tflite_model.default_cache_dir(), f"{key}.tflite")
  if run.remote:
    return local
  own = os.path.join(run.path, DIRECTORY, f"{_stem(patches, part)}{key}.tflite")
  return local if run.caches_locally and not os.path.exists(own) else own


def _stem(patches: str, part: str) -> str:
  """The start of the cache names of ``part`` for a patch choice."""
  prefix = "glance" if part == tflite_model.GLANCE else "predictor"
  return f"{prefix}-{patches}-"


def _prune(run, patches: str, part: str, keep: str) -> None:
  """Deletes the run's cached flatbuffers of ``part`` other than ``keep``
  (made from weights or a config the run no longer has)."""
  if run.caches_locally:
    return
  stem = os.path.join(run.path, DIRECTORY, _stem(patches, part))
  for path in io_utils.glob(f"{stem}*.tflite"):
    if path != keep:
      try:
        os.remove(path)
      except OSError:
        pass  # read-only, or another process removed it first


def flatbuffer(run, recognizer, patches: str, part: str) -> bytes:
  """The run's flatbuffer of ``part``, converted and cached when missing.

  Args:
    run: a ``trained_run.TrainedRun``.
    recognizer: its recognizer for ``patches``, or a function returning it
      (called only when the flatbuffer must be converted: a cached one
      needs no Keras model built).
    patches: the patch choice.
    part: ``tflite_model.WHOLE`` or ``tflite_model.GLANCE``.

  Raises:
    tflite_model.ConversionError: the model has no TFLite form (why).
  """
  path = cache_path(run, patches, part)
  if io_utils.exists(path):
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  if not isinstance(recognizer, recognizer_lib.Recognizer):
    recognizer = recognizer()
  blob = tflite_model.cached_flatbuffer(recognizer, path, part=part)
  _prune(run, patches, part, path)
  return blob

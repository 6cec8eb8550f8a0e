"""The whole recognizer as a TensorFlow Lite model, for fast CPU inference.

``export_tflite`` writes one version directory::

  <model>/<version>/
    model.tflite     float32 flatbuffer: glance -> policy -> patches ->
                     focus -> classifier, one signature ``serving_default``
    adafocus.json    the SavedModel export's metadata (class names, frames,
                     frame size, ...) plus ``tflite``: batch size, inputs,
                     outputs, normalisation

The flatbuffer holds builtin ops only (``tflite_ops`` replaces the two image
ops that have no builtin) and no loops (``tflite_ops`` unrolls them), so
TFLite's XNNPACK delegate takes it; on a CPU it is the project's fastest
inference path at batch 1 (docs/BENCHMARKS.md, issue 15). ``convert_glance``
converts the glance network alone (``Predictor``'s hybrid backend).

Its signature takes normalised float32 frames, one input per frame stream
(``frames``; or ``glance_frames`` and ``focus_frames``), [batch, T_k, S, S,
3] with the batch size fixed at conversion (TFLite lowers the recurrent
loops to static shapes). It returns ``module.ServingModule``'s outputs but
``top_k_classes`` (strings: ``TFLiteModel`` names the classes from the
metadata), plus ``patch_offsets``. ``TFLiteModel`` runs any number of
videos (in chunks of the batch size, the last one padded) from raw uint8
frames (preprocessed as the SavedModel's ``serving_default`` does) or from
network inputs (``tflite_runner.Runner``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

import adafocus_tf
from adafocus_tf import io_utils
from adafocus_tf import local_cache
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.inference import clips
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.policy import patch_choice
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess
from adafocus_tf.serving import tflite_ops
from adafocus_tf.serving import tflite_runner

MODEL_FILE = "model.tflite"
PATCH_OFFSETS = module_lib.PATCH_OFFSETS
METADATA_FILE = export.METADATA_FILE
FORMAT = "tflite"
# What ``TFLiteModel`` returns: the flatbuffer's outputs and the class names.
OUTPUTS = module_lib.OUTPUTS + (PATCH_OFFSETS,)
# Changes when the flatbuffer's contract changes (invalidates caches).
CACHE_VERSION = 2  # 2: recurrent loops unrolled (XNNPACK takes the graph)
# What ``cached_flatbuffer`` converts: the whole recognizer, or its glance.
WHOLE = "recognizer"
GLANCE = "glance"
# What the user reads of each part.
_PART_NAMES = {WHOLE: "the whole model", GLANCE: "the glance network"}


class ConversionError(RuntimeError):
  """The recognizer did not convert to TensorFlow Lite; str() says why."""


def _input_specs(cfg: ExperimentConfig, batch_size: int):
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  s = cfg.data.frame_size
  return {key: tf.TensorSpec([batch_size, count, s, s, 3], tf.float32,
                             name=key)
          for key, count in clips.frame_streams(cfg).items()}


def convert(module: module_lib.ServingModule, cfg: ExperimentConfig,
            batch_size: int = 1) -> bytes:
  """The module's network as a float32 TFLite flatbuffer (builtin ops only).

  Args:
    module: the serving module (its recognizer, thresholds, top k); its
      variables become constants.
    cfg: the run's config.
    batch_size: videos per call, fixed in the flatbuffer.

  Returns:
    The flatbuffer.

  Raises:
    ConversionError: an op without a TFLite builtin form (named).
  """

  def network(**inputs):
    return module.numeric_outputs(inputs)
  return _flatbuffer(network, _input_specs(cfg, batch_size), module)


def convert_glance(recognizer: recognizer_lib.Recognizer,
                   batch_size: int = 1) -> bytes:
  """The recognizer's glance alone as a float32 TFLite flatbuffer.

  Its signature takes the glance stream (``recognizer.glance_key``),
  normalised float32 [batch_size, T_g, S, S, 3], and returns
  ``recognizer.glance(batch).as_outputs()``: what ``Recognizer.__call__``'s
  ``glance`` argument takes back (``Predictor``'s hybrid backend).

  Args:
    recognizer: a float32 recognizer.
    batch_size: videos per call, fixed in the flatbuffer.

  Raises:
    ConversionError: see ``convert``.
  """
  key = recognizer.glance_key
  spec = _input_specs(recognizer.cfg, batch_size)[key]

  def glance(**inputs):
    return recognizer.glance(inputs).as_outputs()
  # The variables alone (as ``ServingModule`` holds them): the converter
  # saves what it is given, and saving the Keras models would trace them.
  holder = tf.Module()
  holder.glance_variables = list(recognizer.model.glance.variables) + (
      list(recognizer.policy_glance.variables)
      if recognizer.policy_glance is not None else [])
  return _flatbuffer(glance, {key: spec}, holder)


def _flatbuffer(fn, specs, trackable) -> bytes:
  """``fn(**specs)`` traced with ``tflite_ops``' builtin forms, converted.

  Args:
    fn: keyword tensors -> dict of tensors.
    specs: {input name: tf.TensorSpec} (static shapes).
    trackable: holds the variables ``fn`` reads (frozen as constants).

  Raises:
    ConversionError: see ``convert``.
  """
  try:
    with tflite_ops.builtin_ops():
      concrete = tf.function(fn, autograph=False).get_concrete_function(
          **specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete], trackable)
    # Builtins only: XNNPACK runs them, and a phone's runtime has them.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
  except tflite_ops.UnsupportedOp as e:
    raise ConversionError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    # The converter raises its own error types with the op names in them.
    raise ConversionError(f"TensorFlow Lite conversion failed: "
                          f"{str(e).strip()[-2000:]}") from None


def tflite_metadata(metadata: dict, module: module_lib.ServingModule,
                    cfg: ExperimentConfig, batch_size: int) -> dict:
  """The SavedModel export's metadata with the TFLite model's contract.

  Args:
    metadata: from ``export.build_module``.
    module: the serving module converted.
    cfg: the run's config.
    batch_size: the flatbuffer's batch size.
  """
  d = cfg.data
  outputs = {k: v for k, v in module.outputs_doc().items()
             if k != "top_k_classes"}
  outputs[module_lib.PATCH_OFFSETS] = [
      "int32", [batch_size, outputs["patch_boxes"][1][1],
                module.recognizer.offset_dims]]
  for v in outputs.values():
    v[1][0] = batch_size
  meta = dict(metadata)
  meta.pop("signatures")
  meta["format"] = FORMAT
  meta[FORMAT] = {
      "model_file": MODEL_FILE,
      "signature": SERVING_DEFAULT,
      "batch_size": batch_size,
      "inputs": {key: ["float32", [batch_size, count, d.frame_size,
                                   d.frame_size, 3]]
                 for key, count in clips.frame_streams(cfg).items()},
      "outputs": outputs,
      # pixel / 255, minus mean, over std, per RGB channel, after the crop
      # and resize of ``preprocess`` (evaluation's transform).
      "normalization": {"scale": 1.0 / 255.0, "mean": list(d.mean),
                        "std": list(d.std)},
      "patch_size": cfg.model.patch_size,
  }
  return meta


def export_tflite(run: str, export_dir: str, batch_size: int = 1,
                  early_exit_on: bool = False,
                  thresholds: Optional[np.ndarray] = None,
                  class_names: Optional[Sequence[str]] = None,
                  allow_unfinished: bool = False) -> dict:
  """Exports a trained run as a TFLite version directory (module doc).

  Args:
    run: the run directory (``export.build_module``).
    export_dir: the version directory to write; must not exist.
    batch_size: videos per call of the flatbuffer.
    early_exit_on: see ``export.build_module``.
    thresholds: see ``export.build_module``.
    class_names: see ``export.build_module``.
    allow_unfinished: see ``export.build_module``.

  Returns:
    The metadata written to ``adafocus.json``.

  Raises:
    FileExistsError: ``export_dir`` exists.
    FileNotFoundError: the run has no checkpoint.
    ConversionError: the model did not convert (nothing is written).
    RuntimeError, ValueError: as ``export.build_module``.
  """
  if io_utils.exists(export_dir):
    raise FileExistsError(f"{export_dir} exists; export to a new version "
                          "directory")
  module, metadata = export.build_module(run, early_exit_on, thresholds,
                                         class_names, allow_unfinished)
  cfg = module.cfg
  blob = convert(module, cfg, batch_size)
  meta = tflite_metadata(metadata, module, cfg, batch_size)

  def fill(tmp):
    with open(os.path.join(tmp, MODEL_FILE), "wb") as f:
      f.write(blob)
    io_utils.write_json(os.path.join(tmp, METADATA_FILE), meta)
  export.write_version(export_dir, fill)
  return meta


# -- running -------------------------------------------------------------------
class TFLiteModel:
  """A TFLite export (``export_tflite``) loaded for predictions.

  Args:
    path: the version directory, or its ``model.tflite`` (the metadata is
      read from beside it).
    num_threads: interpreter threads.
    xnnpack: apply the XNNPACK delegate (see
      ``tflite_runner.make_interpreter``).

  Attributes:
    metadata: the ``adafocus.json``.
    cfg: the exported run's config.
    class_names: C class names.

  Raises:
    FileNotFoundError: no model or metadata there.
    ValueError: a directory that is not a TFLite export.
  """

  def __init__(self, path: str,
               num_threads: int = tflite_runner.DEFAULT_THREADS,
               xnnpack: bool = True):
    directory = (path if not path.endswith(".tflite")
                 else os.path.dirname(path) or ".")
    meta_path = io_utils.join(directory, METADATA_FILE)
    model_path = (path if path.endswith(".tflite")
                  else io_utils.join(directory, MODEL_FILE))
    for p in (model_path, meta_path):
      if not io_utils.exists(p):
        raise FileNotFoundError(f"{p} not found: {path} is not a TFLite "
                                "export (adafocus-export --format=tflite)")
    self.metadata = io_utils.read_json(meta_path)
    if self.metadata.get("format") != FORMAT:
      raise ValueError(f"{meta_path}: format "
                       f"{self.metadata.get('format')!r}, not {FORMAT!r}")
    self.cfg = ExperimentConfig.from_dict(self.metadata["config"])
    self.class_names = list(self.metadata["class_names"])
    with tf.io.gfile.GFile(model_path, "rb") as f:
      self.runner = tflite_runner.Runner(f.read(), num_threads, xnnpack)
    self._preprocess = tf.function(
        lambda frames: preprocess.preprocess_frames(frames, self.cfg,
                                                    with_indices=True),
        autograph=False, reduce_retracing=True)

  def predict(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Outputs (``OUTPUTS``) of normalised network inputs.

    Args:
      inputs: {stream: float32 [N, T_k, S, S, 3]} (a plain array: the V1
        model's ``frames``).

    Returns:
      {output: [N, ...]}, ``top_k_classes`` named from the metadata;
      ``patch_frames`` (a model whose plans choose the frames) index the
      frames of the inputs' patch stream.
    """
    if not isinstance(inputs, dict):
      inputs = {"frames": inputs}
    out = self.runner(inputs)
    names = np.array(self.class_names, dtype=object)
    out["top_k_classes"] = names[out["top_k_indices"]]
    return out

  def predict_frames(self, frames) -> Dict[str, np.ndarray]:
    """Outputs of raw videos, preprocessed as ``serving_default`` does.

    Args:
      frames: uint8 [N, n, H, W, 3] RGB (n = the metadata's ``num_frames``
        for the V1 model; any n for the two-stream model, which samples its
        streams from them).

    Returns:
      As ``predict``, but ``patch_frames`` index the n frames given (as
      the SavedModel's ``serving_default`` gives them).

    Raises:
      ValueError: frames that are not uint8 RGB videos, or the wrong
        number of frames (named).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
      raise ValueError(f"frames must be uint8 [N, n, H, W, 3] RGB, got "
                       f"{frames.dtype} {list(frames.shape)}")
    try:
      inputs, indices = self._preprocess(tf.constant(frames))
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(e.message) from None
    out = self.predict({k: v.numpy() for k, v in inputs.items()})
    if module_lib.PATCH_FRAMES in out:
      stream = indices[patch_choice.patch_stream(self.cfg)].numpy()
      out[module_lib.PATCH_FRAMES] = np.take_along_axis(
          stream, out[module_lib.PATCH_FRAMES], axis=1)
    return out


# -- cached conversion for in-process inference -------------------------------
def cache_key(**fields) -> str:
  """A file-name-safe digest of what a flatbuffer was made from.

  Args:
    **fields: JSON-able values (checkpoints, patch choice, batch size...);
      TensorFlow's and the package's versions are added.
  """
  fields = dict(fields, tensorflow=tf.__version__,
                adafocus_tf=adafocus_tf.__version__, version=CACHE_VERSION)
  text = json.dumps(fields, sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_cache_dir() -> str:
  """``$ADAFOCUS_TFLITE_CACHE``, else ``tflite/`` of the machine's cache
  folder (``local_cache``; by default ``~/.cache/adafocus-tf/tflite``)."""
  return (os.environ.get("ADAFOCUS_TFLITE_CACHE")
          or local_cache.path("tflite"))


def cached_flatbuffer(recognizer: recognizer_lib.Recognizer, path: str,
                      batch_size: int = 1, part: str = WHOLE) -> bytes:
  """A flatbuffer of the recognizer from ``path``, converted and written
  first when missing.

  The file is written atomically (under a temporary name, then renamed), so
  a killed conversion leaves nothing a later call would read.

  Args:
    recognizer: a float32 recognizer; its default patch choice is
      converted.
    path: the cache file (its name should carry ``cache_key``).
    batch_size: videos per call.
    part: ``WHOLE`` (the recognizer, ``convert``) or ``GLANCE`` (its glance
      alone, ``convert_glance``).

  Raises:
    ConversionError: see ``convert``.
  """
  if io_utils.exists(path):
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  start = time.perf_counter()
  # The first call on a run pays this (tens of seconds): say what it waits
  # for.
  logging.info("converting %s to TFLite (once: cached in %s)",
               _PART_NAMES[part], os.path.dirname(path))
  if part == GLANCE:
    blob = convert_glance(recognizer, batch_size)
  else:
    cfg = recognizer.cfg
    module = module_lib.ServingModule(
        recognizer, [str(i) for i in range(cfg.data.num_classes)])
    blob = convert(module, cfg, batch_size)
  try:
    io_utils.makedirs(os.path.dirname(path) if "://" not in path
                      else path.rsplit("/", 1)[0])
    io_utils.write_bytes(path, blob)
  except (OSError, tf.errors.OpError) as e:
    # A read-only run directory: the flatbuffer still serves this process.
    logging.warning("could not cache the TFLite model at %s (%s)", path, e)
  logging.info("converted %s to TFLite in %.1f s", _PART_NAMES[part],
               time.perf_counter() - start)
  return blob

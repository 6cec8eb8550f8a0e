"""A run ready to predict: its compiled forward pass, built once and cached.

Opening a run for prediction the long way builds the Keras models (the
glance and focus backbones, hundreds of layers), restores the checkpoints,
folds the batch norms, counts the MACs and then traces the whole recognizer
in Python on the first call: tens of seconds before a 1 s prediction. The
ready form keeps what predicting needs once that is done:

  <cache>/<variant>-<patches>-<key>/
    saved_model.pb, variables/   a SavedModel of a ``tf.Module`` with the
                                 predictor's compiled forward pass only,
                                 ``forward`` (batch dimension None)
    regions/                     a SavedModel of ``patch_regions`` (no
                                 variables: the TFLite backend loads it
                                 alone)
    ready.json                   the facts ``Predictor.predict`` reads of
                                 the recognizer (exit steps' MACs, glance
                                 frames, region layout...), the key and the
                                 SavedModel's file sizes; written last

``variant`` is ``tf`` (``forward(inputs, seeds)``: the whole recognizer) or
``hybrid`` (``forward(inputs, seeds, glance)``: all but the glance network,
whose outputs the TFLite glance gives). The key digests what the form is
made from, as the TFLite cache's (``serving/tflite_cache.py``): the weights'
content, the config, the patch choice, the variant, the Keras policy's
compute dtype, TensorFlow's and the package's versions and
``CACHE_VERSION``. ``<cache>`` is ``<run>/ready``, or
for an ``s3://`` or read-only run ``local_cache_dir()``.

A form is written under a temporary name and renamed into place, so a
killed build leaves nothing a later call trusts; one whose files do not
match ``ready.json`` or that fails to load is deleted and rebuilt. Building
a new form deletes the run's outdated ones of the same variant and patches.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference import glance_output
from adafocus_tf.profiling import flops
from adafocus_tf.serving import tflite_model

# Changes when the saved functions or ``ready.json`` change (invalidates
# the cached forms).
CACHE_VERSION = 2
# The run's subdirectory holding the forms.
DIRECTORY = "ready"
INFO_FILE = "ready.json"
# The subdirectory holding the ``patch_regions`` SavedModel.
REGIONS_DIRECTORY = "regions"
# The variants: the whole recognizer, or all but its glance.
TF = "tf"
HYBRID = "hybrid"
VARIANTS = (TF, HYBRID)
# A temporary form's name starts with this (listings skip it).
_TEMP_PREFIX = ".tmp-"
# A temporary form this old is a killed build's (a build takes minutes).
STALE_TEMP_SECONDS = 24 * 3600


def local_cache_dir() -> str:
  """Where forms of ``s3://`` and read-only runs go: ``ready`` beside the
  local TFLite cache (``tflite_model.default_cache_dir``)."""
  return os.path.join(os.path.dirname(tflite_model.default_cache_dir()),
                      DIRECTORY)


def cache_dir(run) -> str:
  """The directory holding a run's ready forms (module doc).

  Args:
    run: a ``trained_run.TrainedRun``.
  """
  if run.caches_locally:
    return local_cache_dir()
  return os.path.join(run.path, DIRECTORY)


def cache_key(run, patches: str, variant: str) -> str:
  """The digest naming a form (module doc).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice.
    variant: one of ``VARIANTS``.
  """
  return tflite_model.cache_key(
      weights=run.weights.digest, config=run.cfg.to_json(), patches=patches,
      part=f"ready-{variant}", ready_version=CACHE_VERSION,
      # The graph computes in the Keras policy's dtype (mixed precision).
      compute_dtype=tf.keras.mixed_precision.global_policy().compute_dtype)


def _stem(patches: str, variant: str) -> str:
  return f"{variant}-{patches}-"


def form_path(run, patches: str, variant: str) -> str:
  """The directory of the run's form of ``variant`` for ``patches``."""
  return os.path.join(cache_dir(run), _stem(patches, variant)
                      + cache_key(run, patches, variant))


class _Untracked:
  """Holds the recognizer out of the SavedModel's object graph (its
  variables are tracked as plain lists, as ``serving.module`` does)."""

  def __init__(self, recognizer):
    self.recognizer = recognizer


class _ForwardModule(tf.Module):
  """The SavedModel of ``forward``: the compiled function and the variables
  it reads (traced here, so that only those are saved: the hybrid's reads
  none of the glance network, and each saved variable costs time at every
  load).

  Args:
    recognizer: the run's recognizer.
    patches: the patch choice compiled.
    input_specs: {input key: tf.TensorSpec [None, T_k, S, S, 3]}.
    glance_specs: {glance output: tf.TensorSpec} for the ``hybrid``
      variant, or None for ``tf``.
  """

  def __init__(self, recognizer, patches: str, input_specs,
               glance_specs=None):
    super().__init__(name="adafocus_ready")
    self._refs = _Untracked(recognizer)
    self._patches = patches
    signature = [input_specs, tf.TensorSpec([None, 2], tf.int64)]
    if glance_specs is not None:
      signature.append(glance_specs)
    # No AutoGraph: the recognizer's Python control flow is static, and
    # tracing without it is faster (as ``serving.module``'s functions).
    self.forward = tf.function(self._forward, input_signature=signature,
                               autograph=False)
    read = {id(t) for t in
            self.forward.get_concrete_function().captured_inputs}
    model = list(recognizer.model.variables) + (
        list(recognizer.policy_glance.variables)
        if recognizer.policy_glance is not None else [])
    policy = (list(recognizer.policy.variables)
              if recognizer.policy is not None else [])
    self.model_variables = [v for v in model if id(v.handle) in read]
    self.policy_variables = [v for v in policy if id(v.handle) in read]

  def _forward(self, inputs, seeds, glance=None):
    """Exit probabilities, their early-exit confidences and offsets."""
    rec = self._refs.recognizer
    outputs = rec({**inputs, "seed": seeds}, self._patches,
                  glance=None if glance is None
                  else glance_output.Glance.from_outputs(glance))
    return (rec.exit_probs(outputs), exit_rule.step_confidences(rec, outputs),
            outputs.offsets)


class _RegionsModule(tf.Module):
  """The SavedModel of ``patch_regions`` (no variables: it loads in
  milliseconds, so the TFLite backend reads it without the forward pass).

  Args:
    recognizer: the run's recognizer.
  """

  def __init__(self, recognizer):
    super().__init__(name="adafocus_regions")
    self._refs = _Untracked(recognizer)
    self.patch_regions = tf.function(
        self._patch_regions, autograph=False, input_signature=[
            tf.TensorSpec([None, None, recognizer.offset_dims],
                          tf.float32)])

  def _patch_regions(self, offsets):
    frames, regions = self._refs.recognizer.patch_regions(offsets)
    # A saved function returns tensors: "no frames" is an empty [0] tensor.
    return (tf.zeros([0], tf.int32) if frames is None
            else tf.cast(frames, tf.int32)), regions


def _facts(recognizer, patches: str) -> dict:
  """What ``Predictor`` reads of the recognizer besides its outputs."""
  exit_steps = recognizer.patch_exit_steps()
  return {
      "step_macs": [float(x) for x in recognizer.exit_step_macs(
          flops.video_macs(recognizer.cfg), patches)],
      "num_exit_steps": int(recognizer.num_exit_steps),
      "glance_frame_positions": [
          int(i) for i in recognizer.glance_frame_positions()],
      "patch_exit_steps": (None if exit_steps is None
                           else [int(e) for e in exit_steps]),
      "plan": recognizer.choice_label(patches),
      "offset_dims": int(recognizer.offset_dims),
  }


def _file_sizes(directory: str) -> dict:
  """{relative path: bytes} of every file under ``directory`` but the info
  file."""
  sizes = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, directory)
      if rel != INFO_FILE:
        sizes[rel] = os.path.getsize(path)
  return sizes


def _remove(path: str) -> None:
  shutil.rmtree(path, ignore_errors=True)


class ReadyForm:
  """A run's ready form, opened (``open_form``) or just built.

  Its compiled functions load on first use (the TFLite backend reads the
  facts and ``patch_regions`` only).

  Args:
    path: its directory (module doc).
    info: its ``ready.json``.
    forward_module: the built ``_ForwardModule`` (this process built the
      form), or None to load it.
    regions_module: the built ``_RegionsModule``, or None to load it.

  Attributes:
    path: the directory.
    step_macs: float [E] multiply-accumulates of each exit step.
    num_exit_steps: E.
    glance_frame_positions: int [G] (``Recognizer.glance_frame_positions``).
    patch_exit_steps: int [K] or None (``Recognizer.patch_exit_steps``).
    plan: the patch choice's label (``Recognizer.choice_label``).
  """

  def __init__(self, path: str, info: dict, forward_module=None,
               regions_module=None):
    self.path = path
    self._forward, self._regions = forward_module, regions_module
    self.step_macs = np.asarray(info["step_macs"], np.float64)
    self.num_exit_steps = int(info["num_exit_steps"])
    self.glance_frame_positions = np.asarray(info["glance_frame_positions"],
                                             np.int64)
    steps = info["patch_exit_steps"]
    self.patch_exit_steps = None if steps is None else np.asarray(steps)
    self.plan = info["plan"]

  def load(self) -> None:
    """Loads the compiled functions now (else on first use).

    Raises:
      Exception: what TensorFlow raises for a damaged SavedModel.
    """
    if self._forward is None:
      self._forward = tf.saved_model.load(self.path)
    if self._regions is None:
      self._regions = tf.saved_model.load(
          os.path.join(self.path, REGIONS_DIRECTORY))

  def forward(self, inputs, seeds, glance=None):
    """``(exit probs [N, E, C], confidences [N, E], offsets [N, K, D])``.

    Args:
      inputs: {input key: float32 tensor [N, T_k, S, S, 3]}.
      seeds: int64 [N, 2] per-input seeds (random patches).
      glance: the glance's ``as_outputs`` (the ``hybrid`` variant only).
    """
    self.load()
    fn = self._forward.forward
    return fn(inputs, seeds) if glance is None else fn(inputs, seeds, glance)

  def patch_regions(self, offsets):
    """``Recognizer.patch_regions`` of offsets [B, K, D] (arrays):
    ``(frames int [B, K] or None, regions float32 [B, K, 4])``."""
    if self._regions is None:
      self._regions = tf.saved_model.load(
          os.path.join(self.path, REGIONS_DIRECTORY))
    frames, regions = self._regions.patch_regions(
        tf.constant(np.asarray(offsets, np.float32)))
    frames = frames.numpy()
    return (None if frames.size == 0 else frames), regions.numpy()


def open_form(run, patches: str, variant: str) -> Optional[ReadyForm]:
  """The run's cached form, or None when there is none to trust (a damaged
  one is deleted).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice.
    variant: one of ``VARIANTS``.
  """
  path = form_path(run, patches, variant)
  if not os.path.isdir(path):
    return None
  try:
    with open(os.path.join(path, INFO_FILE), encoding="utf-8") as f:
      info = json.load(f)
    trusted = (info.get("key") == os.path.basename(path)
               and info.get("files") == _file_sizes(path))
    form = ReadyForm(path, info) if trusted else None
  except (OSError, ValueError, KeyError, TypeError):
    form = None
  if form is None:
    logging.warning("the ready form in %s is damaged: rebuilding it", path)
    _remove(path)
  return form


def build(run, recognizer, patches: str, variant: str, input_specs,
          glance_specs=None) -> ReadyForm:
  """Compiles the recognizer's forward pass and caches it (module doc).

  The form serves this process whether or not it could be written (a
  warning says when not).

  Args:
    run: a ``trained_run.TrainedRun``.
    recognizer: its recognizer for ``patches``.
    patches: the patch choice.
    variant: one of ``VARIANTS``.
    input_specs: {input key: tf.TensorSpec [None, T_k, S, S, 3]}.
    glance_specs: {glance output: tf.TensorSpec [None, ...]} for the
      ``hybrid`` variant (its forward takes the glance's outputs), else None.
  """
  path = form_path(run, patches, variant)
  start = time.perf_counter()
  # Both traced here (not on the first prediction): the SavedModel needs
  # them.
  forward = _ForwardModule(recognizer, patches, input_specs, glance_specs)
  regions = _RegionsModule(recognizer)
  regions.patch_regions.get_concrete_function()
  info = dict(_facts(recognizer, patches), key=os.path.basename(path),
              variant=variant, patches=patches)
  form = ReadyForm(path, info, forward, regions)
  parent = os.path.dirname(path)
  tmp = os.path.join(parent, f"{_TEMP_PREFIX}{uuid.uuid4().hex[:8]}-"
                     f"{os.path.basename(path)}")
  try:
    os.makedirs(parent, exist_ok=True)
    tf.saved_model.save(forward, tmp)
    tf.saved_model.save(regions, os.path.join(tmp, REGIONS_DIRECTORY))
    info["files"] = _file_sizes(tmp)
    with open(os.path.join(tmp, INFO_FILE), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2, sort_keys=True)
  except (OSError, tf.errors.OpError) as e:
    _remove(tmp)
    logging.warning("could not cache the ready form at %s (%s)", path, e)
    return form
  try:
    os.rename(tmp, path)
  except OSError:
    # Another process built the same form first: keep its (equal) one,
    # which a third may be reading.
    _remove(tmp)
    if not os.path.isdir(path):
      logging.warning("could not cache the ready form at %s", path)
      return form
  _prune(parent, patches, variant, path)
  logging.info("compiled the model for prediction in %.1f s",
               time.perf_counter() - start)
  return form


def _prune(parent: str, patches: str, variant: str, keep: str) -> None:
  """Deletes the forms of ``variant`` and ``patches`` in ``parent`` other
  than ``keep`` (made from weights or a config the run no longer has; in a
  run's own directory only: the local cache is shared by runs), and
  temporary forms of killed builds (older than ``STALE_TEMP_SECONDS``: a
  younger one may be another process's build)."""
  stem = os.path.join(parent, _stem(patches, variant))
  shared = parent == local_cache_dir()
  now = time.time()
  for name in os.listdir(parent):
    path = os.path.join(parent, name)
    if name.startswith(_TEMP_PREFIX):
      try:
        stale = now - os.path.getmtime(path) > STALE_TEMP_SECONDS
      except OSError:
        continue  # its build just finished or was removed
      if stale:
        _remove(path)
    elif not shared and path.startswith(stem) and path != keep:
      _remove(path)


def load_or_build(run, patches: str, variant: str,
                  make_recognizer: Callable[[], object], input_specs,
                  glance_specs=None, load: bool = True) -> ReadyForm:
  """The run's form of ``variant``, built and cached when missing or
  damaged (one progress line says so).

  Args:
    run: a ``trained_run.TrainedRun``.
    patches: the patch choice.
    variant: one of ``VARIANTS``.
    make_recognizer: returns the run's recognizer for ``patches`` (called
      only to build).
    input_specs: see ``build``.
    glance_specs: see ``build``.
    load: load a cached form's compiled functions now (a damaged one is
      then rebuilt); else on first use.
  """
  form = open_form(run, patches, variant)
  if form is not None:
    if not load:
      return form
    try:
      form.load()
      return form
    except Exception as e:  # pylint: disable=broad-except
      # TensorFlow raises many error types for a damaged SavedModel.
      logging.warning("the ready form in %s does not load (%s): "
                      "rebuilding it", form.path, str(e).strip()[-300:])
      _remove(form.path)
  logging.info("preparing the model for prediction (once: cached in %s)",
               cache_dir(run))
  return build(run, make_recognizer(), patches, variant, input_specs,
               glance_specs)

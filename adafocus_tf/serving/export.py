"""SavedModel export of a trained run for TF Serving.

``export_run`` writes one model version in TF Serving's layout::

  <model>/<version>/
    saved_model.pb
    variables/variables.{index,data-*}
    assets.extra/adafocus.json     config, class names, patch choice, GFLOPs,
                                   early-exit thresholds, signatures

The graph is ``module.ServingModule`` around the run's ``Recognizer``
(``inference.loading``: the model and the policy's actor network; no PPO
agent, critic or optimiser is built). It always computes in float32 (a
mixed-precision run's variables are float32 already; CPU serving has no
fast float16).
"""
from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
import tempfile
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

import adafocus_tf
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.inference import clips
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.profiling import flops
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess

METADATA_FILE = "adafocus.json"
METADATA_DIR = "assets.extra"
METADATA_VERSION = 2


def class_names_of(cfg: ExperimentConfig) -> list:
  """Class names from the run's data (``meta.json`` of its splits).

  Falls back to ``class_<i>`` (with a warning) when no split's meta is
  readable, e.g. after the data moved.

  Args:
    cfg: the run's config.
  """
  names, source = clips.class_names_of(cfg, *clips.read_data_meta(cfg))
  if names is not None:
    return names
  logging.warning("no class names (%s): the export names classes class_<i>",
                  source)
  return [f"class_{i}" for i in range(cfg.data.num_classes)]


def load_thresholds(run: trained_run.TrainedRun) -> np.ndarray:
  """The run's calibrated early-exit thresholds [E] (fitted on the weights
  exported).

  Args:
    run: the trained run.

  Raises:
    RuntimeError: the run has no calibrated thresholds.
    threshold_file.StaleThresholdsError: they were fitted on other weights.
  """
  thresholds = run.thresholds()
  if thresholds is None:
    raise RuntimeError(f"{run.path} has no early-exit thresholds: calibrate "
                       "them first (launch/calibrate_exit.py)")
  return thresholds


# -- writing -----------------------------------------------------------------
def _commit_local(tmp: str, export_dir: str) -> None:
  # A directory rename is atomic on one filesystem: a watcher sees the
  # version directory complete or not at all.
  os.rename(tmp, export_dir)


def _upload(local: str, export_dir: str) -> None:
  """Copies a finished export to a remote version directory, .pb last.

  Object stores have no directory rename, so the version appears file by
  file; TF Serving reads ``saved_model.pb`` first, and it comes last.
  """
  files = []
  for root, _, names in os.walk(local):
    files += [os.path.join(root, n) for n in names]
  pb = os.path.join(local, "saved_model.pb")
  for path in sorted(files, key=lambda p: p == pb):
    dest = io_utils.join(export_dir, os.path.relpath(path, local).replace(
        os.sep, "/"))
    io_utils.makedirs(dest.rsplit("/", 1)[0])
    tf.io.gfile.copy(path, dest, overwrite=True)


def _is_remote(path: str) -> bool:
  return "://" in path


def write_version(export_dir: str, fill: Callable[[str], None]) -> None:
  """Writes a version directory all or nothing.

  Args:
    export_dir: the version directory (``<model>/<version>``); must not
      exist.
    fill: writes the directory's files into the (local, empty) directory it
      is given.

  Raises:
    FileExistsError: ``export_dir`` exists (a served version is immutable).
  """
  if io_utils.exists(export_dir):
    raise FileExistsError(f"{export_dir} exists; export to a new version "
                          "directory")
  remote = _is_remote(export_dir)
  parent = export_dir.rstrip("/").rsplit("/", 1)[0] if remote else (
      os.path.dirname(os.path.abspath(export_dir)))
  if remote:
    tmp = tempfile.mkdtemp(prefix="adafocus-export-")
  else:
    os.makedirs(parent, exist_ok=True)
    # A sibling on the same filesystem (for the rename), whose name TF
    # Serving ignores (not a version number).
    tmp = os.path.join(parent, io_utils.temp_name(
        os.path.basename(export_dir.rstrip("/"))))
    os.makedirs(tmp)
  try:
    fill(tmp)
    if remote:
      _upload(tmp, export_dir)
    else:
      _commit_local(tmp, export_dir)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def write_saved_model(module: module_lib.ServingModule, export_dir: str,
                      metadata: dict) -> None:
  """Saves ``module`` to ``export_dir`` with its metadata, all or nothing.

  Args:
    module: the serving module.
    export_dir: the version directory (``<model>/<version>``); must not
      exist.
    metadata: JSON-able dict written to ``assets.extra/adafocus.json``.

  Raises:
    FileExistsError: ``export_dir`` exists (a served version is immutable).
  """
  def fill(tmp):
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    io_utils.makedirs(os.path.join(tmp, METADATA_DIR))
    io_utils.write_json(os.path.join(tmp, METADATA_DIR, METADATA_FILE),
                        metadata)
  write_version(export_dir, fill)


def build_module(run, early_exit_on: bool = False,
                 thresholds: Optional[np.ndarray] = None,
                 class_names: Optional[Sequence[str]] = None,
                 allow_unfinished: bool = False):
  """The serving module of a trained run, in float32, and its metadata.

  Args:
    run: a ``trained_run.TrainedRun``, or a run directory (opened as one):
      its final weights (the stage-2 policy when trained, else centre
      patches).
    early_exit_on: apply AdaFocus+ early exit with the run's calibrated
      thresholds (``load_thresholds``).
    thresholds: early-exit thresholds [E] to use instead of the run's
      (implies early exit).
    class_names: class names to use instead of the data's ``meta.json``.
    allow_unfinished: export an unfinished later stage's weights
      (``final_weights.resolve``; recorded in the metadata).

  Returns:
    (``module.ServingModule``, the metadata of ``export_run``).

  Raises:
    FileNotFoundError: the run has no checkpoint.
    RuntimeError: early exit asked for but the run has no thresholds.
    threshold_file.StaleThresholdsError: the run's thresholds were fitted on
      other weights.
    final_weights.UnfinishedStageError: no stage of the run is finished.
    ValueError: class names or thresholds that do not fit the run.
  """
  run = trained_run.TrainedRun.of(run, allow_unfinished=allow_unfinished)
  cfg, weights = run.cfg, run.weights
  if early_exit_on and thresholds is None:
    thresholds = load_thresholds(run)
  policy_ckpt = weights.policy_checkpoint
  if not run.has_policy:
    logging.warning("%s has no trained policy (stage 2): the export uses "
                    "centre patches", run.path)
  saved_policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    recognizer = run.recognizer()
    names = list(class_names) if class_names else class_names_of(cfg)
    module = module_lib.ServingModule(recognizer, names,
                                      thresholds=thresholds)
    cost = flops.video_macs(cfg)
  finally:
    tf.keras.mixed_precision.set_global_policy(saved_policy)
  choice = recognizer.default_choice()
  metadata = {
      "metadata_version": METADATA_VERSION,
      "run": run.path,
      **weights.provenance(),
      "patches": choice,
      "plan": recognizer.choice_label(choice),
      "model_variant": cfg.model.variant,
      "class_names": names,
      "num_frames": preprocess.request_frames(cfg),
      "frame_streams": clips.frame_streams(cfg),
      "frame_size": cfg.data.frame_size,
      "eval_resize": cfg.data.eval_resize,
      "exit_steps": recognizer.num_exit_steps,
      "top_k": module.top_k,
      "early_exit": None if thresholds is None else {
          "thresholds": [float(x) for x in thresholds],
          "criterion": exit_rule.criterion_of(cfg),
          "rule": exit_rule.RULES[exit_rule.criterion_of(cfg)]},
      "gflops_per_video": recognizer.choice_gflops(cost, choice),
      "exit_step_macs": [float(x) for x in
                         recognizer.exit_step_macs(cost, choice)],
      "macs_per_frame": cost,
      "signatures": module.signature_doc(),
      "config": cfg.to_dict(),
      "made_by": {
          "command": " ".join(sys.argv),
          "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
          "adafocus_tf": adafocus_tf.__version__,
          "tensorflow": tf.__version__,
      },
  }
  if policy_ckpt is not None:
    # Stages 2 and 3 keep the glance net frozen, so the policy's glance is
    # normally the final model's and runs once; a run where they differ
    # exports both, so that the patches are the ones the policy would pick.
    metadata.update(policy_checkpoint=policy_ckpt,
                    policy_glance_shared=recognizer.policy_glance is None)
  return module, metadata


def export_run(run, export_dir: str, early_exit_on: bool = False,
               thresholds: Optional[np.ndarray] = None,
               class_names: Optional[Sequence[str]] = None,
               allow_unfinished: bool = False) -> dict:
  """Exports a trained run (either model family) as a TF Serving version.

  Args:
    run: a ``trained_run.TrainedRun`` or a run directory (see
      ``build_module``).
    export_dir: the version directory, ``<workspace>/exports/<model>/<N>``.
    early_exit_on: see ``build_module``.
    thresholds: see ``build_module``.
    class_names: see ``build_module``.
    allow_unfinished: see ``build_module``.

  Returns:
    The metadata written to ``assets.extra/adafocus.json``.

  Raises:
    FileExistsError: ``export_dir`` exists.
    FileNotFoundError: the run has no checkpoint.
    RuntimeError: early exit asked for but the run has no thresholds.
    ValueError: class names or thresholds that do not fit the run.
  """
  if io_utils.exists(export_dir):
    raise FileExistsError(f"{export_dir} exists; export to a new version "
                          "directory")
  module, metadata = build_module(run, early_exit_on, thresholds,
                                  class_names, allow_unfinished)
  write_saved_model(module, export_dir, metadata)
  return metadata


def read_metadata(export_dir: str) -> dict:
  """The ``assets.extra/adafocus.json`` of an export.

  Args:
    export_dir: the version directory.
  """
  return io_utils.read_json(io_utils.join(export_dir, METADATA_DIR,
                                          METADATA_FILE))


def next_version_dir(model_dir: str) -> str:
  """``<model_dir>/<N+1>``, N the highest existing version (0 when none).

  Args:
    model_dir: the model directory (``<workspace>/exports/<model>``).
  """
  versions = [0]
  if io_utils.exists(model_dir):
    versions += [int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_dir)
                 if n.rstrip("/").isdigit()]
  return io_utils.join(model_dir, str(max(versions) + 1))

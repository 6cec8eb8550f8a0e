"""A trained run, read once, for every tool that uses its weights.

Evaluation, prediction, export, early-exit calibration and inference
profiling take a ``TrainedRun`` (or a run directory, which they open as
one): its config (``config.json``, or one given), its model family, the
checkpoints its final weights are in (``final_weights.resolve``: the last
finished stage's model, and stage 2's policy when it finished), the patch
choice it can make, its early-exit thresholds and where caches derived
from it go.

  run = TrainedRun("workspace/runs/synthetic-p16-s0")
  recognizer = run.recognizer()
  evaluate.evaluate_split(run, split_dir, run.resolve_patches("auto"))
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.inference import loading
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir

# ``resolve_patches``'s choice of the run's own best patches.
AUTO = "auto"


class TrainedRun:
  """A run directory read once (module doc).

  Args:
    path: the run directory (local or ``s3://``).
    cfg: the config to use (default: the run's ``config.json``), e.g. one
      with another ``data.data_dir``.
    allow_unfinished: when a later stage is unfinished, use its latest
      weights (``final_weights.resolve``; recorded in the provenance).
    weights: the checkpoints to use (default: ``final_weights.resolve``).

  Attributes:
    path: the run directory.
    cfg: its config.
    family: its ``ModelFamily``.
    weights: its ``final_weights.FinalWeights``.

  Raises:
    FileNotFoundError: not a run directory, or no checkpoint in it.
    final_weights.UnfinishedStageError: no stage is finished (and
      ``allow_unfinished`` is off).
  """

  def __init__(self, path: str, cfg: Optional[ExperimentConfig] = None,
               allow_unfinished: bool = False,
               weights: Optional[final_weights.FinalWeights] = None):
    self.path = path
    self.cfg = cfg or run_dir.read_config(path)
    self.family = registry.of(self.cfg)
    self.weights = weights or final_weights.resolve(path, allow_unfinished)

  @classmethod
  def of(cls, run, **kwargs) -> "TrainedRun":
    """``run`` itself when it is a ``TrainedRun``, else the run directory
    ``run`` opened with ``kwargs``."""
    return run if isinstance(run, TrainedRun) else cls(run, **kwargs)

  @property
  def has_policy(self) -> bool:
    """Whether policy patches can be placed: the model carries its policy,
    or stage 2 finished."""
    return (self.family.policy_in_model
            or self.weights.policy_checkpoint is not None)

  def resolve_patches(self, requested: str) -> str:
    """The patch choice of a request: ``auto`` is the policy's when the run
    has one, else the centre; an explicit choice is checked.

    Raises:
      ValueError: ``policy`` asked of a run without one.
    """
    if requested == AUTO:
      return "policy" if self.has_policy else "centre"
    if requested == "policy" and not self.has_policy:
      raise ValueError(f"{self.path} has no trained policy (stage 2 is not "
                       "done); use --patches=centre or random, or train "
                       "stage 2")
    return requested

  def recognizer(self, with_policy: bool = True,
                 fold_batch_norms: bool = True):
    """The run's ``Recognizer``: its final model, and its policy when
    ``with_policy`` and it has one (see ``loading.from_checkpoints``)."""
    w = self.weights
    return loading.from_checkpoints(
        self.cfg, w.model_checkpoint,
        w.policy_checkpoint if with_policy else None, fold_batch_norms)

  def thresholds(self) -> Optional[np.ndarray]:
    """The early-exit thresholds fitted on these weights, or None when
    none were fitted.

    Raises:
      threshold_file.StaleThresholdsError: they were fitted on other
        weights.
    """
    return threshold_file.load_thresholds(self.path, self.weights)

  def threshold_criterion(self) -> str:
    """What the stored thresholds compare (``exit_rule.MAX_PROB`` for
    files older than the criterion)."""
    return threshold_file.load_criterion(self.path)

  @property
  def remote(self) -> bool:
    """Whether the run directory is on object storage (``s3://``)."""
    return "://" in self.path

  @property
  def caches_locally(self) -> bool:
    """Whether caches derived from the run (TFLite models, ready forms,
    backend timings) go to the machine's cache folder rather than into
    the run: it is remote, or a local directory this process cannot write.
    """
    return self.remote or not os.access(self.path, os.W_OK)

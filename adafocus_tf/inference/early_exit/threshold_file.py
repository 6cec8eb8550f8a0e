"""``<run>/early_exit.json``: a run's fitted early-exit thresholds.

The file holds the fitted thresholds (``save``/``load``), their criterion
(``exit_rule.MAX_PROB`` or ``exit_rule.MAX_LOGIT``), and the content digest
of the weights they were fitted on (``runs.final_weights``): thresholds are
quantiles of one model's confidences, so ``load_thresholds`` refuses them
(``StaleThresholdsError``) once the run's final weights are others (a stage
retrained or a checkpoint replaced, even under the same name).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from adafocus_tf import errors
from adafocus_tf import io_utils
from adafocus_tf.inference.early_exit.exit_cost import check_step_macs
from adafocus_tf.inference.early_exit.exit_rule import MAX_PROB, RULES
from adafocus_tf.runs import final_weights

FILENAME = "early_exit.json"


class StaleThresholdsError(errors.RefusedError):
  """``early_exit.json`` was not fitted on the run's final weights."""


def path(run: str) -> str:
  """``<run>/early_exit.json``."""
  return io_utils.join(run, FILENAME)


def save(run: str, thresholds, profile, step_macs,
         budget_gflops: Optional[float], expected_gflops_train: float,
         weights: final_weights.FinalWeights, criterion: str = MAX_PROB,
         **extra) -> dict:
  """Writes ``<run>/early_exit.json`` atomically.

  Args:
    run: run directory (local or ``s3://``).
    thresholds: float [E] fitted thresholds.
    profile: float [E] the exit profile they were fitted to.
    step_macs: float [E] MACs each exit step adds, the costs were computed
      with.
    budget_gflops: the target budget (None when the profile was given).
    expected_gflops_train: the profile's expected GFLOPs per video (on the
      training videos the thresholds were fitted on).
    weights: the weights the thresholds were fitted on (recorded: their
      checkpoint, stage and content digest).
    criterion: what the thresholds compare with (``MAX_PROB``,
      ``MAX_LOGIT``).
    **extra: further JSON-serialisable fields (ratio q, patch choice, ...).

  Returns:
    The dict written.

  Raises:
    ValueError: thresholds, profile and step_macs differ in length.
  """
  thresholds = np.asarray(thresholds, dtype=np.float64)
  step_macs = check_step_macs(step_macs)
  if not len(thresholds) == len(profile) == len(step_macs):
    raise ValueError(f"{len(thresholds)} thresholds, {len(profile)} profile "
                     f"fractions and {len(step_macs)} step costs: need one "
                     "of each per exit step")
  record = {
      "thresholds": [float(x) for x in thresholds],
      "profile": [float(x) for x in profile],
      "exit_step_macs": [float(x) for x in step_macs],
      "budget_gflops": None if budget_gflops is None else float(budget_gflops),
      "expected_gflops_train": float(expected_gflops_train),
      "criterion": criterion,
      "rule": RULES[criterion],
      **weights.provenance(),
      **extra,
  }
  io_utils.write_json(path(run), record)
  return record


def load(run: str) -> Optional[dict]:
  """The whole ``early_exit.json`` of a run, or None if it has none.

  Files written before exit steps had costs of their own (V1 runs: one
  ``per_frame_macs`` for every frame) get the equivalent
  ``exit_step_macs``.
  """
  p = path(run)
  if not io_utils.exists(p):
    return None
  record = io_utils.read_json(p)
  if "exit_step_macs" not in record and "per_frame_macs" in record:
    record["exit_step_macs"] = ([float(record["per_frame_macs"])]
                                * len(record["thresholds"]))
  return record


def load_criterion(run: str) -> str:
  """The criterion of the run's thresholds (``MAX_PROB`` for older files).
  """
  record = load(run)
  return (record or {}).get("criterion", MAX_PROB)


def refit_command(run: str) -> str:
  """The command that fits a run's thresholds anew."""
  return (f"adafocus-calibrate-exit --run={run} --budget_gflops=<G> (or "
          "--profile=geometric:<q>)")


def check_fitted_on(run: str, record: dict,
                    weights: final_weights.FinalWeights) -> None:
  """Refuses thresholds fitted on other weights than ``weights``.

  Args:
    run: the run directory.
    record: its ``early_exit.json`` (``load``).
    weights: the weights they would be applied to.

  Raises:
    StaleThresholdsError: the recorded digest differs, or there is none
      (a file written before thresholds recorded it); the message says how
      to refit.
  """
  fitted = record.get("weights_digest")
  if fitted == weights.digest:
    return
  if fitted is None:
    why = ("records no digest of the weights it was fitted on (it was "
           "written by an older adafocus-tf), so it may not fit the run's "
           f"final weights ({weights.model_checkpoint})")
  else:
    why = (f"was fitted on other weights ({record.get('checkpoint')}) than "
           f"the run's final ones now ({weights.model_checkpoint}): a stage "
           "was retrained or a checkpoint replaced since")
  raise StaleThresholdsError(f"{path(run)} {why}; refit the thresholds: "
                             f"{refit_command(run)}")


def load_thresholds(run: str, weights: final_weights.FinalWeights
                    ) -> Optional[np.ndarray]:
  """The run's fitted thresholds, if they fit its final weights.

  Args:
    run: run directory (local or ``s3://``).
    weights: the weights they will be applied to
      (``final_weights.resolve``).

  Returns:
    float32 [E] thresholds for ``exit_steps``, or None when
    ``launch/calibrate_exit.py`` has not been run on it.

  Raises:
    StaleThresholdsError: see ``check_fitted_on``.
  """
  record = load(run)
  if record is None:
    return None
  check_fitted_on(run, record, weights)
  return np.asarray(record["thresholds"], dtype=np.float32)

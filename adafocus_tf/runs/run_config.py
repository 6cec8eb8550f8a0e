"""A run directory's config is fixed once training has started.

``config.json`` describes the weights in the run directory, so a command
run into an existing run may not change what they were trained with:

* ``FREE_FIELDS`` may change at any time: they do not touch the weights
  (where the data lives, the held-out split, evaluation batch size, whether
  undecodable videos are skipped rather than stopping the run).
* ``RESUMABLE_STAGE_FIELDS`` of a stage (``stage<k>.epochs``,
  ``stage<k>.steps_per_epoch``) may change until that stage is finished:
  more epochs extend an interrupted stage. Its batch size may not: a
  resumed step counter would then point at other videos of the epoch.
* Every other field of ``stage<k>`` may change until stage k has a
  checkpoint (e.g. stage 3's learning rates after stage 2).
* Every other field (data sampling, model, seed, precision) may change
  only while no stage has a checkpoint.

A forbidden change raises ``ConfigChangeError`` naming the field and both
values before anything is written. An allowed change updates
``config.json`` and is appended to ``config_history.json``.
"""
from __future__ import annotations

import json
import re
import time
from typing import List, Optional, Tuple

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.runs import run_dir

FREE_FIELDS = ("data.data_dir", "data.eval_split", "data.skip_bad_records",
               "eval_batch_size")
RESUMABLE_STAGE_FIELDS = ("epochs", "steps_per_epoch")
HISTORY = "config_history.json"

Change = Tuple[str, object, object]


class ConfigChangeError(ValueError):
  """A command asks an existing run to change a field it may not change."""


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _plain(cfg: ExperimentConfig) -> dict:
  # Through JSON, as config.json holds it: tuples and lists compare equal.
  return _flatten(json.loads(cfg.to_json()))


def diff(old: ExperimentConfig, new: ExperimentConfig) -> List[Change]:
  """(field, old value, new value) of every field that differs, sorted."""
  a, b = _plain(old), _plain(new)
  return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k)]


def stage_started(run: str, stage: int) -> bool:
  """Whether stage ``stage`` of ``run`` has a checkpoint or is finished."""
  return (run_dir.stage_done(run, stage) or
          bool(io_utils.glob(io_utils.join(run_dir.checkpoint_dir(run, stage),
                                           "ckpt-*.index"))))


def why_fixed(run: str, field: str) -> Optional[str]:
  """Why ``field`` may not change in ``run`` now, or None when it may.

  Args:
    run: the run directory.
    field: a dotted config field, e.g. ``model.patch_size``.
  """
  if field in FREE_FIELDS:
    return None
  section, _, name = field.partition(".")
  m = re.fullmatch(r"stage(\d)", section)
  if m:
    stage = int(m.group(1))
    if run_dir.stage_done(run, stage):
      return f"stage {stage} is finished"
    if name in RESUMABLE_STAGE_FIELDS:
      return None
    if stage_started(run, stage):
      return f"stage {stage} has trained with it"
    return None
  started = [s for s in run_dir.STAGES if stage_started(run, s)]
  if started:
    return f"stage {started[0]} has trained with it"
  return None


def reconcile(run: str, cfg: ExperimentConfig, chief: bool = True
              ) -> List[Change]:
  """Checks ``cfg`` against the run's ``config.json`` and records it.

  Args:
    run: the run directory (need not exist yet).
    cfg: the config this command runs with.
    chief: write ``config.json`` and the history (the chief worker only).

  Returns:
    The allowed changes (empty for a new run or an unchanged config).

  Raises:
    ConfigChangeError: a field changed that may not (nothing is written).
  """
  path = io_utils.join(run, run_dir.CONFIG)
  if not io_utils.exists(path):
    if chief:
      run_dir.write_config(run, cfg)
    return []
  changes = diff(run_dir.read_config(run), cfg)
  for field, old, new in changes:
    reason = why_fixed(run, field)
    if reason:
      raise ConfigChangeError(
          f"{field} is {json.dumps(old)} in {path} but this command sets "
          f"{json.dumps(new)}, and {reason}: a run keeps the settings its "
          "weights were trained with. For the new setting start a new run "
          "(--run_dir=<a new directory>; the default run directory is named "
          "by dataset, patch size, policy and seed)")
  if changes and chief:
    history_path = io_utils.join(run, HISTORY)
    history = (io_utils.read_json(history_path)
               if io_utils.exists(history_path) else [])
    history.append({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "changes": [{"field": f, "old": o, "new": n} for f, o, n in changes]})
    io_utils.write_json(history_path, history)
    run_dir.write_config(run, cfg)
  return changes

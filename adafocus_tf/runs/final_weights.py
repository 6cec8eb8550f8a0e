"""Which checkpoints of a run the tools use: the last finished stage's.

A stage is finished when its ``done.json`` exists (``run_dir``). Tools that
use a trained run (evaluate, predict, export, early-exit calibration,
profile) take the model of the last finished stage and the policy of a
finished stage 2. A later stage that has checkpoints but is not finished
(killed, still training, or stopped by a crash) is passed over with a
warning; its half-trained weights are used only when asked for
(``allow_unfinished``, the tools' ``--allow_unfinished``), and then the
tool records ``UnfinishedStage`` in what it writes.

  weights = final_weights.resolve(run)
  weights.model_checkpoint, weights.policy_checkpoint, weights.digest
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import List, Optional

from adafocus_tf import errors
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import run_lock

POLICY_STAGE = 2


class UnfinishedStageError(errors.RefusedError):
  """The run has no finished stage to use, only an unfinished one."""


@dataclasses.dataclass(frozen=True)
class UnfinishedStage:
  """A stage that has checkpoints but no ``done.json``.

  Attributes:
    stage: the stage number.
    checkpoint: its latest checkpoint prefix.
    step: the training step of that checkpoint.
    total_steps: the steps the stage trains in all (from its config and
      data), or None when they cannot be read.
  """
  stage: int
  checkpoint: str
  step: Optional[int]
  total_steps: Optional[int]

  def progress(self) -> str:
    """``step 40 of 120`` (or ``step 40`` when the total is unknown)."""
    if self.step is None:
      return "an unnumbered checkpoint"
    total = f" of {self.total_steps}" if self.total_steps else ""
    return f"step {self.step}{total}"

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FinalWeights:
  """The checkpoints a tool uses from a run.

  Attributes:
    run: the run directory.
    model_checkpoint: the prefix whose ``model`` is restored.
    stage: the stage it belongs to.
    policy_checkpoint: the stage-2 prefix whose actor chooses patches, or
      None (no finished policy).
    unfinished: the unfinished stage ``model_checkpoint`` belongs to, when
      it was asked for (``allow_unfinished``); None when it is finished.
    digest: a digest of the weights' content (model and policy checkpoints,
      ``checkpoints.checkpoint_digest``), taken when they were chosen,
      before anything is loaded: what derived files are keyed on.
  """
  run: str
  model_checkpoint: str
  stage: int
  policy_checkpoint: Optional[str]
  unfinished: Optional[UnfinishedStage]
  digest: str

  @classmethod
  def of_checkpoints(cls, run: str, model_checkpoint: str, stage: int,
                     policy_checkpoint: Optional[str] = None,
                     unfinished: Optional[UnfinishedStage] = None
                     ) -> "FinalWeights":
    """The weights of these checkpoints, their digest taken now.

    Args: as the attributes.
    """
    parts = [checkpoints.checkpoint_digest(model_checkpoint)]
    if policy_checkpoint and policy_checkpoint != model_checkpoint:
      parts.append(checkpoints.checkpoint_digest(policy_checkpoint))
    digest = hashlib.sha256(":".join(parts).encode()).hexdigest()
    return cls(run, model_checkpoint, stage, policy_checkpoint, unfinished,
               digest)

  def provenance(self) -> dict:
    """What a tool records of the weights it used (JSON-able)."""
    record = {"checkpoint": self.model_checkpoint, "stage": self.stage,
              "weights_digest": self.digest}
    if self.unfinished is not None:
      record["unfinished_stage"] = self.unfinished.to_json()
    return record


def _total_steps(run: str, stage: int) -> Optional[int]:
  """The steps stage ``stage`` trains in all, or None if unreadable."""
  # Imported here: the trainers (which load runs) are needed only for this
  # message.
  from adafocus_tf.training import stage_inputs  # pylint: disable=g-import-not-at-top
  try:
    return stage_inputs.total_steps(run_dir.read_config(run), stage)
  except (FileNotFoundError, ValueError):
    return None


def unfinished_stage(run: str, stage: int) -> Optional[UnfinishedStage]:
  """Stage ``stage`` if it has a checkpoint but is not finished, else None.
  """
  if run_dir.stage_done(run, stage):
    return None
  ckpt = checkpoints.latest_stage_checkpoint(run, stage)
  if ckpt is None:
    return None
  return UnfinishedStage(stage, ckpt, checkpoints.step_of(ckpt),
                         _total_steps(run, stage))


def unfinished_stages(run: str) -> List[UnfinishedStage]:
  """Every stage of the run that has checkpoints but is not finished."""
  found = (unfinished_stage(run, s) for s in run_dir.STAGES)
  return [u for u in found if u is not None]


def _describe(u: UnfinishedStage, run: str) -> str:
  return (f"stage {u.stage} of {run} is unfinished (its latest checkpoint "
          f"{u.checkpoint.rsplit('/', 1)[-1]} is at {u.progress()})")


def resolve(run: str, allow_unfinished: bool = False) -> FinalWeights:
  """The weights tools use from ``run``.

  Args:
    run: the run directory (local or ``s3://``).
    allow_unfinished: use the latest checkpoint of an unfinished stage that
      comes after the last finished one (and its policy, if that stage is
      stage 2) instead of passing it over.

  Returns:
    The final weights. Passing over an unfinished stage, and a run that is
    being trained right now, are logged as warnings.

  Raises:
    UnfinishedStageError: no stage is finished and ``allow_unfinished`` is
      off (the message says which stage got how far).
    FileNotFoundError: the run has no checkpoint at all.
  """
  holder = run_lock.holder(run)
  if holder is not None:
    logging.warning("%s is being trained right now (%s): using its last "
                    "finished stage", run, holder.describe())
  done = [s for s in run_dir.STAGES if run_dir.stage_done(run, s)
          and checkpoints.latest_stage_checkpoint(run, s)]
  last_done = done[-1] if done else -1
  later = [u for u in unfinished_stages(run) if u.stage > last_done]
  policy = (checkpoints.latest_stage_checkpoint(run, POLICY_STAGE)
            if POLICY_STAGE in done else None)
  if later and allow_unfinished:
    u = later[-1]
    logging.warning("%s: using it, as asked (--allow_unfinished)",
                    _describe(u, run))
    if u.stage == POLICY_STAGE:
      policy = u.checkpoint
    return FinalWeights.of_checkpoints(run, u.checkpoint, u.stage, policy, u)
  if not done:
    if later:
      raise UnfinishedStageError(
          f"{_describe(later[-1], run)} and no stage before it is finished: "
          "finish training it (adafocus-train --resume), or use its "
          "weights as they are with --allow_unfinished")
    raise FileNotFoundError(f"{run} has no stage checkpoint")
  for u in later:
    logging.warning("%s: using stage %d's final weights (--allow_unfinished "
                    "uses the unfinished ones)", _describe(u, run), last_done)
  return FinalWeights.of_checkpoints(
      run, checkpoints.latest_stage_checkpoint(run, last_done), last_done,
      policy)


def policy_checkpoint(run: str) -> Optional[str]:
  """The run's trained policy (stage 2 finished), or None."""
  if not run_dir.stage_done(run, POLICY_STAGE):
    return None
  return checkpoints.latest_stage_checkpoint(run, POLICY_STAGE)

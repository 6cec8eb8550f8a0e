"""Exactly one PPO update of stage 2, on a rollout given.

  result = one_update.update_once(run, rollout, out)
  result.terms        # the loss and its policy, value and entropy terms
  result.checkpoint   # the weights after the update, a stage-2 checkpoint

How stage 2 is compared with the official code update by update
(``tests/convert/test_ppo_parity.py``): from the same policy weights (a run,
e.g. one the converter wrote from an official stage-3 file) and the same
rollout, the update of the stage's own task (``tasks.PolicyTask``, built by
``experiment.make_trainer``): its agent's ``update_episodes``, the code
``agent.train`` runs in training once the collect policy's
log-probabilities are known (returns, their normalisation, advantages,
loss, Adam step). What the trainer's rollout draws or scores is given
instead, as the official ``Memory`` records it (batch-major here, where
the official lists are time-major):

  * ``observations``: the policy's inputs, float [B, K, h, w, C] (the glance
    maps of the K frames; one stack of all glance maps when the run picks
    one patch per video, K = 1);
  * ``actions``: int [B, K] grid indices (discrete policy) or float
    [B, K, 2] positions (continuous policy);
  * ``old_log_probs``: float [B, K], the actions' log-probabilities under
    the policy that acted;
  * ``rewards``: float [B, K], each step's reward.

Every video is one whole episode of K steps. The update starts from the
stage-2 checkpoint of ``run`` (its policy and model), or from the last
finished stage before it (the policy's seeded initial weights), with a
fresh optimizer: zero Adam moments, as a PyTorch optimizer made for a
loaded state dict; the weights after it are written as a new run, ``out``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import run_dir
from adafocus_tf.training import experiment
from adafocus_tf.training import one_step
from adafocus_tf.training.ppo import agent as agent_lib
from adafocus_tf.training.ppo import episodes

# The stage of the V1 families' plans that trains the policy by PPO.
PPO_STAGE = 2

OBSERVATIONS = "observations"
ACTIONS = "actions"
OLD_LOG_PROBS = "old_log_probs"
REWARDS = "rewards"


@dataclasses.dataclass
class UpdateResult:
  """What one update did.

  Attributes:
    terms: ``agent.loss_terms``: ``loss`` (the total minimised),
      ``policy_loss`` (the clipped surrogate, negated), ``value_loss`` and
      ``entropy_loss``, each already weighted, means over every step.
    run: the run written (``out``).
    checkpoint: its stage-2 checkpoint: the weights after the update.
  """
  terms: Dict[str, float]
  run: str
  checkpoint: str


def check_rollout(task, rollout: dict) -> None:
  """Refuses a rollout that the run's policy cannot have produced.

  Args:
    task: the stage-2 ``PolicyTask`` of the run, built.
    rollout: the rollout (module doc).

  Raises:
    one_step.StepInputError: a missing entry, or an entry of the wrong shape,
      kind or range (named).
  """
  missing = sorted({OBSERVATIONS, ACTIONS, OLD_LOG_PROBS, REWARDS}
                   - set(rollout))
  if missing:
    raise one_step.StepInputError(
        f"the rollout lacks {missing} (an update reads {OBSERVATIONS}, "
        f"{ACTIONS}, {OLD_LOG_PROBS} and {REWARDS})")
  steps = patch_choice.patch_steps(task.cfg)
  # The rewards first: their batch size is the one the others must have.
  one_step.check_shape(REWARDS, rollout[REWARDS], (None, steps), "float")
  size = int(np.shape(rollout[REWARDS])[0])
  if size == 0:
    raise one_step.StepInputError(f"{REWARDS}: no videos in the rollout")
  one_step.check_shape(OBSERVATIONS, rollout[OBSERVATIONS],
                       (size, steps, *task.actor.input_tensor_spec.shape),
                       "float")
  spec = task.actions.spec
  one_step.check_shape(ACTIONS, rollout[ACTIONS], (size, steps, *spec.shape),
                       "int" if spec.dtype.is_integer else "float")
  if spec.dtype.is_integer:
    actions = np.asarray(rollout[ACTIONS])
    if np.any(actions < spec.minimum) or np.any(actions > spec.maximum):
      raise one_step.StepInputError(
          f"{ACTIONS}: values {int(actions.min())}..{int(actions.max())}, "
          f"but the policy's grid has actions {int(spec.minimum)}.."
          f"{int(spec.maximum)}")
  one_step.check_shape(OLD_LOG_PROBS, rollout[OLD_LOG_PROBS], (size, steps),
                       "float")


def _episodes(task, rollout: dict):
  """The agent's inputs: time steps, actions and old log-probabilities."""
  observations = tf.convert_to_tensor(rollout[OBSERVATIONS], tf.float32)
  rewards = tf.convert_to_tensor(rollout[REWARDS], tf.float32)
  size, steps = rewards.shape
  step_type, _, discount = episodes.episode_step_types(size, steps)
  time_steps = ts.TimeStep(step_type=step_type, reward=rewards,
                           discount=discount, observation=observations)
  actions = tf.convert_to_tensor(rollout[ACTIONS], task.actions.spec.dtype)
  old_log_probs = tf.convert_to_tensor(rollout[OLD_LOG_PROBS], tf.float32)
  return time_steps, actions, old_log_probs, tf.ones([size, steps])


def update_once(run: str, rollout: dict, out: str,
                strategy: Optional[tf.distribute.Strategy] = None
                ) -> UpdateResult:
  """One stage-2 PPO update of ``run`` on ``rollout`` (module doc).

  Args:
    run: the run directory whose weights the update starts from (a V1 or
      two-stream run).
    rollout: see the module doc.
    out: a new run directory for the weights after the update (must not
      exist).
    strategy: a ``tf.distribute`` strategy (default: one device).

  Returns:
    The ``UpdateResult``.

  Raises:
    one_step.StepInputError: the run has no stage 2 (AdaFocusV2), ``out``
      exists, or a rollout entry of the wrong shape, kind or range.
    FileNotFoundError: the run has no checkpoint to start stage 2 from.
  """
  cfg = run_dir.read_config(run)
  start = one_step.stage_start(cfg, run, PPO_STAGE, out)
  trainer = experiment.make_trainer(
      cfg, PPO_STAGE, strategy or tf.distribute.get_strategy(), out,
      progress=False)
  task = trainer.task
  check_rollout(task, rollout)
  run_dir.write_config(out, cfg)
  trainer.initialize(start)
  # Compiled as the trainer's step is (``make_train_fn``).
  update = tf.function(task.agent.update_episodes, autograph=False)
  terms = agent_lib.loss_terms(update(*_episodes(task, rollout)))
  return UpdateResult(
      terms={k: float(v) for k, v in terms.items()}, run=out,
      checkpoint=one_step.save_step(trainer, out, PPO_STAGE))

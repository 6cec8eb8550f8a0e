"""Golden outputs: committed tiny runs must keep giving the same numbers.

``tests/golden/<name>/`` holds a run trained before a restructuring
(``tests/golden/make_golden.py``, run once by hand), the frames of a few
held-out synthetic videos (``inputs.npz``) and what the run gave on them
then (``expected.npz``): per-step logits and probabilities, the patch
locations of the greedy policy (top-left pixels, the positions in [0, 1]^2
and the distribution they are taken from) and the glance network's own
probabilities. Code that only moves things around must reproduce them:
floats to round-off, patch pixels exactly.

Only ``golden_outputs`` knows how a run is loaded and run; when that API
changes, it is rewritten and the expected numbers stay as they are.
"""
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.ppo import ppo_utils

from adafocus_tf.data import augment
from adafocus_tf.policy import trainer as policy_trainer
from adafocus_tf.training import evaluation
from adafocus_tf.training import experiment
from adafocus_tf.training import run_dir

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
# The V1 one-stream run (discrete policy, stages 0-3) and the two-stream
# Something-Something run (TSM, continuous policy, stages 1-3).
RUNS = ("v1_discrete", "two_stream_continuous")
INPUTS, EXPECTED = "inputs.npz", "expected.npz"
# The frame streams of a batch: one (V1), or glance and focus (two-stream).
FRAME_KEYS = ("frames", "glance_frames", "focus_frames")
# Float round-off (the same graph may run eagerly or compiled, or batched
# otherwise): absolute, on logits and positions; on probabilities, which
# are at most 1.
ATOL = 1e-5
PROBS_ATOL = 1e-6


def golden_outputs(run: str, inputs) -> dict:
  """A trained run's outputs on held-out frames, through today's loading path.

  The run is loaded as evaluation loads it (``experiment.final_model`` and
  the stage-2 policy), and the batch goes through evaluation's per-batch
  step with the policy's patches.

  Args:
    run: the run directory.
    inputs: mapping with uint8 pixel frames [B, T, S, S, 3] under the run's
      ``FRAME_KEYS``, before normalisation.

  Returns:
    dict of numpy arrays: ``step_logits`` and ``step_probs`` [B, K', C]
    (K' = T, or 1 for the two-stream model), ``offsets`` int32 [B, K, 2]
    (top-left patch pixels), ``positions`` [B, K, 2] (the greedy actions'
    patch positions in [0, 1]^2), ``glance_probs`` [B, K', C] and the
    actor's distribution parameters: ``policy_logits`` [B, K, A]
    (discrete) or ``policy_loc`` [B, K, 2] (continuous: the mean).
  """
  cfg = run_dir.read_config(run)
  batch = {k: augment.normalize(tf.cast(inputs[k], tf.float32), cfg.data.mean,
                                cfg.data.std)
           for k in FRAME_KEYS if k in inputs}
  model, _ = experiment.final_model(cfg, run)
  policy = experiment.load_policy_trainer(cfg, run)
  step_probs, offsets = evaluation.batch_step(
      model, cfg, "policy", policy.policy_fn)(batch)
  observations, _ = policy.observations(batch)
  time_steps = policy_trainer.episode_time_steps(observations)
  action_dist = lambda p: p.distribution(
      time_steps, p.get_initial_state(tf.shape(observations)[0])).action
  greedy = policy.actions.greedy(action_dist(policy.agent.policy))
  outputs = {"step_logits": model.batch_logits(batch, offsets),
             "step_probs": step_probs, "offsets": offsets,
             "positions": policy.actions.positions(greedy),
             "glance_probs": model.glance_only_probs(batch)}
  # The actor's distribution, which the greedy choice is taken from: an
  # argmax hides small changes.
  params = ppo_utils.get_distribution_params(
      action_dist(policy.agent.collect_policy),
      legacy_distribution_network=True)
  outputs.update({f"policy_{k}": v for k, v in params.items()})
  return {k: np.asarray(v) for k, v in outputs.items()}


@pytest.mark.parametrize("name", RUNS)
def test_a_trained_run_gives_its_golden_outputs(name):
  run = os.path.join(GOLDEN, name)
  with np.load(os.path.join(run, INPUTS)) as f:
    inputs = dict(f)
  with np.load(os.path.join(run, EXPECTED)) as f:
    expected = dict(f)
  got = golden_outputs(run, inputs)
  assert sorted(got) == sorted(expected)
  np.testing.assert_array_equal(got["offsets"], expected["offsets"])
  for key in sorted(set(expected) - {"offsets"}):
    assert got[key].shape == expected[key].shape, key
    atol = PROBS_ATOL if key.endswith("_probs") else ATOL
    np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol,
                               err_msg=f"{name}: {key}")

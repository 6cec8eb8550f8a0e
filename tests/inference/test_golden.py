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

import helpers
from adafocus_tf.data import augment
from adafocus_tf.policy import frame_stack
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

GOLDEN = os.path.join(helpers.TESTS, "golden")
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


def golden_outputs(run: str, inputs, fold_batch_norms: bool = True) -> dict:
  """A trained run's outputs on held-out frames, through the recognizer.

  The run is loaded as every tool loads it (``TrainedRun.recognizer``) and the
  batch goes through whole-clip inference with the policy's patches.

  Args:
    run: the run directory.
    inputs: mapping with uint8 pixel frames [B, T, S, S, 3] under the run's
      ``FRAME_KEYS``, before normalisation.
    fold_batch_norms: ``TrainedRun.recognizer``'s (the tools' default: folded).

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
  recognizer = trained_run.TrainedRun(run, cfg=cfg).recognizer(fold_batch_norms=fold_batch_norms)
  assert recognizer.model.focus.backbone_runner.fold == fold_batch_norms
  out = recognizer(batch, "policy")
  maps = recognizer.glance(batch).policy_maps
  if cfg.model.patch_per_video:
    maps = frame_stack.stack_frames(maps)
  policy = recognizer.policy
  dist = policy.distribution(maps)
  outputs = {"step_logits": out.logits, "step_probs": out.probs,
             "offsets": out.offsets,
             "positions": policy.actions.positions(policy.actions.greedy(
                 dist)),
             "glance_probs": out.glance_probs}
  # The actor's distribution, which the greedy choice is taken from: an
  # argmax hides small changes.
  if cfg.model.policy == "discrete":
    outputs["policy_logits"] = dist.logits_parameter()
  else:
    outputs["policy_loc"] = dist.mean()
  return {k: np.asarray(v) for k, v in outputs.items()}


# The golden outputs were made with the Keras batch-norm layers; the folded
# convolutions every tool loads (the trained statistics, not the identity
# of a fresh model) must give them too.
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "keras_bn"])
@pytest.mark.parametrize("name", RUNS)
def test_a_trained_run_gives_its_golden_outputs(name, fold):
  run = os.path.join(GOLDEN, name)
  with np.load(os.path.join(run, INPUTS)) as f:
    inputs = dict(f)
  with np.load(os.path.join(run, EXPECTED)) as f:
    expected = dict(f)
  got = golden_outputs(run, inputs, fold_batch_norms=fold)
  assert sorted(got) == sorted(expected)
  np.testing.assert_array_equal(got["offsets"], expected["offsets"])
  for key in sorted(set(expected) - {"offsets"}):
    assert got[key].shape == expected[key].shape, key
    atol = PROBS_ATOL if key.endswith("_probs") else ATOL
    np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol,
                               err_msg=f"{name}: {key}")

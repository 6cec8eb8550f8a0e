"""``training.one_step``: exactly one step of a stage, its draws given."""
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest

import helpers
from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import checkpoints
from adafocus_tf.training import one_step

pytestmark = pytest.mark.training


def _frames(cfg, size, seed=0):
  d = cfg.data
  return np.random.default_rng(seed).normal(
      size=(size, d.num_frames, d.frame_size, d.frame_size, 3)).astype(
          np.float32)


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
  return helpers.copy_of_tiny_v2_run(tmp_path_factory.mktemp("v2") / "run")


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
  return helpers.train_tiny_run(tmp_path_factory.mktemp("v1"), (1,))


def _v2_batch(cfg, positions_seed):
  rng = np.random.default_rng(positions_seed)
  return {"frames": _frames(cfg, 4), "label": np.array([0, 1, 2, 3]),
          patch_choice.RANDOM_POSITIONS: rng.uniform(
              size=(4, cfg.data.num_frames, 2))}


def test_a_v2_step_returns_its_terms_and_writes_a_new_run(v2, tmp_path):
  cfg, run = v2
  before = helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(
      run, 1))
  result = one_step.train_one_step(run, 1, _v2_batch(cfg, 0),
                                   str(tmp_path / "a"), epoch=2)
  assert set(result.terms) == {"glance", "policy_steps", "policy_focus",
                               "random_steps", "random_focus"}
  assert result.weights["glance"] == 1.0 and result.weights[
      "random_focus"] == 0.5
  assert result.loss == pytest.approx(
      sum(result.weights[k] * v for k, v in result.terms.items()), rel=1e-6)
  assert set(result.gradient_norms) == {"policy", "glance", "focus",
                                        "classifier"}
  assert all(v > 0 for v in result.gradient_norms.values())
  # The cosine schedule at epoch 2.
  s = cfg.stage1
  period = s.schedule_epochs or s.epochs
  assert result.learning_rates["focus"] == pytest.approx(
      0.5 * s.backbone_lr * (1 + np.cos(np.pi * 2 / period)))
  assert result.checkpoint == os.path.join(
      str(tmp_path / "a"), "stage1", "checkpoints", "ckpt-1")
  after = helpers.checkpoint_tensors(result.checkpoint)
  assert any(not np.array_equal(before[k], after[k]) for k in before)
  # The run stepped from is untouched.
  again = helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(
      run, 1))
  assert all(np.array_equal(before[k], again[k]) for k in before)


def test_the_random_branch_takes_the_draws_given(v2, tmp_path):
  cfg, run = v2
  a = one_step.train_one_step(run, 1, _v2_batch(cfg, 0), str(tmp_path / "a"))
  b = one_step.train_one_step(run, 1, _v2_batch(cfg, 1), str(tmp_path / "b"))
  same = one_step.train_one_step(run, 1, _v2_batch(cfg, 0),
                                 str(tmp_path / "c"))
  assert a.terms == same.terms
  assert a.terms["policy_steps"] == pytest.approx(b.terms["policy_steps"],
                                                  rel=1e-6)
  assert a.terms["random_focus"] != pytest.approx(b.terms["random_focus"],
                                                  rel=1e-4)


def test_a_v1_stage1_step_takes_its_random_offsets(v1, tmp_path):
  cfg, run = v1
  k, span = cfg.data.num_frames, cfg.data.frame_size - cfg.model.patch_size
  steps = []
  for seed in (0, 1):
    offsets = np.random.default_rng(seed).integers(0, span + 1, (4, k, 2))
    steps.append(one_step.train_one_step(
        run, 1, {"frames": _frames(cfg, 4), "label": np.arange(4),
                 patch_choice.RANDOM_OFFSETS: offsets.astype(np.int32)},
        str(tmp_path / f"s{seed}")))
  assert set(steps[0].terms) == {"steps"}
  assert steps[0].loss != pytest.approx(steps[1].loss, rel=1e-5)


def test_bad_requests_are_refused_naming_what(v1, v2, tmp_path):
  cfg, run = v2
  good = _v2_batch(cfg, 0)
  cases = [
      (run, 2, good, "an AdaFocusV2 run trains stages 0 and 1 only"),
      (v1[1], 2, {"frames": _frames(v1[0], 2), "label": np.arange(2)},
       "stage 2 \\(PPO\\) learns from rollouts"),
      (run, 1, dict(good, frames=good["frames"][:, :3]),
       "frames: shape \\[4, 3, .*the step needs \\[4, 8,"),
      (run, 1, {**good, patch_choice.RANDOM_POSITIONS:
                good[patch_choice.RANDOM_POSITIONS][:, :2]},
       "random_positions: shape \\[4, 2, 2\\]"),
      (run, 1, {**good, patch_choice.RANDOM_OFFSETS: np.zeros((4, 8, 2),
                                                              np.int32)},
       "random_offsets given, but stage 1 of a v2 run draws "
       "random_positions"),
      (run, 1, {"frames": good["frames"]}, "the batch lacks \\['label'\\]"),
  ]
  for i, (which, stage, batch, message) in enumerate(cases):
    with pytest.raises(one_step.StepInputError, match=message):
      one_step.train_one_step(which, stage, batch, str(tmp_path / str(i)))
    assert not os.path.exists(tmp_path / str(i))
  os.makedirs(tmp_path / "exists")
  with pytest.raises(one_step.StepInputError, match="exists"):
    one_step.train_one_step(run, 1, good, str(tmp_path / "exists"))

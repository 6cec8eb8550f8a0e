"""``training.ppo.one_update``: one PPO update of stage 2, its rollout given."""
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.policy import greedy
from adafocus_tf.runs import run_dir
from adafocus_tf.training import experiment
from adafocus_tf.training import one_step
from adafocus_tf.training.ppo import one_update

BATCH = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A V1 run with a finished stage 1 (one placeholder variable: the
  update starts from the policy's seeded initial weights)."""
  return helpers.write_fake_run(str(tmp_path_factory.mktemp("fake")),
                                {1: ([4], True)})


@pytest.fixture(scope="module")
def trainer(run):
  return experiment.make_trainer(run_dir.read_config(run), 2,
                                 tf.distribute.get_strategy(),
                                 os.path.join(run, "unused"), progress=False)


def _rollout(cfg, trainer, seed=0):
  rng = np.random.default_rng(seed)
  steps = cfg.data.num_frames
  shape = greedy.observation_shape(cfg,
                                   trainer.task.model.glance.map_shape)
  return {
      one_update.OBSERVATIONS: rng.uniform(0, 2, (BATCH, steps, *shape)
                                           ).astype(np.float32),
      one_update.ACTIONS: rng.integers(0, cfg.model.num_actions,
                                       (BATCH, steps)).astype(np.int32),
      one_update.OLD_LOG_PROBS: np.full((BATCH, steps),
                                        -np.log(cfg.model.num_actions)),
      one_update.REWARDS: rng.uniform(-0.5, 0.5, (BATCH, steps)),
  }


def test_an_update_returns_its_terms_and_writes_a_new_run(run, trainer,
                                                          tmp_path):
  cfg = run_dir.read_config(run)
  rollout = _rollout(cfg, trainer)
  results = [one_update.update_once(run, rollout, str(tmp_path / name))
             for name in ("a", "b")]
  terms = results[0].terms
  assert set(terms) == {"loss", "policy_loss", "value_loss", "entropy_loss"}
  assert terms["loss"] == pytest.approx(
      terms["policy_loss"] + terms["value_loss"] + terms["entropy_loss"],
      rel=1e-6)
  # -0.01 mean entropy: a near-uniform initial policy over the grid.
  assert terms["entropy_loss"] == pytest.approx(
      -cfg.stage2.entropy_coef * np.log(cfg.model.num_actions), rel=0.05)
  assert results[0].checkpoint == os.path.join(
      run_dir.checkpoint_dir(str(tmp_path / "a"), 2), "ckpt-1")
  # The same weights and rollout: the same update.
  assert results[1].terms == terms
  after = [helpers.checkpoint_tensors(r.checkpoint, ("actor", "critic"))
           for r in results]
  assert after[0] and all(np.array_equal(after[0][k], after[1][k])
                          for k in after[0])


def test_bad_rollouts_are_refused_naming_what(run, trainer):
  cfg = run_dir.read_config(run)
  good = _rollout(cfg, trainer)
  steps = cfg.data.num_frames
  obs = good[one_update.OBSERVATIONS]
  cases = [
      ({k: v for k, v in good.items() if k != one_update.OLD_LOG_PROBS},
       "the rollout lacks \\['old_log_probs'\\]"),
      ({**good, one_update.OBSERVATIONS: obs[:, :, :, :, :2]},
       f"observations: shape \\[3, {steps}, .*, 2\\], but the step needs"),
      ({**good, one_update.OBSERVATIONS: obs[:2]},
       "observations: shape \\[2, "),
      ({**good, one_update.ACTIONS: good[one_update.ACTIONS][:, :2]},
       f"actions: shape \\[3, 2\\], but the step needs \\[3, {steps}\\]"),
      ({**good, one_update.ACTIONS: good[one_update.ACTIONS] * 1.0},
       "actions: float64, but the step needs integer values"),
      ({**good, one_update.ACTIONS: good[one_update.ACTIONS]
        + cfg.model.num_actions},
       f"actions: values .*, but the policy's grid has actions "
       f"0..{cfg.model.num_actions - 1}"),
      ({**good, one_update.OLD_LOG_PROBS: good[one_update.OLD_LOG_PROBS][
          ..., None]}, "old_log_probs: shape \\[3, .*, 1\\]"),
      ({**good, one_update.REWARDS: good[one_update.REWARDS][:, 1:]},
       f"rewards: shape \\[3, {steps - 1}\\], but the step needs "
       f"\\['any', {steps}\\]"),
      ({**good, one_update.REWARDS: good[one_update.REWARDS][:0]},
       "rewards: no videos in the rollout"),
  ]
  for rollout, message in cases:
    with pytest.raises(one_step.StepInputError, match=message):
      one_update.check_rollout(trainer.task, rollout)


def test_bad_requests_are_refused_before_anything_is_written(run, trainer,
                                                             tmp_path):
  cfg = run_dir.read_config(run)
  good = _rollout(cfg, trainer)
  bad = {**good, one_update.REWARDS: good[one_update.REWARDS][:, :1]}
  with pytest.raises(one_step.StepInputError, match="rewards: shape"):
    one_update.update_once(run, bad, str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad")
  os.makedirs(tmp_path / "exists")
  with pytest.raises(one_step.StepInputError, match="exists"):
    one_update.update_once(run, good, str(tmp_path / "exists"))
  v2 = str(tmp_path / "v2")
  run_dir.write_config(v2, helpers.tiny_v2_config())
  with pytest.raises(one_step.StepInputError,
                     match="an AdaFocusV2 run trains stages 0 and 1 only"):
    one_update.update_once(v2, good, str(tmp_path / "v2_out"))
  empty = str(tmp_path / "empty")
  run_dir.write_config(empty, cfg)
  with pytest.raises(FileNotFoundError, match="no checkpoint to start stage "
                     "2 from"):
    one_update.update_once(empty, good, str(tmp_path / "empty_out"))

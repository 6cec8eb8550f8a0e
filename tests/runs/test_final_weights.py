"""Which checkpoints tools use: the last finished stage's (issue 23).

Runs are laid out by hand here (config, stage checkpoints, done.json): what
is tested is the choice, not training. test_unfinished_stage.py kills a
real training during stage 3.
"""
import logging
import os

import adafocus_tf  # pylint: disable=unused-import
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir

# 16 training videos, batches of 8: 2 steps an epoch; stage 3 has 5 epochs.
STAGE3_STEPS = 10


def _run(tmp_path, stages):
  return helpers.write_fake_run(str(tmp_path), stages, stage3__epochs=5)


def _ckpt(run, stage, step):
  return os.path.join(run_dir.checkpoint_dir(run, stage), f"ckpt-{step}")


def test_an_unfinished_last_stage_is_passed_over(tmp_path, caplog):
  run = _run(tmp_path, {1: ([4], True), 2: ([3], True), 3: ([2, 4], False)})
  with caplog.at_level(logging.WARNING):
    weights = final_weights.resolve(run)
  assert weights.model_checkpoint == _ckpt(run, 2, 3)
  assert weights.stage == 2 and weights.unfinished is None
  assert weights.policy_checkpoint == _ckpt(run, 2, 3)
  assert (f"stage 3 of {run} is unfinished (its latest checkpoint ckpt-4 is "
          f"at step 4 of {STAGE3_STEPS}): using stage 2's final weights"
          in caplog.text)
  assert "unfinished_stage" not in weights.provenance()


def test_allow_unfinished_uses_it_and_records_it(tmp_path):
  run = _run(tmp_path, {1: ([4], True), 2: ([3], True), 3: ([2, 4], False)})
  weights = final_weights.resolve(run, allow_unfinished=True)
  assert weights.model_checkpoint == _ckpt(run, 3, 4)
  assert weights.policy_checkpoint == _ckpt(run, 2, 3)
  record = weights.provenance()
  assert record["checkpoint"] == _ckpt(run, 3, 4) and record["stage"] == 3
  assert record["unfinished_stage"] == {
      "stage": 3, "checkpoint": _ckpt(run, 3, 4), "step": 4,
      "total_steps": STAGE3_STEPS}
  assert record["weights_digest"] == weights.digest


def test_an_unfinished_policy_stage_gives_its_policy_only_when_asked(
    tmp_path):
  run = _run(tmp_path, {1: ([4], True), 2: ([1], False)})
  assert final_weights.resolve(run).policy_checkpoint is None
  assert final_weights.policy_checkpoint(run) is None
  weights = final_weights.resolve(run, allow_unfinished=True)
  assert weights.policy_checkpoint == weights.model_checkpoint == _ckpt(
      run, 2, 1)


def test_a_run_with_no_finished_stage_is_refused(tmp_path):
  run = _run(tmp_path, {1: ([2], False)})
  with pytest.raises(final_weights.UnfinishedStageError,
                     match=r"stage 1 of .* is unfinished .*step 2 of 4\) and "
                           r"no stage before it is finished.*"
                           r"--allow_unfinished"):
    final_weights.resolve(run)
  assert final_weights.resolve(run, True).model_checkpoint == _ckpt(run, 1, 2)
  with pytest.raises(FileNotFoundError, match="has no stage checkpoint"):
    final_weights.resolve(_run(tmp_path / "empty", {}))


def test_a_stage_starts_from_the_last_finished_stage(tmp_path):
  run = _run(tmp_path, {0: ([5], True), 1: ([3], False)})
  assert checkpoints.previous_checkpoint(run, 2) == _ckpt(run, 0, 5)
  assert [u.stage for u in final_weights.unfinished_stages(run)] == [1]


def test_the_digest_follows_content_not_names(tmp_path):
  run = _run(tmp_path, {1: ([4], True)})
  first = final_weights.resolve(run)
  assert first.digest == final_weights.resolve(run).digest
  # Other weights under the same name.
  tf.train.Checkpoint(v=tf.Variable([9.0, 9.0])).write(_ckpt(run, 1, 4))
  second = final_weights.resolve(run)
  assert second.model_checkpoint == first.model_checkpoint
  assert second.digest != first.digest
  with pytest.raises(FileNotFoundError, match="not a checkpoint"):
    checkpoints.checkpoint_digest(_ckpt(run, 1, 5))

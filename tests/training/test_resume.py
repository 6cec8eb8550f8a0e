"""A training process killed with SIGKILL resumes where its checkpoint was."""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.runs import checkpoints

# Every test trains runs in launch/train.py processes (some killed and resumed).
pytestmark = pytest.mark.training

# 48 videos / batch 8 = 6 steps an epoch, 2 epochs, a checkpoint every step.
FLAGS = ["--stage=1", "--noevaluate", "--noprogress", "--deterministic",
         "--checkpoint_every=1"] + helpers.tiny_flags(stage1__epochs=2)
TOTAL_STEPS = 12


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=48, num_val=8)


def _latest_step(run):
  ckpt = checkpoints.latest_stage_checkpoint(run, 1)
  return int(ckpt.rsplit("-", 1)[1]) if ckpt else 0


def test_kill9_then_resume_matches_uninterrupted_run(data_dir, tmp_path):
  straight = str(tmp_path / "straight")
  helpers.run_train(FLAGS + [f"--data_dir={data_dir}", f"--run_dir={straight}"])
  assert _latest_step(straight) == TOTAL_STEPS

  run = str(tmp_path / "killed")
  proc = subprocess.Popen(
      [sys.executable, os.path.join(helpers.REPO, "launch", "train.py")] +
      FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _latest_step(run) < 3 and time.time() < deadline:
    time.sleep(0.02)
  proc.kill()  # SIGKILL: no cleanup, possibly mid-write
  proc.wait()
  killed_at = _latest_step(run)
  assert 3 <= killed_at < TOTAL_STEPS, "the kill must land mid-run"
  assert not os.path.exists(os.path.join(run, "stage1", "done.json"))

  resumed = helpers.run_train(FLAGS + [f"--data_dir={data_dir}",
                                       f"--resume={run}"])
  m = re.search(r"resumed stage 1 at step (\d+)", resumed.stderr)
  assert m and int(m.group(1)) == killed_at
  assert _latest_step(run) == TOTAL_STEPS
  a = helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(run, 1))
  b = helpers.checkpoint_tensors(
      checkpoints.latest_stage_checkpoint(straight, 1))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
  step = tf.train.load_checkpoint(checkpoints.latest_stage_checkpoint(run, 1))
  assert step.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == TOTAL_STEPS


# Stages 1 and 2, 6 steps each, a checkpoint every 2 steps.
STAGE2_FLAGS = ["--stage=1,2", "--noevaluate", "--noprogress",
                "--deterministic", "--checkpoint_every=2"] + helpers.tiny_flags(
                    stage1__epochs=1, stage2__epochs=1)
STAGE2_STEPS = 6
POLICY_OBJECTS = ("model", "actor", "critic")


def _start_train(args, read_log=False):
  """launch/train.py started in a subprocess; its log readable if asked."""
  return subprocess.Popen(
      [sys.executable, os.path.join(helpers.REPO, "launch", "train.py")] +
      args, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE if read_log else subprocess.DEVNULL, text=True)


def _assert_same_policy(run, other):
  a = helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(run, 2),
                                 POLICY_OBJECTS)
  b = helpers.checkpoint_tensors(
      checkpoints.latest_stage_checkpoint(other, 2), POLICY_OBJECTS)
  assert a.keys() == b.keys() and any(k.startswith("actor/") for k in a)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def straight_1_2(data_dir, tmp_path_factory):
  """Stages 1 and 2 run straight through in one process."""
  run = str(tmp_path_factory.mktemp("straight") / "run")
  helpers.run_train(STAGE2_FLAGS + [f"--data_dir={data_dir}",
                                    f"--run_dir={run}"])
  assert checkpoints.latest_stage_checkpoint(run, 2).endswith(
      f"ckpt-{STAGE2_STEPS}")
  return run


def test_stage2_killed_before_a_checkpoint_restarts_like_a_straight_run(
    data_dir, straight_1_2, tmp_path):
  run = str(tmp_path / "killed")
  args = STAGE2_FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}"]
  proc = _start_train(args, read_log=True)
  for line in proc.stderr:
    if "stage 2 initialised from" in line:
      break
  proc.kill()  # SIGKILL in stage 2, its networks built, before its first save
  proc.wait()
  assert os.path.exists(os.path.join(run, "stage1", "done.json"))
  assert checkpoints.latest_stage_checkpoint(run, 2) is None
  # Stage 2 now starts in a process that did not train stage 1.
  resumed = helpers.run_train(args)
  assert "stage 1 already done" in resumed.stderr
  assert "stage 2 initialised from" in resumed.stderr
  _assert_same_policy(run, straight_1_2)


def test_stage2_checkpoints_every_n_steps_and_resumes_from_the_last(
    data_dir, straight_1_2, tmp_path):
  run = str(tmp_path / "killed")
  # Stage 1 as the straight run finished it.
  os.makedirs(run)
  shutil.copy(os.path.join(straight_1_2, "config.json"), run)
  shutil.copytree(os.path.join(straight_1_2, "stage1"),
                  os.path.join(run, "stage1"))
  args = STAGE2_FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}"]
  proc = _start_train(args)
  deadline = time.time() + 300
  while (checkpoints.latest_stage_checkpoint(run, 2) is None and
         time.time() < deadline and proc.poll() is None):
    time.sleep(0.02)
  proc.kill()
  proc.wait()
  ckpt = checkpoints.latest_stage_checkpoint(run, 2)
  killed_at = int(ckpt.rsplit("-", 1)[1])
  # A periodic checkpoint inside the epoch, not the epoch's end.
  assert killed_at in (2, 4), killed_at
  resumed = helpers.run_train(args)
  assert f"resumed stage 2 at step {killed_at}" in resumed.stderr
  assert checkpoints.latest_stage_checkpoint(run, 2).endswith(
      f"ckpt-{STAGE2_STEPS}")
  _assert_same_policy(run, straight_1_2)


def test_rerun_with_another_patch_size_is_refused(data_dir, straight_1_2):
  config = os.path.join(straight_1_2, "config.json")
  with open(config) as f:
    before = f.read()
  args = [a for a in STAGE2_FLAGS if a != "--noevaluate"]
  proc = helpers.run_train(args + [f"--data_dir={data_dir}",
                                   f"--run_dir={straight_1_2}",
                                   "--override=model.patch_size=16"],
                           check=False)
  assert proc.returncode != 0
  assert (f"model.patch_size is 8 in {config} but this command sets 16, "
          "and stage 1 has trained with it") in proc.stderr
  with open(config) as f:
    assert f.read() == before
  assert not os.path.exists(os.path.join(straight_1_2, "metrics.json"))


# Uni-AdaFocus's end-to-end stage 1, its policies learning with its model:
# 48 videos / batch 8 = 6 steps, a checkpoint every step. (V2's passed
# alike; it resumes through the same loop and checkpoints, and was left
# out of the suite for its time.)
UNI_FLAGS = ["--stage=1", "--noevaluate", "--noprogress", "--deterministic",
             "--checkpoint_every=1"] + helpers.tiny_uni_flags(stage1__epochs=1)
UNI_STEPS = 6
UNI_POLICY = "model/spatial_policy/"


def test_uni_end_to_end_kill9_then_resume_matches_uninterrupted_run(
    tmp_path):
  data_dir = helpers.write_dataset(str(tmp_path / "data"), num_train=48,
                                   num_val=8)
  straight = str(tmp_path / "straight")
  helpers.run_train(UNI_FLAGS + [f"--data_dir={data_dir}",
                                 f"--run_dir={straight}"])
  assert _latest_step(straight) == UNI_STEPS
  run = str(tmp_path / "killed")
  args = UNI_FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}"]
  proc = _start_train(args)
  deadline = time.time() + 300
  while _latest_step(run) < 2 and time.time() < deadline:
    time.sleep(0.02)
  proc.kill()  # SIGKILL: no cleanup, possibly mid-write
  proc.wait()
  killed_at = _latest_step(run)
  assert 2 <= killed_at < UNI_STEPS, "the kill must land mid-run"
  resumed = helpers.run_train(args)
  assert f"resumed stage 1 at step {killed_at}" in resumed.stderr
  a = helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(run, 1))
  b = helpers.checkpoint_tensors(
      checkpoints.latest_stage_checkpoint(straight, 1))
  assert a.keys() == b.keys() and any(k.startswith(UNI_POLICY)
                                      for k in a)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)

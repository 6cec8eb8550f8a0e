"""A training process killed with SIGKILL resumes where its checkpoint was."""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.training import supervised

# 96 videos / batch 8 = 12 steps an epoch, 2 epochs, a checkpoint every step.
FLAGS = ["--stage=1", "--noevaluate", "--noprogress", "--deterministic",
         "--checkpoint_every=1"] + helpers.tiny_flags(stage1__epochs=2)
TOTAL_STEPS = 24


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=96, num_val=8)


def _latest_step(run):
  ckpt = supervised.latest_stage_checkpoint(run, 1)
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
  a = helpers.checkpoint_tensors(supervised.latest_stage_checkpoint(run, 1))
  b = helpers.checkpoint_tensors(
      supervised.latest_stage_checkpoint(straight, 1))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
  step = tf.train.load_checkpoint(supervised.latest_stage_checkpoint(run, 1))
  assert step.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == TOTAL_STEPS

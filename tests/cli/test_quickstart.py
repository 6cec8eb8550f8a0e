"""launch/train.py end to end: every stage, the results table, re-runs."""
import glob
import json
import os
import re

import pytest

import helpers


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=16, num_val=8)


@pytest.mark.training
def test_all_stages_then_results_table(data_dir, tmp_path):
  run = str(tmp_path / "run")
  flags = [f"--data_dir={data_dir}", f"--run_dir={run}",
           "--eval_max_videos=8"] + helpers.tiny_flags()
  proc = helpers.run_train(flags)
  # The terminal a newcomer reads: the command's own lines and progress
  # bars, nothing of TensorFlow's C++ start-up, absl's prefixes or Gym.
  assert helpers.noise_lines(proc.stderr) == []
  assert "stage 0 starts from random initialisation\n" in proc.stderr
  for stage in range(4):
    assert re.search(rf"stage {stage} epoch (\d+)/\1: 100%", proc.stderr), stage
  # What the terminal hid is kept for a bug report.
  (log,) = glob.glob(os.path.join(run, "logs", "train-*.log"))
  assert "stage 0 starts from random initialisation" in open(log).read()
  for stage in range(4):
    assert os.path.exists(os.path.join(run, f"stage{stage}", "done.json"))
  metrics = json.load(open(os.path.join(run, "metrics.json")))
  rows = metrics["results"]["rows"]
  assert set(rows) == {"policy", "random", "centre", "oracle",
                       "random@stage1", "centre@stage1", "glance_only"}
  for row in rows.values():
    assert 0.0 <= row["top1"] <= row["top5"] <= 100.0
    assert len(row["mAP_per_step"]) == helpers.TINY["data.num_frames"]
  gflops = {k: r["gflops_per_video"] for k, r in rows.items()}
  assert gflops["random"] == gflops["centre"] == gflops["oracle"]
  assert gflops["glance_only"] < gflops["random"] < gflops["policy"]
  assert metrics["results"]["num_videos"] == 8
  assert metrics["gflops"]["gflops_per_video"] == pytest.approx(
      gflops["policy"])
  assert "over_random" in metrics["results"]["policy_margins"]
  out = proc.stdout
  assert "policy" in out and "glance_only" in out and "oracle" in out
  assert f"run directory: {run}" in out
  config = json.load(open(os.path.join(run, "config.json")))
  assert config["model"]["patch_size"] == helpers.TINY["model.patch_size"]

  # The same command again trains nothing and reports the same table.
  again = helpers.run_train(flags)
  assert "already done" in again.stderr
  assert json.load(open(os.path.join(run, "metrics.json")))["results"][
      "rows"]["policy"] == rows["policy"]


def test_bad_flags_are_usage_errors(tmp_path):
  proc = helpers.run_train(["--dataset=kinetics"], check=False)
  assert proc.returncode != 0 and "unknown dataset preset" in proc.stderr
  proc = helpers.run_train(["--dataset=minik", f"--workspace={tmp_path}"],
                           check=False)
  assert proc.returncode != 0 and "needs --data_dir" in proc.stderr
  proc = helpers.run_train(["--stage=5"], check=False)
  assert proc.returncode != 0 and "stages are 0, 1, 2, 3" in proc.stderr
  proc = helpers.run_train(["--override=model.nope=1"], check=False)
  assert proc.returncode != 0 and "no field" in proc.stderr

"""Calibrating early exit on trained tiny runs of both model families."""
import json
import os
import shutil
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
from PIL import Image
import pytest

import helpers
import video_fixtures
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import predictions
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference.early_exit import calibrate as calibrate_lib
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.profiling import flops
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import export

# Every test calibrates a run trained by its module's fixtures.
pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A V1 run trained for one stage-1 epoch on 16 videos (centre patches)."""
  return helpers.train_tiny_run(tmp_path_factory.mktemp("ee"), (1,))


def test_calibrate_exit_end_to_end(tiny_run):
  cfg, run = tiny_run
  cost = flops.video_macs(cfg)
  # One frame with centre patches: glance, focus and classifier, no policy.
  per_frame = cost["glance"] + cost["focus"] + cost["classifier"]
  t = cfg.data.num_frames
  full_gflops = t * per_frame / flops.G
  budget = 0.4 * full_gflops
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch",
                                    "calibrate_exit.py"),
       f"--run={run}", f"--budget_gflops={budget}", "--num_points=5",
       "--progress=false"],
      capture_output=True, text=True, timeout=300,
      env=helpers.user_environment())
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert helpers.noise_lines(proc.stderr) == []
  assert "(stored)" in proc.stdout and "no exit" in proc.stdout

  record = threshold_file.load(run)
  assert record["patches"] == "centre"
  assert record["exit_step_macs"] == [per_frame] * t
  assert record["budget_gflops"] == pytest.approx(budget)
  # The profile meets the budget; its realisation on 16 videos is close.
  assert record["expected_gflops_train"] == pytest.approx(budget, rel=1e-6)
  assert abs(record["measured_gflops_train"] - budget) <= (
      per_frame / flops.G)
  thresholds = threshold_file.load_thresholds(run,
                                             final_weights.resolve(run))
  assert thresholds.shape == (t,)

  section = json.load(open(os.path.join(run, "metrics.json")))["early_exit"]
  assert section["eval"]["gflops"] < section["full"]["gflops"]
  assert section["full"]["gflops"] == pytest.approx(full_gflops)
  curve = section["curve"]
  assert len(curve) == 5
  assert curve[0]["gflops"] == pytest.approx(per_frame / flops.G)
  assert curve[-1]["gflops"] == pytest.approx(full_gflops)
  check = section["inference_check"]
  assert check["videos"] == cfg.eval_batch_size
  assert check["gflops"] < check["gflops_full"] == pytest.approx(full_gflops)

  # Independent recount from the evaluation split's step_probs.
  pred = predictions.predict_split(
      trained_run.TrainedRun(run).recognizer(), pipeline.split_dir(cfg.data, cfg.data.eval_split),
      "centre", progress=False)
  hits, frames_used = [], []
  for probs, label in zip(pred["step_probs"], pred["labels"]):
    for step in range(t):
      if step == t - 1 or probs[step].max() >= thresholds[step]:
        hits.append(int(np.argmax(probs[step]) == label))
        frames_used.append(step + 1)
        break
  assert section["eval"]["top1"] == pytest.approx(100.0 * np.mean(hits))
  assert section["eval"]["gflops"] == pytest.approx(
      np.mean(frames_used) * per_frame / flops.G)
  checked = frames_used[:check["videos"]]
  assert sum(check["step_videos"]) == sum(checked)
  assert check["gflops"] == pytest.approx(
      np.mean(checked) * per_frame / flops.G)
  full_top1 = 100.0 * np.mean(pred["step_probs"][:, -1].argmax(-1) ==
                              pred["labels"])
  assert section["full"]["top1"] == pytest.approx(full_top1)

  png = Image.open(os.path.join(run, "early_exit_curve.png"))
  assert png.size == (720, 480)
  csv = open(os.path.join(run, "early_exit_curve.csv")).read().splitlines()
  assert csv[0].startswith("budget_gflops,") and len(csv) == 6
  assert "| budget |" in open(os.path.join(run,
                                           "early_exit_curve.md")).read()
  # The results table's sections survive the merge.
  assert run_dir.update_metrics(run)["early_exit"] == section


@pytest.fixture(scope="module")
def two_stream_run(tmp_path_factory):
  """A two-stream run: one stage-1 epoch and a continuous policy (stage 2)."""
  return helpers.train_tiny_run(
      tmp_path_factory.mktemp("ee2"), (1, 2),
      **helpers.two_stream_overrides(model__policy="continuous"))


def test_two_stream_run_calibrated_to_a_budget(two_stream_run):
  cfg, run = two_stream_run
  cost = flops.video_macs(cfg)
  # Exit step 0: the glance stream with its head and the policy; step 1: the
  # focus stream with its head.
  glance = (flops.choice_gflops(cost, "glance_only") * flops.G +
            cost["per_video"]["policy"])
  full = cost["per_video"]["total"]
  budget = (glance + 0.5 * (full - glance)) / flops.G
  section = calibrate_lib.calibrate(run, budget_gflops=budget, num_points=3,
                                    progress=False)

  record = threshold_file.load(run)
  assert record["patches"] == "policy" and record["num_exit_steps"] == 2
  np.testing.assert_allclose(record["exit_step_macs"], [glance, full - glance])
  thresholds = threshold_file.load_thresholds(run,
                                             final_weights.resolve(run))
  assert thresholds.shape == (2,) and thresholds[1] == 0.0
  assert record["expected_gflops_train"] == pytest.approx(budget, rel=1e-6)
  # The training videos' measured cost meets the budget to the rounding of
  # one video's exit (16 videos).
  train_videos = record["train_videos"]
  assert abs(record["measured_gflops_train"] - budget) <= (
      0.5 * (full - glance) / flops.G / train_videos) + 1e-12
  assert glance / flops.G <= section["eval"]["gflops"] <= full / flops.G
  assert section["full"]["gflops"] == pytest.approx(full / flops.G)
  assert section["curve"][0]["gflops"] == pytest.approx(glance / flops.G)
  assert section["curve"][-1]["gflops"] == pytest.approx(full / flops.G)

  # The runner on the evaluation videos: the whole-clip exit_probs at the
  # exit steps, and no focus stream for the videos leaving at step 0.
  rec = trained_run.TrainedRun(run).recognizer()
  split = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  pred = predictions.predict_split(rec, split, "policy", progress=False)
  runner = runner_lib.EarlyExitRunner(rec, cost)
  batch = next(iter(pipeline.make_dataset(cfg.data, split, training=False,
                                          batch_size=16, seed=cfg.seed)))
  out = runner.predict(batch, thresholds)
  want = exit_rule.exit_steps(pred["exit_probs"], thresholds)
  assert 0 < int(np.sum(want == 0)) < len(want)
  np.testing.assert_array_equal(out.exit_steps, want)
  np.testing.assert_allclose(
      out.probs, exit_rule.exit_predictions(pred["exit_probs"], want),
      atol=1e-5)
  np.testing.assert_array_equal(out.step_videos,
                                [16, int(np.sum(want == 1))])
  assert float(np.mean(out.macs)) / flops.G == pytest.approx(
      section["eval"]["gflops"])
  check = section["inference_check"]
  assert check["same_exit_step"] == 1.0
  assert check["step_videos"] == [8, int(np.sum(want[:8] == 1))]


def test_thresholds_of_replaced_weights_are_refused(tiny_run, tmp_path):
  # Issue 23: early_exit.json recorded its checkpoint's path only, and
  # nothing compared it; re-trained weights got the old thresholds.
  cfg, tiny = tiny_run
  run = str(tmp_path / "run")
  shutil.copytree(tiny, run)
  cost = flops.video_macs(cfg)
  full = cfg.data.num_frames * (cost["glance"] + cost["focus"]
                                + cost["classifier"]) / flops.G
  calibrate_lib.calibrate(run, budget_gflops=0.5 * full, max_videos=8,
                          num_points=2, check_videos=0, progress=False)
  assert predict_lib.Predictor(run, early_exit=True,
                               backend="tf").thresholds is not None

  helpers.rewrite_checkpoint(final_weights.resolve(run).model_checkpoint)
  with pytest.raises(threshold_file.StaleThresholdsError,
                     match="fitted on other weights"):
    predict_lib.Predictor(run, early_exit=True, backend="tf")
  with pytest.raises(threshold_file.StaleThresholdsError):
    export.build_module(run, early_exit_on=True)
  video = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 12)
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch", "predict.py"),
       f"--run={run}", "--early_exit", "--backend=tf", video],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and (
      f"refit the thresholds: adafocus-calibrate-exit --run={run} "
      in errors[0]), proc.stderr[-3000:]
  # Without early exit the run still predicts.
  assert predict_lib.Predictor(run, backend="tf").thresholds is None

"""AdaFocus+ early exit: the rule, threshold fitting, inference, calibration."""
import json
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import early_exit
from adafocus_tf import flops
from adafocus_tf.data import pipeline
from adafocus_tf.models import adafocus
from adafocus_tf.models import patches
from adafocus_tf.policy import trainer as trainer_lib
from adafocus_tf.training import evaluation
from adafocus_tf.training import experiment
from adafocus_tf.training import run_dir


def _probs(conf_rows):
  """[N, T] confidences -> two-class step_probs [N, T, 2]."""
  conf = np.asarray(conf_rows, np.float32)
  return np.stack([conf, 1.0 - conf], -1)


def test_exit_steps_on_hand_made_probabilities():
  step_probs = _probs([[0.95, 0.60, 0.70],    # confident at once
                       [0.55, 0.80, 0.60],    # passes eta_1 = 0.75
                       [0.60, 0.70, 0.52],    # never: the last frame
                       [0.10, 0.60, 0.90]])   # max prob 0.9 is class 1
  thresholds = [0.9, 0.75, 0.99]
  steps = early_exit.exit_steps(step_probs, thresholds)
  np.testing.assert_array_equal(steps, [0, 1, 2, 0])
  assert steps.dtype == np.int64
  np.testing.assert_allclose(
      early_exit.exit_predictions(step_probs, steps)[:, 0],
      [0.95, 0.80, 0.52, 0.10])
  # >= : a confidence equal to its threshold exits.
  np.testing.assert_array_equal(
      early_exit.exit_steps(step_probs, [0.95, 2.0, 2.0]), [0, 2, 2, 2])
  np.testing.assert_array_equal(
      early_exit.exit_steps(step_probs, [early_exit.NEVER] * 3), [2] * 4)
  np.testing.assert_array_equal(
      early_exit.exit_steps(step_probs, [0.0, 0.0, 0.0]), [0] * 4)
  with pytest.raises(ValueError, match="one threshold per step"):
    early_exit.exit_steps(step_probs, [0.5, 0.5])


def test_geometric_profile_and_budget_bisection():
  np.testing.assert_allclose(early_exit.geometric_profile(0.5, 3),
                             np.array([4, 2, 1]) / 7)
  np.testing.assert_allclose(early_exit.geometric_profile(1.0, 4), [0.25] * 4)
  np.testing.assert_array_equal(early_exit.geometric_profile(0.0, 3),
                                [1, 0, 0])
  np.testing.assert_array_equal(
      early_exit.geometric_profile(float("inf"), 3), [0, 0, 1])
  # Expected cost: sum_t p_t (t + 1) x per-frame: (4*1 + 2*2 + 1*3) / 7.
  assert early_exit.expected_gflops(
      early_exit.geometric_profile(0.5, 3), 7e9) == pytest.approx(11.0)
  per_frame, t = 1.685e9, 16  # SPEC.md: V1 P = 128, 27.0 GFLOPs at T = 16
  for budget in (2.0, 10.0, 19.6, 24.4):
    q = early_exit.ratio_for_budget(budget, per_frame, t)
    got = early_exit.expected_gflops(early_exit.geometric_profile(q, t),
                                     per_frame)
    assert got == pytest.approx(budget, rel=1e-9)
  assert early_exit.ratio_for_budget(1.0, per_frame, t) == 0.0
  assert early_exit.ratio_for_budget(30.0, per_frame, t) == float("inf")
  np.testing.assert_allclose(early_exit.parse_profile("geometric:0.5", 3),
                             np.array([4, 2, 1]) / 7)
  np.testing.assert_allclose(early_exit.parse_profile("1,1,2", 3),
                             [0.25, 0.25, 0.5])
  with pytest.raises(ValueError, match="non-negative"):
    early_exit.parse_profile("1,2", 3)


def test_fitted_thresholds_reproduce_the_exit_profile():
  rng = np.random.default_rng(0)
  n, t = 1000, 8
  # Confidence rises over the frames, differently for each video.
  conf = np.clip(rng.uniform(0.2, 0.6, (n, 1)) +
                 np.cumsum(rng.uniform(0, 0.08, (n, t)), 1), 0, 1)
  for q in (0.6, 1.0, 1.5):
    profile = early_exit.geometric_profile(q, t)
    thresholds = early_exit.fit_thresholds(conf, profile)
    assert thresholds[-1] == 0.0
    counts = np.bincount(
        early_exit.exit_steps_from_confidences(conf, thresholds),
        minlength=t)
    # Exactly the rounded cumulative targets (no ties in continuous data).
    want = np.diff(np.r_[0, np.round(n * np.cumsum(profile))]).astype(int)
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_allclose(counts / n, profile, atol=1.0 / n)
  # A step nobody should leave at gets NEVER; all leaving gets 0.
  thresholds = early_exit.fit_thresholds(conf, [0, 0.5, 0.5, 0, 0, 0, 0, 0])
  assert thresholds[0] == early_exit.NEVER and thresholds[2] == 0.0


def test_thresholds_json_round_trip(tmp_path):
  run = str(tmp_path / "run")
  os.makedirs(run)
  assert early_exit.load_thresholds(run) is None
  thresholds = [0.912345678, early_exit.NEVER, 0.5, 0.0]
  early_exit.save(run, thresholds, [0.4, 0.3, 0.2, 0.1], 1234567, 2.5,
                  2.4, ratio=0.7)
  got = early_exit.load_thresholds(run)
  assert got.dtype == np.float32 and got.shape == (4,)
  np.testing.assert_allclose(got, thresholds, rtol=1e-7)
  record = json.load(open(os.path.join(run, "early_exit.json")))
  assert record["per_frame_macs"] == 1234567
  assert record["budget_gflops"] == 2.5 and record["ratio"] == 0.7
  assert record["expected_gflops_train"] == 2.4
  assert not [f for f in os.listdir(run) if f.startswith(".tmp")]


@pytest.mark.parametrize("kind", ["gru", "fc"])
def test_early_exit_predict_matches_full_model_and_saves_focus(kind):
  cfg = helpers.tiny_config(model__classifier=kind)
  tf.keras.utils.set_random_seed(3)
  model = adafocus.AdaFocus(cfg)
  model.build_all(cfg.data.num_frames)
  n, t = 12, cfg.data.num_frames
  frames = tf.random.stateless_normal([n, t, 32, 32, 3], [1, 2])
  offsets = patches.random_offsets(tf.constant([[i, 7] for i in range(n)]),
                                   t, 32, cfg.model.patch_size)
  full = model.classifier.step_probs(model(frames, offsets)).numpy()

  never = early_exit.early_exit_predict(model, frames, lambda f: offsets,
                                        [early_exit.NEVER] * t)
  np.testing.assert_allclose(never.probs, full[:, -1], atol=1e-5)
  np.testing.assert_array_equal(never.exit_steps, [t - 1] * n)
  assert never.focus_evaluations == n * t

  # Thresholds from the model's own confidences: a spread of exit steps.
  conf = early_exit.confidences(full)
  thresholds = early_exit.fit_thresholds(
      conf, early_exit.geometric_profile(0.7, t))
  want = early_exit.exit_steps(full, thresholds)
  assert len(set(want.tolist())) > 2
  out = early_exit.early_exit_predict(model, frames, lambda f: offsets,
                                      thresholds)
  np.testing.assert_array_equal(out.exit_steps, want)
  np.testing.assert_allclose(out.probs,
                             early_exit.exit_predictions(full, want),
                             atol=1e-5)
  assert out.focus_evaluations == int(np.sum(want + 1)) < n * t

  # Default offsets: the centre patch.
  centre = patches.centre_offsets([n, t], 32, cfg.model.patch_size)
  full_c = model.classifier.step_probs(model(frames, centre)).numpy()
  out_c = early_exit.early_exit_predict(model, frames, None, [0.0] * t)
  np.testing.assert_allclose(out_c.probs, full_c[:, 0], atol=1e-5)
  assert out_c.focus_evaluations == n


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A run trained for one stage-1 epoch on 16 videos (centre patches)."""
  return helpers.train_tiny_run(tmp_path_factory.mktemp("ee"), (1,))


def test_calibrate_exit_end_to_end(tiny_run):
  cfg, run = tiny_run
  per_frame = early_exit.frame_macs(flops.video_macs(cfg), "centre")
  t = cfg.data.num_frames
  full_gflops = t * per_frame / flops.G
  budget = 0.4 * full_gflops
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch",
                                    "calibrate_exit.py"),
       f"--run={run}", f"--budget_gflops={budget}", "--num_points=5",
       "--progress=false"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "(stored)" in proc.stdout and "no exit" in proc.stdout

  record = early_exit.load(run)
  assert record["patches"] == "centre"
  assert record["per_frame_macs"] == per_frame
  assert record["budget_gflops"] == pytest.approx(budget)
  # The profile meets the budget; its realisation on 16 videos is close.
  assert record["expected_gflops_train"] == pytest.approx(budget, rel=1e-6)
  assert abs(record["measured_gflops_train"] - budget) <= (
      per_frame / flops.G)
  thresholds = early_exit.load_thresholds(run)

  section = json.load(open(os.path.join(run, "metrics.json")))["early_exit"]
  assert section["eval"]["gflops"] < section["full"]["gflops"]
  assert section["full"]["gflops"] == pytest.approx(full_gflops)
  curve = section["curve"]
  assert len(curve) == 5
  assert curve[0]["gflops"] == pytest.approx(per_frame / flops.G)
  assert curve[-1]["gflops"] == pytest.approx(full_gflops)
  check = section["inference_check"]
  assert check["videos"] == cfg.eval_batch_size
  assert check["focus_evaluations"] < check["focus_evaluations_full"]

  # Independent recount from the evaluation split's step_probs.
  model, _ = experiment.final_model(cfg, run)
  pred = evaluation.predict_split(
      model, cfg, pipeline.split_dir(cfg.data, cfg.data.eval_split),
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
  assert check["focus_evaluations"] == sum(frames_used[:check["videos"]])
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


def test_runner_steps_the_policy_on_the_running_videos_only(tiny_run):
  # The greedy policy, stepped frame by frame with its state carried for
  # the survivors, picks the patches the whole-sequence policy picks: the
  # same predictions as the full model on those patches. (Untrained policy
  # weights on the stage-1 model: the equivalence holds for any weights.)
  cfg, run = tiny_run
  trainer = trainer_lib.PolicyTrainer(cfg, tf.distribute.get_strategy(),
                                      os.path.join(run, "..", "policy-run"),
                                      progress=False)
  trainer.initialize(experiment.previous_checkpoint(run, 2))
  model = trainer.model
  batch = next(iter(pipeline.make_dataset(
      cfg.data, pipeline.split_dir(cfg.data, cfg.data.eval_split),
      training=False, batch_size=8, seed=cfg.seed)))
  frames = batch["frames"]
  t = cfg.data.num_frames
  offsets = trainer.policy_fn(batch)
  full = model.classifier.step_probs(model(frames, offsets)).numpy()
  runner = early_exit.EarlyExitRunner(model, trainer.greedy_stepper())
  never = runner.predict(frames, [early_exit.NEVER] * t)
  np.testing.assert_allclose(never.probs, full[:, -1], atol=1e-5)
  thresholds = early_exit.fit_thresholds(
      early_exit.confidences(full), early_exit.geometric_profile(0.6, t))
  want = early_exit.exit_steps(full, thresholds)
  assert len(set(want.tolist())) > 1
  out = runner.predict(frames, thresholds)
  np.testing.assert_array_equal(out.exit_steps, want)
  np.testing.assert_allclose(out.probs,
                             early_exit.exit_predictions(full, want),
                             atol=1e-5)
  assert out.focus_evaluations == int(np.sum(want + 1)) < 8 * t
  with pytest.raises(ValueError):
    runner.predict(frames, thresholds, offsets=offsets)

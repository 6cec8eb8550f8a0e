"""AdaFocus+ early exit: the rule, profiles and costs, fitting, the runner.

Calibration of trained runs is in test_early_exit_calibrate.py.
"""
import json
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.inference import loading
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.profiling import flops
from adafocus_tf.runs import final_weights


def _probs(conf_rows):
  """[N, E] confidences -> two-class exit_probs [N, E, 2]."""
  conf = np.asarray(conf_rows, np.float32)
  return np.stack([conf, 1.0 - conf], -1)


def test_exit_steps_on_hand_made_probabilities():
  exit_probs = _probs([[0.95, 0.60, 0.70],    # confident at once
                       [0.55, 0.80, 0.60],    # passes eta_1 = 0.75
                       [0.60, 0.70, 0.52],    # never: the last step
                       [0.10, 0.60, 0.90]])   # max prob 0.9 is class 1
  thresholds = [0.9, 0.75, 0.99]
  steps = exit_rule.exit_steps(exit_probs, thresholds)
  np.testing.assert_array_equal(steps, [0, 1, 2, 0])
  assert steps.dtype == np.int64
  np.testing.assert_allclose(
      exit_rule.exit_predictions(exit_probs, steps)[:, 0],
      [0.95, 0.80, 0.52, 0.10])
  # >= : a confidence equal to its threshold exits.
  np.testing.assert_array_equal(
      exit_rule.exit_steps(exit_probs, [0.95, 2.0, 2.0]), [0, 2, 2, 2])
  np.testing.assert_array_equal(
      exit_rule.exit_steps(exit_probs, [exit_rule.NEVER] * 3),
      [2] * 4)
  np.testing.assert_array_equal(
      exit_rule.exit_steps(exit_probs, [0.0, 0.0, 0.0]), [0] * 4)
  with pytest.raises(ValueError, match="one threshold per exit step"):
    exit_rule.exit_steps(exit_probs, [0.5, 0.5])


def test_geometric_profile_and_budget_bisection():
  np.testing.assert_allclose(exit_cost.geometric_profile(0.5, 3),
                             np.array([4, 2, 1]) / 7)
  np.testing.assert_allclose(exit_cost.geometric_profile(1.0, 4),
                             [0.25] * 4)
  np.testing.assert_array_equal(exit_cost.geometric_profile(0.0, 3),
                                [1, 0, 0])
  np.testing.assert_array_equal(
      exit_cost.geometric_profile(float("inf"), 3), [0, 0, 1])
  # Equal steps (V1): sum_t p_t (t + 1) x per-frame: (4*1 + 2*2 + 1*3) / 7.
  assert exit_cost.expected_gflops(
      exit_cost.geometric_profile(0.5, 3), [7e9] * 3) == pytest.approx(
          11.0)
  # docs/METHOD.md section 6: V1 P = 128, 27.0 GFLOPs at T = 16.
  per_frame, t = 1.685e9, 16
  for budget in (2.0, 10.0, 19.6, 24.4):
    q = exit_cost.ratio_for_budget(budget, [per_frame] * t)
    got = exit_cost.expected_gflops(
        exit_cost.geometric_profile(q, t), [per_frame] * t)
    assert got == pytest.approx(budget, rel=1e-9)
  assert exit_cost.ratio_for_budget(1.0, [per_frame] * t) == 0.0
  assert exit_cost.ratio_for_budget(30.0, [per_frame] * t) == float(
      "inf")
  # Unequal steps (two-stream: glance 2 G, then focus 5 G): a budget of 4 G
  # is met by p = (0.6, 0.4), 0.6 x 2 + 0.4 x 7, so q = 0.4 / 0.6.
  assert exit_cost.ratio_for_budget(4.0, [2e9, 5e9]) == pytest.approx(
      2 / 3, rel=1e-9)
  assert exit_cost.ratio_for_budget(2.0, [2e9, 5e9]) == 0.0
  assert exit_cost.ratio_for_budget(7.0, [2e9, 5e9]) == float("inf")
  assert exit_cost.measured_gflops([0, 1, 1, 0], [2e9, 5e9]) == 4.5
  with pytest.raises(ValueError, match="non-negative MACs"):
    exit_cost.cumulative_macs([2e9, -1.0])
  with pytest.raises(ValueError, match="profile has"):
    exit_cost.expected_gflops([0.5, 0.5], [1e9] * 3)
  np.testing.assert_allclose(exit_cost.parse_profile("geometric:0.5", 3),
                             np.array([4, 2, 1]) / 7)
  np.testing.assert_allclose(exit_cost.parse_profile("1,1,2", 3),
                             [0.25, 0.25, 0.5])
  with pytest.raises(ValueError, match="non-negative"):
    exit_cost.parse_profile("1,2", 3)


def test_fitted_thresholds_reproduce_the_exit_profile():
  rng = np.random.default_rng(0)
  n, t = 1000, 8
  # Confidence rises over the steps, differently for each video.
  conf = np.clip(rng.uniform(0.2, 0.6, (n, 1)) +
                 np.cumsum(rng.uniform(0, 0.08, (n, t)), 1), 0, 1)
  for q in (0.6, 1.0, 1.5):
    profile = exit_cost.geometric_profile(q, t)
    thresholds = threshold_fit.fit_thresholds(conf, profile)
    assert thresholds[-1] == 0.0
    counts = np.bincount(
        exit_rule.exit_steps_from_confidences(conf, thresholds),
        minlength=t)
    # Exactly the rounded cumulative targets (no ties in continuous data).
    want = np.diff(np.r_[0, np.round(n * np.cumsum(profile))]).astype(int)
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_allclose(counts / n, profile, atol=1.0 / n)
  # A step nobody should leave at gets NEVER; all leaving gets 0.
  thresholds = threshold_fit.fit_thresholds(conf,
                                            [0, 0.5, 0.5, 0, 0, 0, 0, 0])
  assert thresholds[0] == exit_rule.NEVER and thresholds[2] == 0.0


def _weights(run, value, name="ckpt-1"):
  """FinalWeights of a one-variable checkpoint saved as ``name`` in ``run``.
  """
  prefix = os.path.join(run, name)
  tf.train.Checkpoint(v=tf.Variable(value)).write(prefix)
  return final_weights.FinalWeights.of_checkpoints(run, prefix, 3)


def test_thresholds_json_round_trip(tmp_path):
  run = str(tmp_path / "run")
  os.makedirs(run)
  weights = _weights(run, [1.0, 2.0])
  assert threshold_file.load_thresholds(run, weights) is None
  thresholds = [0.912345678, exit_rule.NEVER, 0.5, 0.0]
  threshold_file.save(run, thresholds, [0.4, 0.3, 0.2, 0.1], [1234567] * 4,
                      2.5, 2.4, weights, ratio=0.7)
  got = threshold_file.load_thresholds(run, weights)
  assert got.dtype == np.float32 and got.shape == (4,)
  np.testing.assert_allclose(got, thresholds, rtol=1e-7)
  record = json.load(open(os.path.join(run, "early_exit.json")))
  assert record["exit_step_macs"] == [1234567] * 4
  assert record["budget_gflops"] == 2.5 and record["ratio"] == 0.7
  assert record["expected_gflops_train"] == 2.4
  assert record["checkpoint"] == weights.model_checkpoint
  assert record["weights_digest"] == weights.digest
  assert not [f for f in os.listdir(run) if f.startswith(".tmp")]
  with pytest.raises(ValueError, match="one of each per exit step"):
    threshold_file.save(run, [0.5, 0.0], [0.5, 0.5], [1e9] * 3, None, 1.0,
                        weights)

  # A V1 run calibrated before exit steps had costs of their own (and
  # before thresholds recorded their weights): read, but not applied.
  old = {"thresholds": [0.9, 0.8, 0.0], "profile": [0.5, 0.3, 0.2],
         "per_frame_macs": 1000, "budget_gflops": None,
         "expected_gflops_train": 1.7e-6, "num_frames": 3}
  with open(os.path.join(run, "early_exit.json"), "w") as f:
    json.dump(old, f)
  assert threshold_file.load(run)["exit_step_macs"] == [1000.0] * 3
  with pytest.raises(threshold_file.StaleThresholdsError,
                     match="records no digest.*adafocus-calibrate-exit"):
    threshold_file.load_thresholds(run, weights)


def test_thresholds_of_other_weights_under_the_same_name_are_refused(
    tmp_path):
  run = str(tmp_path / "run")
  os.makedirs(run)
  fitted = _weights(run, [1.0, 2.0])
  threshold_file.save(run, [0.9, 0.0], [0.5, 0.5], [1e9] * 2, None, 1.0,
                      fitted)
  # The checkpoint replaced by other weights under the same name.
  replaced = _weights(run, [1.0, 2.5])
  assert replaced.model_checkpoint == fitted.model_checkpoint
  assert replaced.digest != fitted.digest
  with pytest.raises(threshold_file.StaleThresholdsError,
                     match=f"fitted on other weights .*--run={run}"):
    threshold_file.load_thresholds(run, replaced)
  # The same weights saved again (a new file, equal content) still fit.
  np.testing.assert_allclose(
      threshold_file.load_thresholds(run, _weights(run, [1.0, 2.0])),
      [0.9, 0.0])


def _spy_steps(recognizer):
  """Records the batch size and keys of every step the recognizer runs."""
  calls = []
  step = recognizer.step

  def spy(inputs, state, e):
    calls.append((e, sorted(inputs), int(next(iter(inputs.values())).shape[0])))
    return step(inputs, state, e)

  recognizer.step = spy
  return calls


@pytest.mark.parametrize("kind,with_policy", [("gru", False), ("fc", False),
                                              ("gru", True)])
def test_one_stream_runner_matches_whole_clips_and_skips_frames(kind,
                                                                with_policy):
  # Untrained weights: the equivalence of stepwise and whole-clip inference
  # holds for any weights, and the policy, stepped frame by frame with its
  # state carried for the survivors, picks the whole-clip policy's patches.
  cfg = helpers.tiny_config(model__classifier=kind)
  tf.keras.utils.set_random_seed(3)
  model = factory.build_model(cfg)
  model.build_all()
  policy = (greedy.GreedyPolicy.build(cfg, model.glance.map_shape)
            if with_policy else None)
  rec = loading.build(cfg, model, policy)
  n, t = 12, cfg.data.num_frames
  batch = {"frames": tf.random.stateless_normal([n, t, 32, 32, 3], [1, 2]),
           "seed": tf.constant([[i, 7] for i in range(n)], tf.int64)}
  full = rec(batch, rec.default_choice()).probs.numpy()
  cost = flops.video_macs(cfg)
  # One frame's MACs, counted part by part (centre patches: no policy).
  per_frame = (cost["glance"] + cost["focus"] + cost["classifier"] +
               (cost["policy"] if with_policy else 0))
  runner = runner_lib.EarlyExitRunner(rec, cost)
  np.testing.assert_array_equal(runner.step_macs, [per_frame] * t)

  # (Thresholds nobody reaches give whole clips: the families' interface
  # test, tests/families/test_family_interface.py.)
  # Thresholds from the model's own confidences: a spread of exit steps.
  conf = exit_rule.confidences(full)
  thresholds = threshold_fit.fit_thresholds(
      conf, exit_cost.geometric_profile(0.7, t))
  want = exit_rule.exit_steps(full, thresholds)
  assert len(set(want.tolist())) > 2
  calls = _spy_steps(rec)
  out = runner.predict(batch, thresholds)
  np.testing.assert_array_equal(out.exit_steps, want)
  np.testing.assert_allclose(out.probs,
                             exit_rule.exit_predictions(full, want),
                             atol=1e-5)
  # Frame e ran on the videos exiting at e or later, and on nothing else.
  running = [int(np.sum(want >= e)) for e in range(t)]
  np.testing.assert_array_equal(out.step_videos, running)
  assert [c[2] for c in calls] == [r for r in running if r]
  assert int(out.step_videos.sum()) == int(np.sum(want + 1)) < n * t
  np.testing.assert_array_equal(out.macs, (want + 1) * per_frame)

  # Everyone confident enough at once: one frame each.
  zero = runner.predict(batch, [0.0] * t)
  np.testing.assert_allclose(zero.probs, full[:, 0], atol=1e-5)
  np.testing.assert_array_equal(zero.step_videos, [n] + [0] * (t - 1))


def test_two_stream_runner_skips_the_focus_stream_after_step_0():
  cfg = helpers.tiny_two_stream_config(model__policy="continuous")
  tf.keras.utils.set_random_seed(5)
  model = factory.build_model(cfg)
  model.build_all()
  rec = loading.build(cfg, model,
                      greedy.GreedyPolicy.build(cfg, model.glance.map_shape))
  d = cfg.data
  n = 10
  batch = {
      "glance_frames": tf.random.stateless_normal(
          [n, d.glance_frames, 32, 32, 3], [1, 2]),
      "focus_frames": tf.random.stateless_normal(
          [n, d.focus_frames, 32, 32, 3], [3, 4]),
      "seed": tf.constant([[i, 7] for i in range(n)], tf.int64)}
  exit_probs = rec.exit_probs(rec(batch, "policy")).numpy()
  assert exit_probs.shape == (n, 2, d.num_classes)
  cost = flops.video_macs(cfg)
  # Step 0: the glance stream with its head on Tg frames, and the policy
  # once; step 1: the rest of the video's cost (focus stream and its head).
  glance = (flops.choice_gflops(cost, "glance_only") * flops.G +
            cost["per_video"]["policy"])
  runner = runner_lib.EarlyExitRunner(rec, cost)
  np.testing.assert_allclose(
      runner.step_macs, [glance, cost["per_video"]["total"] - glance])

  # Half the videos exit with the glance's prediction.
  thresholds = threshold_fit.fit_thresholds(
      exit_rule.confidences(exit_probs),
      exit_cost.geometric_profile(1.0, 2))
  want = exit_rule.exit_steps(exit_probs, thresholds)
  assert int(np.sum(want == 0)) == n // 2
  calls = _spy_steps(rec)
  out = runner.predict(batch, thresholds)
  np.testing.assert_array_equal(out.exit_steps, want)
  np.testing.assert_allclose(
      out.probs, exit_rule.exit_predictions(exit_probs, want),
      atol=1e-5)
  # The focus stream saw only the videos still running after the glance.
  assert calls == [(0, ["glance_frames"], n), (1, ["focus_frames"], n // 2)]
  np.testing.assert_array_equal(out.step_videos, [n, n // 2])
  np.testing.assert_allclose(out.macs,
                             np.cumsum(runner.step_macs)[want])

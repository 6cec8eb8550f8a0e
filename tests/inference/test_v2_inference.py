"""Everything downstream of a trained AdaFocusV2 run (issue 14, parts 4, 7).

The results table, ``adafocus-evaluate``, early exit (stepping, V2's
threshold rule, calibration), ``adafocus-predict`` on an encoded video with
patch pictures, and inference profiling, on one TINY V2 run trained once
per process (``helpers.copy_of_tiny_v2_run``); each tool gets its own copy.
The two command lines run side by side in subprocesses while the in-process
tests go on.
"""
import json
import os
import types

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import predictions
from adafocus_tf.evaluation import results_table
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import visualize
from adafocus_tf.inference.early_exit import calibrate
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import inference_parts
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.training

T = helpers.TINY["data.num_frames"]
# Sub-pixel offsets survive float32 to about this (pixels).
OFFSET_ATOL = 1e-4
PROB_ATOL = 1e-5
LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
  """The run, a video, and the evaluate and predict command lines started."""
  root = tmp_path_factory.mktemp("v2")
  cfg, run = helpers.copy_of_tiny_v2_run(root / "run")
  _, eval_run = helpers.copy_of_tiny_v2_run(root / "eval_run")
  _, predict_run = helpers.copy_of_tiny_v2_run(root / "predict_run")
  clip = video_fixtures.write_video(str(root / "clip.mp4"), 20, width=64,
                                    height=48)
  pictures = str(root / "pictures")
  procs = {
      "evaluate": helpers.start_launch(
          "evaluate.py", [f"--run={eval_run}", "--progress=false"]),
      "predict": helpers.start_launch(
          "predict.py", [f"--run={predict_run}", "--json",
                         f"--visualize={pictures}", clip]),
  }
  return types.SimpleNamespace(cfg=cfg, run=run, eval_run=eval_run,
                               predict_run=predict_run, clip=clip,
                               pictures=pictures, procs=procs, done={})


def _finished(v2, name):
  """(return code, stdout, stderr) of a command line the fixture started."""
  if name not in v2.done:
    stdout, stderr = v2.procs[name].communicate(timeout=600)
    v2.done[name] = (v2.procs[name].returncode, stdout, stderr)
  return v2.done[name]


@pytest.fixture(scope="module")
def recognizer(v2):
  return trained_run.TrainedRun(v2.run).recognizer()


@pytest.fixture(scope="module")
def batch(v2):
  ds = helpers.eval_dataset(v2.cfg)
  return next(iter(ds))


@pytest.fixture(scope="module")
def results(v2):
  return results_table.results_table(v2.run, progress=False)


def test_results_table_rows_and_costs(v2, results):
  rows = results["rows"]
  # The model's own policy; stage 1 is the final model: no @stage1 rows.
  assert list(rows) == ["policy", "random", "centre", "oracle",
                        predictions.GLANCE_ONLY]
  cost = flops.video_macs(v2.cfg)
  assert rows["policy"]["gflops_per_video"] == pytest.approx(
      cost["gflops_per_video"])
  for choice in ("random", "centre", "oracle"):
    assert rows[choice]["gflops_per_video"] == pytest.approx(
        T * (cost["per_frame"] - cost["policy"]) / flops.G)
  assert rows[predictions.GLANCE_ONLY]["gflops_per_video"] == pytest.approx(
      T * (cost["glance"] + cost["glance_head"]) / flops.G)
  metrics = json.loads(open(os.path.join(v2.run, run_dir.METRICS)).read())
  assert metrics["results"]["rows"] == rows
  assert metrics["gflops"]["per_video"] == cost["per_video"]
  assert results["checkpoint"].endswith(
      os.path.join("stage1", "checkpoints", os.path.basename(
          results["checkpoint"])))
  assert "policy: " in results_table.format_table(results)


def test_evaluate_command_on_a_v2_run(v2, results):
  code, stdout, stderr = _finished(v2, "evaluate")
  assert code == 0, stderr[-3000:]
  metrics = json.loads(open(os.path.join(v2.eval_run,
                                         run_dir.METRICS)).read())
  (key,) = metrics["evaluation"]
  # --patches=auto picks a V2 run's own policy.
  assert key.endswith("/policy")
  row = metrics["evaluation"][key]
  assert row["gflops_per_video"] == pytest.approx(
      flops.video_macs(v2.cfg)["gflops_per_video"])
  # A copy of the same run: the results table's policy row.
  policy = results["rows"]["policy"]
  for k in ("top1", "top5", "mAP"):
    assert row[k] == pytest.approx(policy[k]), k
  assert row["num_videos"] == 16 and "policy" in stdout


def test_stepping_gives_the_whole_clip_step_logits(recognizer, batch):
  rec, frames = recognizer, batch["frames"]
  n = int(frames.shape[0])
  out = rec(batch)
  assert out.offsets.dtype == tf.float32
  # Real-valued offsets: the policy does not land on whole pixels.
  assert np.any(np.abs(out.offsets - np.round(out.offsets)) > 1e-3)
  state = rec.initial_state(n)
  for e in range(T):
    logits, offsets, state = rec.step_logits(rec.step_inputs(batch, e),
                                             state, e)
    # Step e reads frame order[e]; its logits are whole-clip step e's.
    np.testing.assert_allclose(logits, out.logits[:, e], atol=LOGIT_ATOL)
    np.testing.assert_allclose(offsets[:, 0],
                               out.offsets[:, int(rec.model.order[e])],
                               atol=OFFSET_ATOL)
  # (Thresholds nobody reaches give whole clips, offsets in chronological
  # order: the families' interface test.)
  runner = runner_lib.EarlyExitRunner(rec)
  # Thresholds on the raw logits let about half go at step 1.
  conf = tf.reduce_max(out.logits, -1).numpy()
  thresholds = exit_rule.never(T, exit_rule.MAX_LOGIT)
  thresholds[1] = np.median(conf[:, 1])
  got = runner.predict(batch, thresholds)
  want = exit_rule.exit_steps_from_confidences(conf, thresholds)
  np.testing.assert_array_equal(got.exit_steps, want)
  assert set(want) == {1, T - 1}
  np.testing.assert_allclose(
      got.probs, out.probs.numpy()[np.arange(n), want], atol=PROB_ATOL)
  left = want == 1
  # Videos that left after step 1 read frames order[0] and order[1] only.
  read = np.zeros(T, bool)
  read[rec.model.order[:2]] = True
  assert np.isnan(got.offsets[left][:, ~read]).all()
  np.testing.assert_allclose(got.offsets[left][:, read],
                             out.offsets.numpy()[left][:, read],
                             atol=OFFSET_ATOL)
  np.testing.assert_array_equal(got.step_videos,
                                [n, n] + [int((~left).sum())] * (T - 2))
  assert np.all(got.macs[left] == runner.step_macs[:2].sum())


def test_v2_thresholds_by_hand():
  # 10 videos, 3 steps; profile 0.3 / 0.5 / 0.2: floor(10 p) = 3, 5 exits.
  conf = np.array([[9, 0, 0], [8, 1, 0], [7, 5, 0], [6, 4, 0], [5, 3, 0],
                   [4, 9, 0], [3, 8, 0], [2, 7, 0], [1, 6, 0], [0, 2, 0]],
                  np.float32)
  thresholds = threshold_fit.fit(conf, [0.3, 0.5, 0.2],
                                 exit_rule.MAX_LOGIT)
  # Step 0: the top 3 (9, 8, 7) go, eta_0 = 7. Step 1, among the 7 left
  # (second column 4, 3, 9, 8, 7, 6, 2): the top 5 go, eta_1 = 4.
  np.testing.assert_array_equal(thresholds,
                                [7.0, 4.0, exit_rule.ALWAYS_LOGIT])
  steps = exit_rule.exit_steps_from_confidences(conf, thresholds)
  np.testing.assert_array_equal(steps, [0, 0, 0, 1, 2, 1, 1, 1, 1, 2])
  # A step whose count floors to 0 lets nobody go; ties at the threshold
  # all leave.
  tied = np.array([[1, 5], [1, 4], [1, 3], [0, 2]], np.float32)
  thresholds = threshold_fit.fit(tied, [0.2, 0.8], exit_rule.MAX_LOGIT)
  assert thresholds[0] == exit_rule.NEVER_LOGIT
  thresholds = threshold_fit.fit(tied, [0.25, 0.75],
                                 exit_rule.MAX_LOGIT)
  assert thresholds[0] == 1.0
  np.testing.assert_array_equal(
      exit_rule.exit_steps_from_confidences(tied, thresholds),
      [0, 0, 0, 1])


def test_calibrate_a_v2_run(v2, tmp_path):
  _, run = helpers.copy_of_tiny_v2_run(tmp_path / "run")
  section = calibrate.calibrate(run, profile="geometric:0.5", num_points=3,
                                progress=False)
  record = threshold_file.load(run)
  assert record["criterion"] == exit_rule.MAX_LOGIT
  assert record["rule"] == exit_rule.RULES[exit_rule.MAX_LOGIT]
  assert section["criterion"] == exit_rule.MAX_LOGIT
  # Fitted on the training split read as training reads it (augmented,
  # the last partial batch dropped), the model in inference mode.
  rec = trained_run.TrainedRun(run).recognizer()
  train = predictions.predict_split(
      rec, pipeline.split_dir(v2.cfg.data, v2.cfg.data.train_split),
      "policy", progress=False, training_transform=True)
  assert section["num_videos"]["train"] == len(train["labels"]) == 16
  logits_conf = train["exit_confidences"]
  profile = exit_cost.geometric_profile(0.5, T)
  np.testing.assert_array_equal(
      record["thresholds"],
      threshold_fit.fit_top_thresholds(logits_conf, profile))
  # Exits at step e cost (e + 1) frames: the step costs are V2's per frame.
  cost = flops.video_macs(v2.cfg)
  np.testing.assert_allclose(record["exit_step_macs"],
                             [cost["per_frame"]] * T)
  assert section["inference_check"]["same_exit_step"] == 1.0
  curve = json.loads(open(section["files"]["json"]).read())
  assert curve["criterion"] == exit_rule.MAX_LOGIT
  assert len(curve["points"]) == 3
  # Budgets from one frame's cost to the whole video's (what the videos
  # then cost, "gflops", depends on the trained weights' confidences).
  assert curve["points"][0]["budget_gflops"] == pytest.approx(
      cost["per_frame"] / flops.G)
  assert curve["points"][-1]["budget_gflops"] == pytest.approx(
      cost["gflops_per_video"])
  with Image.open(section["files"]["png"]) as png:
    assert png.size == (720, 480)
  assert "Thresholds (max_logit)" in open(section["files"]["md"]).read()


def test_predict_command_on_a_v2_video(v2):
  code, stdout, stderr = _finished(v2, "predict")
  assert code == 0, stderr[-3000:]
  doc = json.loads(stdout)
  assert doc["patches"] == "policy"
  (result,) = doc["results"]
  assert result["num_steps"] == T and len(result["step_top1"]) == T
  offsets = np.array(result["offsets"])
  assert offsets.shape == (T, 2)
  assert np.any(np.abs(offsets - np.round(offsets)) > 1e-3)
  # The same sub-pixel patches as the model on the clip's frames.
  pred = predict_lib.Predictor(v2.predict_run, backend="tf")
  clip = pred.read(v2.clip)
  out = pred.recognizer({"frames": tf.constant(clip.inputs["frames"][None]),
                         "seed": tf.zeros([1, 2], tf.int64)})
  np.testing.assert_allclose(offsets, out.offsets[0], atol=OFFSET_ATOL)
  # Boxes keep the sub-pixel position: the network's 32 pixels are the
  # centre crop of the 48-pixel-high frame (scale 48 / 32), offset 8 in x.
  s = v2.cfg.data.frame_size
  scale = 48 / s
  np.testing.assert_allclose(
      np.array(result["boxes"])[:, :2],
      np.stack([8 + offsets[:, 1] * scale, offsets[:, 0] * scale], 1),
      atol=2e-3)
  # The pictures round them: the outline's top edge sits on the rounded
  # box in the stored frame.
  sheet = np.asarray(Image.open(result["visualization"]["png"]).convert(
      "RGB")).astype(int)
  tile = visualize.tile_size(clip.stored_size, 160)
  prediction = pred.predict(clip)
  for t, box in enumerate(prediction.stored_boxes):
    plain = np.asarray(clip.stored_image(t).resize(
        tile, Image.Resampling.BILINEAR)).astype(int)
    ox, oy = visualize.tile_origin(t, tile, 4)
    x0, y0, x1, _ = visualize.scale_box(box, clip.stored_size, tile)
    x, y = (round(x0) + round(x1)) // 2, round(y0)
    assert np.abs(sheet[oy + y, ox + x] - plain[y, x]).max() > 60, t


def test_profile_parts_and_auto_patches(v2, recognizer, batch):
  assert trained_run.TrainedRun(v2.run).resolve_patches("auto") == "policy"
  parts = inference_parts.inference_parts(recognizer, "policy")
  assert [name for name, _ in parts] == ["glance", "policy", "head"]
  timings = {}
  x = inference_parts.run_parts(parts, batch, timings=timings)
  out = recognizer(batch, "policy")
  np.testing.assert_allclose(x["probs"], out.probs, atol=PROB_ATOL)
  np.testing.assert_allclose(x["offsets"], out.offsets, atol=OFFSET_ATOL)
  assert sorted(timings) == ["glance", "head", "policy"]


def test_predict_early_exit_on_a_v2_video(tmp_path):
  cfg, run = helpers.copy_of_tiny_v2_run(tmp_path / "run")
  clip_path = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 20,
                                         width=64, height=48)
  rec = trained_run.TrainedRun(run).recognizer()
  cost = flops.video_macs(cfg)
  step_macs = rec.exit_step_macs(cost, "policy")

  def predictor(thresholds):
    threshold_file.save(run, thresholds, np.full(T, 1 / T), step_macs, None,
                        0.0, final_weights.resolve(run),
                        criterion=exit_rule.MAX_LOGIT)
    pred = predict_lib.Predictor(run, early_exit=True, backend="tf")
    assert pred.warnings == []
    return pred

  # Nobody leaves before step k (in reading order); everybody at k.
  k = 2
  forced = exit_rule.never(T, exit_rule.MAX_LOGIT)
  forced[k:] = exit_rule.ALWAYS_LOGIT
  pred = predictor(forced)
  clip = pred.read(clip_path)
  batch = {"frames": tf.constant(clip.inputs["frames"][None]),
           "seed": tf.zeros([1, 2], tf.int64)}
  out = rec(batch)
  result = pred.predict(clip, top_k=helpers.NUM_CLASSES)
  assert (result.exit_step, result.num_steps, result.early_exit) == (
      k, T, True)
  # k + 1 frames' cost.
  assert result.gflops == pytest.approx((k + 1) * cost["per_frame"] / flops.G)
  got = np.zeros(helpers.NUM_CLASSES)
  for c, _, p in result.top_k:
    got[c] = p
  np.testing.assert_allclose(got, out.probs[0, k], atol=PROB_ATOL)
  # The early-exit runner, stepping frame by frame, stops there with the
  # same prediction.
  stepped = runner_lib.EarlyExitRunner(rec, cost).predict(batch, forced)
  np.testing.assert_array_equal(stepped.exit_steps, [k])
  np.testing.assert_allclose(stepped.probs[0], got, atol=PROB_ATOL)
  # The thresholds compare the steps' largest raw logits: the clip's own at
  # step 1 lets it go there.
  _, conf, _ = pred.exit_outputs({"frames": clip.inputs["frames"][None]},
                                 [clip.path])
  np.testing.assert_allclose(conf[0], tf.reduce_max(out.logits[0], -1),
                             atol=LOGIT_ATOL)
  at_one = exit_rule.never(T, exit_rule.MAX_LOGIT)
  at_one[1] = conf[0, 1]
  assert predictor(at_one).predict(clip).exit_step == 1

"""Everything downstream of a trained Uni-AdaFocus run (issue 26).

The results table (learned, random and uniform frames and regions, glance
only) and ``adafocus-evaluate``, ``adafocus-predict`` on an encoded video
and a frame folder (the candidates sampled, the frames and deformable
regions chosen, the pictures), early exit (``Predictor`` forced to a step,
its cost the steps run; calibration on the K + 1 exits with the official
sweep of ratios; evaluation step by step), the TFLite backends and
inference profiling, on one TINY Uni run trained once per process
(``helpers.copy_of_tiny_v2_run`` with ``tiny_uni_config``: 8 candidates,
the glance on 4, 4 focus frames, regions of 6 to 12 pixels around P = 8);
each tool gets its own copy. The command lines (evaluate, predict,
profile) run in subprocesses while the in-process tests go on.
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
from adafocus_tf.evaluation import evaluate
from adafocus_tf.evaluation import predictions
from adafocus_tf.evaluation import results_table
from adafocus_tf.inference import clips
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import visualize
from adafocus_tf.inference.early_exit import calibrate
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import inference_parts
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.training

N = helpers.TINY["data.num_frames"]          # candidates
G = helpers.TINY_UNI["uni.glance_frames"]
K = helpers.TINY_UNI["uni.focus_frames"]
E = K + 1                                    # exit steps
S = helpers.TINY["data.frame_size"]
# The clip: 20 frames of 64 x 48; the network's 32 pixels are the centre
# crop of its 48-pixel height (scale 48 / 32), 8 pixels in from the left.
CLIP_FRAMES, WIDTH, HEIGHT = 20, 64, 48
SCALE, LEFT = HEIGHT / S, (WIDTH - HEIGHT) / 2
PROB_ATOL = 1e-5
PLAN_ATOL = 1e-4


def copy_of_tiny_uni_run(dest):
  """A fresh copy of the TINY Uni run, trained once per process."""
  return helpers.copy_of_tiny_v2_run(dest,
                                     make_config=helpers.tiny_uni_config)


@pytest.fixture(scope="module")
def uni(tmp_path_factory):
  """The run, a video and a frame folder, and the evaluate and predict
  command lines started."""
  root = tmp_path_factory.mktemp("uni")
  cfg, run = copy_of_tiny_uni_run(root / "run")
  _, eval_run = copy_of_tiny_uni_run(root / "eval_run")
  _, predict_run = copy_of_tiny_uni_run(root / "predict_run")
  clip = video_fixtures.write_video(str(root / "clip.mp4"), CLIP_FRAMES,
                                    width=WIDTH, height=HEIGHT)
  folder = video_fixtures.write_frame_folder(str(root / "folder"), 13,
                                             width=WIDTH, height=HEIGHT)
  pictures = str(root / "pictures")
  procs = {
      "evaluate": helpers.start_launch(
          "evaluate.py", [f"--run={eval_run}", "--progress=false"]),
      "predict": helpers.start_launch(
          "predict.py", [f"--run={predict_run}", "--json", "--backend=tf",
                         f"--visualize={pictures}", clip, folder]),
      "profile": helpers.start_launch(
          "profile.py", [f"--run={eval_run}", "--batch_size=4", "--steps=1",
                         "--warmup=1", f"--logdir={root / 'profile'}"]),
  }
  return types.SimpleNamespace(cfg=cfg, run=run, eval_run=eval_run,
                               predict_run=predict_run, clip=clip,
                               folder=folder, pictures=pictures, procs=procs,
                               done={})


def _finished(uni, name):
  """(return code, stdout, stderr) of a command line the fixture started."""
  if name not in uni.done:
    stdout, stderr = uni.procs[name].communicate(timeout=600)
    uni.done[name] = (uni.procs[name].returncode, stdout, stderr)
  return uni.done[name]


@pytest.fixture(scope="module")
def recognizer(uni):
  return trained_run.TrainedRun(uni.run).recognizer()


@pytest.fixture(scope="module")
def batch(uni):
  return next(iter(helpers.eval_dataset(uni.cfg)))


@pytest.fixture(scope="module")
def results(uni):
  return results_table.results_table(uni.run, progress=False)


def test_results_table_rows_say_frames_and_regions(uni, recognizer, results):
  rows = results["rows"]
  assert list(rows) == ["policy", "random", "centre", "oracle",
                        predictions.GLANCE_ONLY]
  assert results["labels"] == {
      "policy": "learned frames and regions",
      "random": "random frames and regions",
      "centre": "uniform frames, centre region",
      "oracle": "uniform frames, region on the object box",
      predictions.GLANCE_ONLY: "glance frames only (exit step 0)"}
  cost = flops.video_macs(uni.cfg)
  per_video = cost["per_video"]
  assert rows["policy"]["gflops_per_video"] == pytest.approx(
      per_video["total"] / flops.G)
  for choice in ("random", "centre", "oracle"):
    # No policy runs: the frames and regions are drawn or fixed.
    assert rows[choice]["gflops_per_video"] == pytest.approx(
        (per_video["total"] - per_video["policy"]) / flops.G)
  # Glance only is exit step 0: the G glance frames and the classifier's
  # glance steps, neither policy, no focus frame.
  step_macs = recognizer.exit_step_macs(cost, "policy")
  assert rows[predictions.GLANCE_ONLY]["gflops_per_video"] == pytest.approx(
      step_macs[0] / flops.G)
  assert step_macs[0] > per_video["glance"]
  # Every step: the G + K classifier steps.
  assert len(rows["policy"]["mAP_per_step"]) == G + K
  metrics = json.loads(open(os.path.join(uni.run, run_dir.METRICS)).read())
  assert metrics["results"]["rows"] == rows
  table = results_table.format_table(results)
  header, policy_line = table.splitlines()[:2]
  assert header.endswith("frames and regions")
  assert policy_line.startswith("policy") and policy_line.endswith(
      "learned frames and regions")
  assert "policy: " in table


def test_evaluate_command_on_a_uni_run(uni, results):
  code, stdout, stderr = _finished(uni, "evaluate")
  assert code == 0, stderr[-3000:]
  metrics = json.loads(open(os.path.join(uni.eval_run,
                                         run_dir.METRICS)).read())
  (key,) = metrics["evaluation"]
  assert key.endswith("/policy")
  row = metrics["evaluation"][key]
  assert row["plan"] == "learned frames and regions"
  assert "learned frames and regions" in stdout
  policy = results["rows"]["policy"]
  for k in ("top1", "top5", "mAP", "gflops_per_video"):
    assert row[k] == pytest.approx(policy[k]), k


def _check_prediction(uni, result, path, num_stored, recognizer):
  """A video's or a folder's JSON result against the model on its frames."""
  cfg = uni.cfg
  assert result["num_frames"] == num_stored
  # The N candidates: evaluation's TSN sampling of the stored frames.
  sampled = clips.sampled_indices(num_stored, cfg)["frames"]
  assert result["sampled_frames"] == sampled.tolist()
  # The glance reads G of them (the second of each group of N / G).
  glance = recognizer.model.glance_indices(1)[0].numpy()
  assert len(glance) == G
  assert result["glance_frames"] == sampled[glance].tolist()
  assert (result["num_steps"], len(result["step_top1"])) == (E, E)
  plan = np.array(result["offsets"])
  assert plan.shape == (K, focus_plan.PLAN_DIMS)
  # K distinct candidates, increasing, and the frames they are.
  positions = plan[:, 0].astype(int)
  assert result["patch_positions"] == positions.tolist()
  assert np.all(np.diff(positions) > 0)
  assert result["patch_frames"] == sampled[positions].tolist()
  # The regions are the plan's, at their own sizes (not P).
  regions = np.array(result["regions"])
  np.testing.assert_array_equal(regions, plan[:, 1:])
  lo, hi = cfg.uni.min_region, cfg.uni.max_region
  assert np.all((regions[:, 2:] >= lo - 1e-4) & (regions[:, 2:] <= hi + 1e-4))
  # The model on the input's frames chooses the same plan.
  pred = predict_lib.Predictor(uni.predict_run, backend="tf")
  clip = pred.read(path)
  out = pred.recognizer({"frames": tf.constant(clip.inputs["frames"][None]),
                         "seed": tf.zeros([1, 2], tf.int64)})
  np.testing.assert_allclose(plan, out.offsets[0], atol=PLAN_ATOL)
  # Boxes in original pixels: the network's view is the centre crop.
  boxes = np.array(result["boxes"])
  y, x, h, w = regions.T
  np.testing.assert_allclose(
      boxes, np.stack([LEFT + x * SCALE, y * SCALE, LEFT + (x + w) * SCALE,
                       (y + h) * SCALE], 1), atol=2e-3)
  assert result["patch_steps"] == list(range(1, K + 1))
  assert result["patches_read"] == [True] * K
  assert result["plan"] == "learned frames and regions"
  return pred, clip


def _red(pixel) -> bool:
  return pixel[0] > 200 and pixel[1] < 90 and pixel[2] < 90


def test_predict_command_on_a_uni_video_and_folder(uni, recognizer):
  code, stdout, stderr = _finished(uni, "predict")
  assert code == 0, stderr[-3000:]
  doc = json.loads(stdout)
  assert doc["patches"] == "policy" and doc["backend"] == "tf"
  assert doc["gflops_per_video"] == pytest.approx(
      flops.video_macs(uni.cfg)["gflops_per_video"])
  video, folder = doc["results"]
  assert (video["kind"], folder["kind"]) == ("video", "frames")
  assert video["exit_step"] == E - 1 and not video["early_exit"]
  _check_prediction(uni, folder, uni.folder, 13, recognizer)
  pred, clip = _check_prediction(uni, video, uni.clip, CLIP_FRAMES,
                                 recognizer)
  # The GIF shows the K chosen frames; the sheet K tiles under a timeline.
  with Image.open(video["visualization"]["gif"]) as gif:
    assert gif.n_frames == K
    tile = visualize.tile_size(clip.stored_size, 240)
    for t, k in enumerate(video["patch_frames"]):
      gif.seek(t)
      picture = np.asarray(gif.convert("RGB")).astype(int)
      # Its frame's colour, away from the outlines (frame_colour(k)).
      np.testing.assert_allclose(picture[tile[1] - 4, 3],
                                 video_fixtures.frame_colour(k), atol=12)
  sheet = np.asarray(Image.open(video["visualization"]["png"]).convert(
      "RGB")).astype(int)
  prediction = pred.predict(clip)
  tile = visualize.tile_size(clip.stored_size, 160)
  assert sheet.shape[0] == (visualize.TITLE_HEIGHT + visualize.TIMELINE_HEIGHT
                            + visualize.MARGIN
                            + tile[1] + visualize.CAPTION_HEIGHT
                            + visualize.MARGIN)
  for t, box in enumerate(prediction.stored_boxes):
    ox, oy = visualize.tile_origin(t, tile, 4, timeline=True)
    x0, y0, x1, y1 = visualize.scale_box(box, clip.stored_size, tile)
    # The red outline spans the region's own size: its corners.
    assert _red(sheet[oy + round(y0) + 1, ox + round(x0) + 1]), t
    assert _red(sheet[oy + round(y1) - 2, ox + round(x1) - 2]), t
    # Inside the outline, the frame.
    inside = sheet[oy + (round(y0) + round(y1)) // 2,
                   ox + (round(x0) + round(x1)) // 2]
    assert not _red(inside), t
  # The timeline marks the chosen frames in red.
  width = sheet.shape[1]
  mid = visualize.TITLE_HEIGHT + 2 + (visualize.TIMELINE_HEIGHT - 5) // 2
  for k in video["patch_frames"]:
    x = visualize.timeline_x(k, CLIP_FRAMES, width)
    assert _red(sheet[mid - 3, x]), k


def test_predict_early_exit_runs_and_costs_the_steps(uni, tmp_path):
  cfg, run = copy_of_tiny_uni_run(tmp_path / "run")
  clip_path = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 16)
  rec = trained_run.TrainedRun(run).recognizer()
  cost = flops.video_macs(cfg)
  step_macs = rec.exit_step_macs(cost, "policy")
  # Step 1 runs both policies and the first focus frame; step 0 neither.
  assert step_macs[1] - step_macs[2] == pytest.approx(
      cost["per_video"]["policy"])

  threshold_file.save(run, exit_rule.never(E, exit_rule.MAX_LOGIT),
                      np.full(E, 1 / E), step_macs, None, 0.0,
                      final_weights.resolve(run),
                      criterion=exit_rule.MAX_LOGIT)
  pred = predict_lib.Predictor(run, early_exit=True, backend="tf")
  assert pred.warnings == []
  np.testing.assert_array_equal(pred.thresholds,
                                exit_rule.never(E, exit_rule.MAX_LOGIT))

  def predictor(thresholds):
    # The run's thresholds, as the file would give them.
    pred.thresholds = np.asarray(thresholds, np.float32)
    return pred

  clip = pred.read(clip_path)
  batch = {"frames": tf.constant(clip.inputs["frames"][None]),
           "seed": tf.zeros([1, 2], tf.int64)}
  out = rec(batch)
  exit_probs = rec.exit_probs(out).numpy()[0]
  runner = runner_lib.EarlyExitRunner(rec, cost)
  for k in range(E):
    forced = exit_rule.never(E, exit_rule.MAX_LOGIT)
    forced[k:] = exit_rule.ALWAYS_LOGIT
    result = predictor(forced).predict(clip, top_k=helpers.NUM_CLASSES)
    assert (result.exit_step, result.num_steps, result.early_exit) == (
        k, E, True)
    # The cost of the steps run: the glance alone at step 0, then the
    # policies and one focus frame per step.
    assert result.gflops == pytest.approx(step_macs[:k + 1].sum() / flops.G)
    got = np.zeros(helpers.NUM_CLASSES)
    for c, _, p in result.top_k:
      got[c] = p
    np.testing.assert_allclose(got, exit_probs[k], atol=PROB_ATOL)
    # The focus frames read by then.
    assert result.patches_read == [s <= k for s in range(1, K + 1)]
    # Stepping computes only those: the same exit, prediction and cost,
    # the plan's unread frames left empty.
    stepped = runner.predict(batch, forced)
    assert stepped.exit_steps.tolist() == [k]
    np.testing.assert_allclose(stepped.probs[0], got, atol=PROB_ATOL)
    assert stepped.macs[0] / flops.G == pytest.approx(result.gflops)
    assert stepped.step_videos.tolist() == [1] * (k + 1) + [0] * (E - k - 1)
    read = np.array(result.patches_read)
    assert np.isnan(stepped.offsets[0, ~read]).all()
    np.testing.assert_allclose(stepped.offsets[0, read],
                               out.offsets.numpy()[0, read], atol=PLAN_ATOL)
  # The thresholds compare raw logits: the clip's own at step 1 lets it go
  # there.
  _, conf, _ = pred.exit_outputs({"frames": clip.inputs["frames"][None]},
                                 [clip.path])
  np.testing.assert_allclose(
      conf[0], tf.reduce_max(rec.exit_logits(out)[0], -1), atol=1e-4)
  at_one = exit_rule.never(E, exit_rule.MAX_LOGIT)
  at_one[1] = conf[0, 1]
  assert predictor(at_one).predict(clip).exit_step == 1


def test_calibrate_and_evaluate_with_early_exit(uni, tmp_path):
  cfg, run = copy_of_tiny_uni_run(tmp_path / "run")
  section = calibrate.calibrate(run, profile="geometric:0.5", progress=False)
  record = threshold_file.load(run)
  assert record["criterion"] == exit_rule.MAX_LOGIT
  assert len(record["thresholds"]) == E
  rec = trained_run.TrainedRun(run).recognizer()
  cost = flops.video_macs(cfg)
  step_macs = rec.exit_step_macs(cost, "policy")
  np.testing.assert_allclose(record["exit_step_macs"], step_macs)
  # Fitted on training-transform raw logits of the K + 1 exits.
  train = predictions.predict_split(
      rec, pipeline.split_dir(cfg.data, cfg.data.train_split), "policy",
      progress=False, training_transform=True)
  assert train["exit_confidences"].shape == (16, E)
  np.testing.assert_array_equal(
      record["thresholds"], threshold_fit.fit_top_thresholds(
          train["exit_confidences"], exit_cost.geometric_profile(0.5, E)))
  # The curve: the official sweep q = 0.05, ..., 0.95, each point's budget
  # its profile's expected cost.
  curve = json.loads(open(section["files"]["json"]).read())
  assert curve["sweep"] == "ratios"
  ratios = [p["ratio"] for p in curve["points"]]
  np.testing.assert_allclose(ratios, np.arange(1, 20) * 0.05)
  for p in curve["points"]:
    assert p["budget_gflops"] == pytest.approx(exit_cost.expected_gflops(
        exit_cost.geometric_profile(p["ratio"], E), step_macs))
    assert sum(p["exits"]) == 16 and len(p["thresholds"]) == E
  with Image.open(section["files"]["png"]) as png:
    assert png.size == (720, 480)
  assert "learned frames and regions" in open(section["files"]["md"]).read()
  # The step-by-step check: each video costs the steps it ran.
  check = section["inference_check"]
  cum = np.cumsum(step_macs) / flops.G
  np.testing.assert_allclose(check["video_gflops"],
                             cum[np.array(check["exit_steps"])])
  assert check["gflops"] == pytest.approx(np.mean(check["video_gflops"]))
  # Evaluation with early exit: each video stops at its step, the cost the
  # mean of what each ran.
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  row, pred = evaluate.evaluate_early_exit(run, split_dir, progress=False)
  np.testing.assert_allclose(pred["gflops"], cum[pred["exit_steps"]])
  assert row["gflops_per_video"] == pytest.approx(np.mean(pred["gflops"]))
  assert row["gflops_full"] == pytest.approx(cum[-1])
  assert row["exits"] == np.bincount(pred["exit_steps"],
                                     minlength=E).tolist()
  assert row["step_videos"][0] == row["num_videos"] == 16
  assert row["step_videos"] == [int((pred["exit_steps"] >= e).sum())
                                for e in range(E)]
  # The same exits and predictions as the thresholds on whole clips.
  whole = predictions.predict_split(rec, split_dir, "policy", progress=False)
  want = exit_rule.exit_steps_from_confidences(whole["exit_confidences"],
                                               record["thresholds"])
  assert np.mean(want == pred["exit_steps"]) >= 0.9
  same = want == pred["exit_steps"]
  np.testing.assert_allclose(
      pred["probs"][same],
      exit_rule.exit_predictions(whole["exit_probs"], want)[same],
      atol=PROB_ATOL)
  if same.all():
    assert row["top1"] == pytest.approx(threshold_fit.summarize(
        whole["exit_probs"], whole["labels"], record["thresholds"],
        step_macs, whole["exit_confidences"])["top1"])
  # The command line writes it beside the plain evaluation.
  proc = helpers.start_launch("evaluate.py", [f"--run={run}", "--early_exit",
                                              "--progress=false"])
  stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-3000:]
  metrics = json.loads(open(os.path.join(run, run_dir.METRICS)).read())
  written = metrics["evaluation"]["val/policy" + evaluate.EARLY_EXIT]
  assert written["gflops_per_video"] == pytest.approx(row["gflops_per_video"])
  assert "GFLOPs per video run" in stdout


def test_hybrid_backend_and_profile_parts(uni, recognizer, batch):
  # The whole TFLite model is refused (sub-pixel regions): auto runs the
  # glance in TFLite and the rest in TensorFlow, with the same outputs.
  with pytest.raises(ValueError, match="sub-pixel"):
    predict_lib.Predictor(uni.run, backend="tflite")
  auto = predict_lib.Predictor(uni.run)
  assert auto.backend == "hybrid" and "sub-pixel" in auto.backend_note
  kernels = predict_lib.Predictor(uni.run, backend="tf")
  frames = batch["frames"].numpy()[:3]
  names = [f"v{i}" for i in range(3)]
  for got, want in zip(auto.exit_outputs(frames, names),
                       kernels.exit_outputs(frames, names)):
    np.testing.assert_allclose(got, want, atol=1e-4)
  # Profiling: the recognizer's stages, the policy stage choosing the plan.
  parts = inference_parts.inference_parts(recognizer, "policy")
  assert [name for name, _ in parts] == ["glance", "policy", "head"]
  timings = {}
  x = inference_parts.run_parts(parts, batch, timings=timings)
  out = recognizer(batch, "policy")
  np.testing.assert_allclose(x["probs"], out.probs, atol=PROB_ATOL)
  np.testing.assert_allclose(x["offsets"], out.offsets, atol=PLAN_ATOL)
  assert x["offsets"].shape[1:] == (K, focus_plan.PLAN_DIMS)
  assert sorted(timings) == ["glance", "head", "policy"]
  # The command line profiles the same parts.
  code, stdout, stderr = _finished(uni, "profile")
  assert code == 0, stderr[-3000:]
  assert "(learned frames and regions)" in stdout
  for part in ("glance", "policy", "head", "total"):
    assert any(line.startswith(part) for line in stdout.splitlines()), part
  assert ".xplane.pb" in stdout

"""Everything downstream of a trained V2-TSM run (issue 14).

V2-TSM (docs/METHOD.md V2-6): two frame streams, one real-valued patch per
video, the prediction the glance and focus heads' logit means. Its exit
steps are the two-stream model's (docs/EARLY_EXIT.md): step 0 the glance
alone (its auxiliary head, the ``glance_only`` row), step 1 the full
prediction; thresholds compare probabilities. Covered: the results table
and its costs, early exit (stepping, calibration, ``Predictor`` forced to
each step), ``adafocus-predict`` on an encoded video, and the SavedModel
reloaded by ``saved_model_cli`` in a process that cannot import this
package. One TINY V2-TSM run is trained per module; every tool that writes
into a run gets its own copy. The two command lines run in subprocesses
while the in-process tests go on.
"""
import json
import os
import shutil
import subprocess
import sys
import types

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf import serving
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import predictions
from adafocus_tf.evaluation import results_table
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference.early_exit import calibrate
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.inference.early_exit import threshold_fit
from adafocus_tf.models import patches
from adafocus_tf.profiling import flops
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess

pytestmark = pytest.mark.training

TG = helpers.TWO_STREAM["data.glance_frames"]
TF = helpers.TWO_STREAM["data.focus_frames"]
E = 2  # exit steps: the glance alone, then glance and focus
PROB_ATOL = 1e-5
# The command line's default backend may run the glance as a TFLite model
# (float32, within 1e-4 of TensorFlow's kernels).
CLI_ATOL = 1e-4
# Videos of the SavedModel request, and frames each (the graph samples
# both streams from them).
EXPORT_VIDEOS, EXPORT_FRAMES = 4, 12


def _copy(tsm, dest):
  """A run directory of its own, with the trained run's weights."""
  shutil.copytree(tsm.run, str(dest))
  return str(dest)


@pytest.fixture(scope="module")
def tsm(tmp_path_factory):
  """The run, a video, the export; predict and saved_model_cli started."""
  root = tmp_path_factory.mktemp("v2_tsm")
  cfg, run = helpers.train_tiny_v2_tsm_run(root / "trained")
  tsm = types.SimpleNamespace(cfg=cfg, run=run, root=root)
  tsm.clip = video_fixtures.write_video(str(root / "clip.mp4"), 20, width=64,
                                        height=48)
  predict_run = _copy(tsm, root / "predict_run")
  tsm.predict = subprocess.Popen(
      [sys.executable, os.path.join(helpers.REPO, "launch", "predict.py"),
       f"--run={predict_run}", "--json", tsm.clip],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # The export exits on probabilities: at step 0 for the videos whose
  # glance is at least as confident as the median one.
  rng = np.random.default_rng(0)
  tsm.frames = rng.integers(0, 256, (EXPORT_VIDEOS, EXPORT_FRAMES, 40, 56, 3),
                            dtype=np.uint8)
  tsm.recognizer = rec = trained_run.TrainedRun(run).recognizer()
  inputs = preprocess.preprocess_frames(tf.constant(tsm.frames), cfg)
  tsm.export_out = rec({**inputs, "seed": tf.zeros([EXPORT_VIDEOS, 2],
                                                   tf.int64)})
  glance_conf = tf.reduce_max(rec.exit_probs(tsm.export_out)[:, 0],
                              -1).numpy()
  tsm.export_thresholds = np.array([np.median(glance_conf), 0.0], np.float32)
  tsm.export_dir = str(root / "exports" / "adafocus" / "1")
  tsm.export_meta = export.export_run(run, tsm.export_dir,
                                      thresholds=tsm.export_thresholds)
  frames_npy = str(root / "frames.npy")
  np.save(frames_npy, tsm.frames)
  tsm.export_outdir = str(root / "served")
  tsm.serve = helpers.start_saved_model_cli(
      tsm.export_dir, serving.SERVING_DEFAULT, {"frames": frames_npy},
      tsm.export_outdir)
  return tsm


def _finished(proc):
  """(return code, stdout, stderr) of a subprocess the fixture started."""
  stdout, stderr = proc.communicate(timeout=600)
  return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def recognizer(tsm):
  return tsm.recognizer


@pytest.fixture(scope="module")
def batch(tsm):
  ds = helpers.eval_dataset(tsm.cfg)
  return next(iter(ds))


def _clip_batch(clip):
  """The pipeline batch of one clip read by ``Predictor.read``."""
  return {**{k: tf.constant(v[None]) for k, v in clip.inputs.items()},
          "seed": tf.zeros([1, 2], tf.int64)}


def test_results_table_rows_and_costs(tsm, recognizer):
  results = results_table.results_table(tsm.run, progress=False)
  rows = results["rows"]
  # The model's own policy, stage 1 its final model: no @stage1 rows.
  assert list(rows) == ["policy", "random", "centre", "oracle",
                        predictions.GLANCE_ONLY]
  # V2-TSM's MACs by hand: Tg glance frames and Tf patches with their
  # linear heads, and the policy once per video.
  cost = flops.video_macs(tsm.cfg)
  per_video = cost["per_video"]
  assert cost["runs"] == {"glance": TG, "policy": 1, "focus": TF,
                          "classifier": 1}
  assert per_video["classifier"] == (TG * cost["glance_head"]
                                     + TF * cost["focus_head"])
  assert per_video["total"] == (TG * cost["glance"] + cost["policy"]
                                + TF * cost["focus"] + per_video["classifier"])
  g = flops.G
  assert rows["policy"]["gflops_per_video"] == pytest.approx(
      per_video["total"] / g)
  for choice in ("random", "centre", "oracle"):
    assert rows[choice]["gflops_per_video"] == pytest.approx(
        (per_video["total"] - cost["policy"]) / g)
  assert rows[predictions.GLANCE_ONLY]["gflops_per_video"] == pytest.approx(
      TG * (cost["glance"] + cost["glance_head"]) / g)
  # The policy and glance-only rows' top-1, from the recognizer by hand.
  ds = helpers.eval_dataset(tsm.cfg)
  hits = {"policy": [], predictions.GLANCE_ONLY: []}
  for b in ds:
    out = recognizer(b)
    hits["policy"].append(np.argmax(out.probs[:, -1], -1) == b["label"])
    # The glance-only prediction is the auxiliary head's, step 0's.
    hits[predictions.GLANCE_ONLY].append(
        np.argmax(out.glance_probs[:, -1], -1) == b["label"])
  for name, hit in hits.items():
    assert rows[name]["top1"] == pytest.approx(
        100 * np.mean(np.concatenate(hit))), name
  assert results["num_videos"] == 16
  metrics = json.loads(open(os.path.join(tsm.run, run_dir.METRICS)).read())
  assert metrics["results"]["rows"] == rows
  assert metrics["gflops"]["per_video"] == per_video


def test_exit_steps_are_the_glance_then_the_focus(recognizer, batch):
  rec = recognizer
  n = int(batch["glance_frames"].shape[0])
  out = rec(batch)
  assert rec.num_exit_steps == E
  exit_probs = rec.exit_probs(out).numpy()
  # Step 0 is the glance alone: its auxiliary head, as the glance-only row.
  np.testing.assert_allclose(exit_probs[:, 0], out.glance_probs[:, 0],
                             atol=PROB_ATOL)
  np.testing.assert_allclose(exit_probs[:, 1], out.probs[:, 0],
                             atol=PROB_ATOL)
  # One real-valued position per video.
  assert out.offsets.dtype == tf.float32 and out.offsets.shape == (n, 1, 2)
  assert np.any(np.abs(out.offsets - np.round(out.offsets)) > 1e-3)
  # The patch is chosen at step 0, from the glance (steps equal whole clips:
  # the families' interface test, tests/families/test_family_interface.py).
  state = rec.initial_state(n)
  for e in range(E):
    _, offsets, state = rec.step(rec.step_inputs(batch, e), state, e)
    assert offsets.shape[1] == (1 if e == 0 else 0)


def test_calibrated_thresholds_let_videos_exit_after_the_glance(
    tsm, recognizer, batch, tmp_path):
  run = _copy(tsm, tmp_path / "run")
  section = calibrate.calibrate(run, profile="geometric:0.5", num_points=3,
                                progress=False)
  record = threshold_file.load(run)
  # Probabilities, fitted on the training split (evaluation transform).
  assert record["criterion"] == exit_rule.MAX_PROB
  train = predictions.predict_split(
      recognizer, pipeline.split_dir(tsm.cfg.data, tsm.cfg.data.train_split),
      "policy", progress=False)
  profile = exit_cost.geometric_profile(0.5, E)
  np.testing.assert_allclose(profile, [2 / 3, 1 / 3])
  thresholds = np.asarray(record["thresholds"], np.float32)
  np.testing.assert_array_equal(
      thresholds, threshold_fit.fit_thresholds(train["exit_confidences"],
                                               profile))
  cost = flops.video_macs(tsm.cfg)
  np.testing.assert_allclose(record["exit_step_macs"],
                             recognizer.exit_step_macs(cost, "policy"))
  assert section["inference_check"]["same_exit_step"] == 1.0
  # On held-out videos: the runner stops where whole-clip confidences say,
  # and some videos leave after the glance, costing step 0 only.
  out = recognizer(batch)
  exit_probs = recognizer.exit_probs(out).numpy()
  want = exit_rule.exit_steps(exit_probs, thresholds)
  assert (want == 0).any()
  runner = runner_lib.EarlyExitRunner(recognizer, cost)
  got = runner.predict(batch, thresholds)
  np.testing.assert_array_equal(got.exit_steps, want)
  np.testing.assert_allclose(
      got.probs, exit_probs[np.arange(len(want)), want], atol=PROB_ATOL)
  np.testing.assert_array_equal(got.step_videos,
                                [len(want), int((want == 1).sum())])
  np.testing.assert_allclose(got.macs, np.cumsum(runner.step_macs)[want])


def test_predict_early_exit_reports_the_forced_step(tsm, recognizer,
                                                    tmp_path):
  run = _copy(tsm, tmp_path / "run")
  cost = flops.video_macs(tsm.cfg)
  step_macs = recognizer.exit_step_macs(cost, "policy")
  out = exit_probs = None
  for k in range(E):
    # Nobody leaves before step k; everybody at k.
    forced = np.concatenate([exit_rule.never(E)[:k], np.zeros(E - k)])
    threshold_file.save(run, forced, np.eye(E)[k], step_macs, None, 0.0,
                        final_weights.resolve(run))
    pred = predict_lib.Predictor(run, early_exit=True, backend="tf")
    assert pred.warnings == []
    clip = pred.read(tsm.clip)
    if out is None:
      out = recognizer(_clip_batch(clip))
      exit_probs = recognizer.exit_probs(out).numpy()[0]
    result = pred.predict(clip, top_k=helpers.NUM_CLASSES)
    assert (result.exit_step, result.num_steps, result.early_exit) == (
        k, E, True)
    assert result.gflops == pytest.approx(step_macs[:k + 1].sum() / flops.G)
    got = np.zeros(helpers.NUM_CLASSES)
    for c, _, p in result.top_k:
      got[c] = p
    np.testing.assert_allclose(got, exit_probs[k], atol=PROB_ATOL)
    assert result.step_top1 == np.argmax(exit_probs, -1).tolist()
    # The early-exit runner, stepping the clip, stops there with the same
    # prediction.
    stepped = runner_lib.EarlyExitRunner(recognizer, cost).predict(
        _clip_batch(clip), forced)
    np.testing.assert_array_equal(stepped.exit_steps, [k])
    np.testing.assert_allclose(stepped.probs[0], got, atol=PROB_ATOL)
  # Step 0's prediction is the glance's auxiliary head, step 1's the full.
  np.testing.assert_allclose(exit_probs[0], out.glance_probs[0, 0],
                             atol=PROB_ATOL)
  np.testing.assert_allclose(exit_probs[1], out.probs[0, 0], atol=PROB_ATOL)


def test_predict_command_on_a_v2_tsm_video(tsm, recognizer):
  code, stdout, stderr = _finished(tsm.predict)
  assert code == 0, stderr[-3000:]
  doc = json.loads(stdout)
  assert doc["patches"] == "policy" and doc["warnings"] == []
  assert doc["gflops_per_video"] == pytest.approx(
      flops.video_macs(tsm.cfg)["gflops_per_video"])
  (result,) = doc["results"]
  assert (result["exit_step"], result["num_steps"]) == (E - 1, E)
  # TSN centre frames of the 20-frame clip, for each stream.
  assert result["glance_frames"] == [2, 7, 12, 17]
  assert result["sampled_frames"] == [1, 5, 8, 11, 15, 18]
  # One sub-pixel patch, cut from every focus frame.
  offsets = np.array(result["offsets"])
  assert offsets.shape == (TF, 2)
  np.testing.assert_array_equal(offsets, offsets[:1].repeat(TF, 0))
  assert np.any(np.abs(offsets - np.round(offsets)) > 1e-3)
  # The recognizer on the same frames gives the same patch and prediction.
  pred = predict_lib.Predictor(tsm.run, backend="tf")
  out = recognizer(_clip_batch(pred.read(tsm.clip)))
  np.testing.assert_allclose(offsets[0], out.offsets[0, 0],
                             atol=CLI_ATOL)
  probs = out.probs.numpy()[0, 0]
  top = result["top_k"]
  assert [t["class"] for t in top] == np.argsort(-probs,
                                                 kind="stable").tolist()
  np.testing.assert_allclose([t["prob"] for t in top], np.sort(probs)[::-1],
                             atol=CLI_ATOL)
  # Boxes in original pixels: the network's 32 pixels are the 48-pixel
  # centre crop of the 64x48 frame (scale 48 / 32, 8 pixels in x).
  scale = 48 / tsm.cfg.data.frame_size
  p = tsm.cfg.model.patch_size * scale
  y, x = offsets[0] * scale
  np.testing.assert_allclose(result["boxes"],
                             [[8 + x, y, 8 + x + p, y + p]] * TF, atol=2e-3)
  assert result["crop_box"] == [8.0, 0.0, 56.0, 48.0]


def test_saved_model_in_a_fresh_process(tsm, recognizer):
  meta, out = tsm.export_meta, tsm.export_out
  assert meta["model_variant"] == "v2_tsm" and meta["patches"] == "policy"
  assert meta["exit_steps"] == E
  assert meta["frame_streams"] == {"glance_frames": TG, "focus_frames": TF}
  assert meta["gflops_per_video"] == pytest.approx(
      flops.video_macs(tsm.cfg)["gflops_per_video"])
  code, _, stderr = _finished(tsm.serve)
  assert code == 0, stderr[-4000:]
  got = {k: np.load(os.path.join(tsm.export_outdir, f"{k}.npy"),
                    allow_pickle=True) for k in module_lib.OUTPUTS}
  # The in-process recognizer on the frames the graph samples.
  exit_probs = recognizer.exit_probs(out).numpy()
  np.testing.assert_allclose(got["step_probabilities"], exit_probs,
                             atol=PROB_ATOL)
  want = exit_rule.exit_steps(exit_probs, tsm.export_thresholds)
  assert sorted(set(want)) == [0, 1]
  np.testing.assert_array_equal(got["exit_step"], want)
  np.testing.assert_allclose(
      got["probabilities"], exit_probs[np.arange(EXPORT_VIDEOS), want],
      atol=PROB_ATOL)
  # The one sub-pixel box per video.
  boxes = patches.offsets_to_boxes(out.offsets, tsm.cfg.data.frame_size,
                                   tsm.cfg.model.patch_size).numpy()
  assert got["patch_boxes"].shape == (EXPORT_VIDEOS, 1, 4)
  np.testing.assert_allclose(got["patch_boxes"], boxes, atol=PROB_ATOL)
  corners = got["patch_boxes"][..., :2] * tsm.cfg.data.frame_size
  assert np.any(np.abs(corners - np.round(corners)) > 1e-3)

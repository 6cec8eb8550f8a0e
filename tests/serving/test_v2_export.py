"""SavedModel export of an AdaFocusV2 run, reloaded in a fresh process.

The same signatures as every run's (serving/module.py): ``patch_boxes``
keep V2's sub-pixel patch positions, ``patch_offsets`` (the TensorFlow
Lite export's int32 output) round them, and early exit compares the steps'
largest raw logits. The export is run by ``saved_model_cli`` in a process
that cannot import this package, and read by the serving client's request
and answer code.
"""
import json

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf import serving
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.models import patches
from adafocus_tf.profiling import flops
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import client as serving_client
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess
from adafocus_tf.serving import rest_client

pytestmark = pytest.mark.training

T = helpers.TINY["data.num_frames"]
ATOL = 1e-5

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("v2_export")
  cfg, run = helpers.copy_of_tiny_v2_run(root / "run")
  export_dir = str(root / "exports" / "adafocus" / "1")
  meta = export.export_run(run, export_dir)
  return cfg, run, export_dir, meta


def _reference(run, frames):
  """The run's recognizer on uint8 frames, preprocessed as the graph does."""
  trained = trained_run.TrainedRun(run)
  rec = trained.recognizer()
  inputs = preprocess.preprocess_frames(tf.constant(frames), trained.cfg)
  out = rec({**inputs, "seed": tf.zeros([frames.shape[0], 2], tf.int64)})
  return rec, out


def test_metadata_and_a_fresh_process_run(exported, tmp_path):
  cfg, run, export_dir, meta = exported
  cost = flops.video_macs(cfg)
  assert meta["model_variant"] == "v2" and meta["patches"] == "policy"
  assert meta["exit_steps"] == T and meta["num_frames"] == T
  assert meta["gflops_per_video"] == pytest.approx(cost["gflops_per_video"])
  assert meta["signatures"][serving.SERVING_DEFAULT]["outputs"][
      "patch_boxes"] == ["float32", [-1, T, 4]]
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (2, T, 40, 56, 3), dtype=np.uint8)
  frames_npy = tmp_path / "frames.npy"
  np.save(frames_npy, frames)
  proc = helpers.start_saved_model_cli(
      export_dir, serving.SERVING_DEFAULT, {"frames": frames_npy},
      tmp_path / "out")
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-4000:]
  got = {k: np.load(tmp_path / "out" / f"{k}.npy", allow_pickle=True)
         for k in module_lib.OUTPUTS}
  _, out = _reference(run, frames)
  np.testing.assert_allclose(got["probabilities"], out.probs[:, -1],
                             atol=ATOL)
  np.testing.assert_allclose(got["step_probabilities"], out.probs, atol=ATOL)
  np.testing.assert_array_equal(got["exit_step"], [T - 1, T - 1])
  boxes = patches.offsets_to_boxes(out.offsets, cfg.data.frame_size,
                                   cfg.model.patch_size).numpy()
  np.testing.assert_allclose(got["patch_boxes"], boxes, atol=ATOL)
  # Sub-pixel positions survive: the boxes are not on whole pixels.
  corners = got["patch_boxes"][..., :2] * cfg.data.frame_size
  assert np.any(np.abs(corners - np.round(corners)) > 1e-3)
  np.testing.assert_array_equal(
      got["top_k_indices"],
      np.argsort(-out.probs[:, -1].numpy(), axis=-1,
                 kind="stable")[:, :got["top_k_indices"].shape[1]])


def test_patch_offsets_round_and_early_exit_reads_logits(exported):
  cfg, run, _, _ = exported
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (4, T, 32, 32, 3), dtype=np.uint8)
  rec, out = _reference(run, frames)
  conf = tf.reduce_max(out.logits, -1).numpy()
  thresholds = exit_rule.never(T, exit_rule.MAX_LOGIT)
  thresholds[0] = np.median(conf[:, 0])
  module = module_lib.ServingModule(rec, [f"c{i}" for i in range(
      cfg.data.num_classes)], thresholds=thresholds)
  got = module.numeric_outputs(preprocess.preprocess_frames(
      tf.constant(frames), cfg))
  np.testing.assert_array_equal(got[module_lib.PATCH_OFFSETS],
                                np.round(out.offsets.numpy()))
  assert got[module_lib.PATCH_OFFSETS].dtype == tf.int32
  want = exit_rule.exit_steps_from_confidences(conf, thresholds)
  assert set(want) == {0, T - 1}
  np.testing.assert_array_equal(got["exit_step"], want)
  np.testing.assert_allclose(
      got["probabilities"], out.probs.numpy()[np.arange(4), want], atol=ATOL)


def test_serving_client_reads_a_v2_export(exported, tmp_path):
  _, _, export_dir, meta = exported
  loaded = tf.saved_model.load(export_dir)
  clip = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 20,
                                    width=56, height=40)
  for sig in serving_client.SIGNATURES:
    instance, inputs = serving_client.video_inputs(clip, sig, T)
    (name,) = inputs
    out = {k: v.numpy() for k, v in loaded.signatures[sig](
        **{name: tf.constant(inputs[name])}).items()}
    # TF Serving's REST answer (row format) for one instance.
    rows = [{k: (v[0].astype(str).tolist() if v.dtype == object
                 else v[0].tolist()) for k, v in out.items()}]
    (pred,) = rest_client.parse_predictions(
        json.loads(json.dumps({"predictions": rows})))
    np.testing.assert_allclose(pred["probabilities"], out["probabilities"][0],
                               atol=ATOL)
    doc = serving_client.to_json(pred)
    assert np.array(doc["patch_boxes"]).shape == (T, 4)
    assert doc["top_k_classes"][0] in meta["class_names"]
    assert serving_client.format_prediction("clip", pred).startswith(
        "clip: c")

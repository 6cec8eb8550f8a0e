"""SavedModel and TensorFlow Lite exports of a Uni-AdaFocus run (issue 26).

The same signatures as every run's (serving/module.py): ``serving_default``
takes any number of frames and samples the N candidates in the graph,
``tf_example`` a serialized video; the outputs carry the K + 1 exit steps'
predictions, the exit step (raw-logit thresholds), the deformable regions
at their own sizes (``patch_boxes``) and the frame of the request each is
cut from (``patch_frames``). The export is run by ``saved_model_cli`` in a
process that cannot import this package; the whole model converts to
TensorFlow Lite (builtin ops, no loop, so XNNPACK takes it) with the same
outputs.
"""
import json
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf import serving
from adafocus_tf.data import sampling
from adafocus_tf.inference import clips
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.profiling import flops
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import client as serving_client
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess
from adafocus_tf.serving import rest_client
from adafocus_tf.serving import tflite_model

pytestmark = pytest.mark.training

N = helpers.TINY["data.num_frames"]
K = helpers.TINY_UNI["uni.focus_frames"]
E = K + 1
S = helpers.TINY["data.frame_size"]
ATOL = 1e-5
# Frames per request: not N, which the graph samples from them.
SENT = 20


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("uni_export")
  cfg, run = helpers.copy_of_tiny_v2_run(root / "run",
                                         make_config=helpers.tiny_uni_config)
  export_dir = str(root / "exports" / "adafocus" / "1")
  meta = export.export_run(run, export_dir)
  return cfg, run, export_dir, meta


def _reference(run, frames):
  """The run's recognizer on uint8 frames, preprocessed as the graph does,
  and the request frames each stream sampled."""
  trained = trained_run.TrainedRun(run)
  rec = trained.recognizer()
  inputs, indices = preprocess.preprocess_frames(
      tf.constant(frames), trained.cfg, with_indices=True)
  out = rec({**inputs, "seed": tf.zeros([frames.shape[0], 2], tf.int64)})
  return rec, out, indices["frames"].numpy()


def _videos(seed, count=2, height=40, width=56):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (count, SENT, height, width, 3), dtype=np.uint8)


def test_metadata_and_a_fresh_process_run(exported, tmp_path):
  cfg, run, export_dir, meta = exported
  cost = flops.video_macs(cfg)
  assert meta["model_variant"] == "uni" and meta["patches"] == "policy"
  assert meta["plan"] == "learned frames and regions"
  # Any number of frames: the graph samples the candidates.
  assert meta["num_frames"] is None
  assert meta["frame_streams"] == {"frames": N}
  assert meta["exit_steps"] == E and len(meta["exit_step_macs"]) == E
  assert meta["gflops_per_video"] == pytest.approx(cost["gflops_per_video"])
  sig = meta["signatures"][serving.SERVING_DEFAULT]
  assert sig["inputs"] == {"frames": ["uint8", [-1, -1, -1, -1, 3]]}
  assert sig["outputs"]["patch_boxes"] == ["float32", [-1, K, 4]]
  assert sig["outputs"][module_lib.PATCH_FRAMES] == ["int32", [-1, K]]
  assert sig["outputs"]["step_probabilities"] == [
      "float32", [-1, E, cfg.data.num_classes]]
  frames = _videos(0)
  frames_npy = tmp_path / "frames.npy"
  np.save(frames_npy, frames)
  proc = helpers.start_saved_model_cli(
      export_dir, serving.SERVING_DEFAULT, {"frames": frames_npy},
      tmp_path / "out")
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-4000:]
  got = {k: np.load(tmp_path / "out" / f"{k}.npy", allow_pickle=True)
         for k in sig["outputs"]}
  rec, out, sampled = _reference(run, frames)
  # The candidates: evaluation's TSN sampling of the 20 frames sent.
  np.testing.assert_array_equal(
      sampled[0], sampling.sample_indices(tf.constant(SENT), N, False,
                                          cfg.data.dense_sampling))
  exit_probs = rec.exit_probs(out).numpy()
  np.testing.assert_allclose(got["step_probabilities"], exit_probs,
                             atol=ATOL)
  np.testing.assert_allclose(got["probabilities"], exit_probs[:, -1],
                             atol=ATOL)
  np.testing.assert_array_equal(got["exit_step"], [E - 1, E - 1])
  # The regions at their own sizes, on the frames the plan chose.
  plan = out.offsets.numpy()
  y, x, h, w = np.moveaxis(np.asarray(focus_plan.regions(plan)), -1, 0)
  np.testing.assert_allclose(
      got["patch_boxes"] * S, np.stack([y, x, y + h, x + w], -1), atol=1e-4)
  sizes = (got["patch_boxes"][..., 2:] - got["patch_boxes"][..., :2]) * S
  np.testing.assert_allclose(sizes, np.stack([h, w], -1), atol=1e-4)
  assert np.any(np.abs(sizes - cfg.model.patch_size) > 0.5)
  np.testing.assert_array_equal(
      got[module_lib.PATCH_FRAMES],
      np.take_along_axis(sampled, focus_plan.indices(plan).numpy(), 1))
  np.testing.assert_array_equal(
      got["top_k_indices"],
      np.argsort(-exit_probs[:, -1], axis=-1,
                 kind="stable")[:, :got["top_k_indices"].shape[1]])


def test_early_exit_in_the_graph_reads_raw_logits(exported):
  cfg, run, _, _ = exported
  frames = _videos(1, count=4, height=32, width=32)
  rec, out, _ = _reference(run, frames)
  conf = tf.reduce_max(rec.exit_logits(out), -1).numpy()
  assert conf.shape == (4, E)
  thresholds = exit_rule.never(E, exit_rule.MAX_LOGIT)
  thresholds[0] = np.median(conf[:, 0])
  module = module_lib.ServingModule(rec, [f"c{i}" for i in range(
      cfg.data.num_classes)], thresholds=thresholds)
  got = module.predict(*preprocess.preprocess_frames(
      tf.constant(frames), cfg, with_indices=True))
  want = exit_rule.exit_steps_from_confidences(conf, thresholds)
  assert set(want) == {0, E - 1}
  np.testing.assert_array_equal(got["exit_step"], want)
  np.testing.assert_allclose(
      got["probabilities"],
      rec.exit_probs(out).numpy()[np.arange(4), want], atol=ATOL)
  # TFLite's int32 offsets are the plans rounded.
  numeric = module.numeric_outputs(preprocess.preprocess_frames(
      tf.constant(frames), cfg))
  np.testing.assert_array_equal(numeric[module_lib.PATCH_OFFSETS],
                                np.round(out.offsets.numpy()))
  # Without the request's indices, patch_frames are candidates.
  np.testing.assert_array_equal(numeric[module_lib.PATCH_FRAMES],
                                focus_plan.indices(out.offsets))


def test_serving_client_reads_a_uni_export(exported, tmp_path):
  cfg, run, export_dir, meta = exported
  loaded = tf.saved_model.load(export_dir)
  clip = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 30,
                                    width=56, height=40)
  rec = trained_run.TrainedRun(run).recognizer()
  for sig in serving_client.SIGNATURES:
    # Every frame: both signatures sample the candidates themselves.
    instance, inputs = serving_client.video_inputs(
        clip, sig, serving_client.ALL_FRAMES)
    (name,) = inputs
    out = {k: v.numpy() for k, v in loaded.signatures[sig](
        **{name: tf.constant(inputs[name])}).items()}
    # TF Serving's REST answer (row format) for one instance.
    rows = [{k: (v[0].astype(str).tolist() if v.dtype == object
                 else v[0].tolist()) for k, v in out.items()}]
    (pred,) = rest_client.parse_predictions(
        json.loads(json.dumps({"predictions": rows})))
    doc = serving_client.to_json(pred)
    assert np.array(doc["patch_boxes"]).shape == (K, 4)
    assert doc["top_k_classes"][0] in meta["class_names"]
    # The reference: the recognizer on what the signature reads.
    if sig == serving.EXAMPLE_SIGNATURE:
      sampled, _, stored = clips.preprocess(serving_client.read_video(clip),
                                            cfg)
      sampled = sampled["frames"][None]
      want = rec({"frames": tf.constant(stored["frames"][None]),
                  "seed": tf.zeros([1, 2], tf.int64)})
    else:
      _, want, sampled = _reference(run, inputs[name])
    np.testing.assert_allclose(pred["probabilities"],
                               want.probs[0, -1], atol=ATOL)
    # The frames of the 30 sent (or stored) the plan chose.
    chosen = focus_plan.indices(want.offsets).numpy()
    np.testing.assert_array_equal(doc[module_lib.PATCH_FRAMES],
                                  np.take_along_axis(sampled, chosen, 1)[0])


def test_the_whole_model_converts_to_tflite(exported, tmp_path):
  _, run, export_dir, _ = exported
  lite_dir = str(tmp_path / "lite" / "1")
  meta = tflite_model.export_tflite(run, lite_dir, batch_size=2)
  lite_meta = meta["tflite"]
  assert lite_meta["inputs"] == {"frames": ["float32", [2, N, S, S, 3]]}
  assert lite_meta["outputs"]["patch_offsets"] == [
      "int32", [2, K, focus_plan.PLAN_DIMS]]
  assert lite_meta["outputs"][module_lib.PATCH_FRAMES] == ["int32", [2, K]]
  # No WHILE op (the classifier's running maxima unrolled): XNNPACK takes
  # the graph.
  plain_ops = tf.lite.Interpreter(
      model_path=os.path.join(lite_dir, tflite_model.MODEL_FILE),
      experimental_op_resolver_type=(
          tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  ops = {op["op_name"] for op in plain_ops._get_ops_details()}  # pylint: disable=protected-access
  assert "FULLY_CONNECTED" in ops and "WHILE" not in ops
  lite = tflite_model.TFLiteModel(lite_dir)
  loaded = tf.saved_model.load(export_dir)
  # Three videos: a full chunk of two and a padded one.
  frames = _videos(2, count=3)
  want = {k: v.numpy() for k, v in loaded.signatures[
      serving.SERVING_DEFAULT](frames=tf.constant(frames)).items()}
  got = lite.predict_frames(frames)
  for key in ("probabilities", "step_probabilities", "top_k_probabilities",
              "patch_boxes"):
    np.testing.assert_allclose(got[key], want[key], atol=1e-4, err_msg=key)
  for key in ("top_k_indices", "exit_step", module_lib.PATCH_FRAMES):
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)

"""TensorFlow Lite export of the whole recognizer, its loader and client.

The golden runs (``tests/golden``: a trained tiny V1 run with a discrete
policy and a trained tiny two-stream run with a continuous policy) are
exported both as a SavedModel and as a TFLite model; the TFLite model must
give the SavedModel's top-1, its probabilities within 1e-4 and its patches
exactly, on the same uint8 videos. The V1 export goes through the command
line, and ``adafocus-serve-client --tflite`` runs it on a frame folder.
The glance network alone as a TFLite model (``Predictor``'s hybrid
backend) fed back to the recognizer must meet the same bounds.
"""
import json
import os
import shutil
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf.inference import clips
from adafocus_tf.inference import glance_output
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import client as serving_client
from adafocus_tf.serving import export
from adafocus_tf.serving import tflite_model
from adafocus_tf.serving import tflite_ops
from adafocus_tf.serving import tflite_runner

GOLDEN = os.path.join(helpers.REPO, "tests", "golden")
PROB_ATOL = 1e-4
NAMES = [f"name{i}" for i in range(10)]


def _script(name):
  return os.path.join(os.path.dirname(sys.executable), name)


def _videos(num_frames, seed=0):
  """Three uint8 videos of noise, 80x96 (cropped and resized like any)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (3, num_frames, 80, 96, 3), dtype=np.uint8)


def _compare(saved_dir, lite, videos):
  """The SavedModel's and the TFLite model's outputs on the same videos."""
  serve = tf.saved_model.load(saved_dir).signatures[SERVING_DEFAULT]
  want = {k: v.numpy() for k, v in serve(frames=tf.constant(videos)).items()}
  got = lite.predict_frames(videos)
  np.testing.assert_array_equal(got["probabilities"].argmax(-1),
                                want["probabilities"].argmax(-1))
  for key in ("probabilities", "step_probabilities", "top_k_probabilities"):
    np.testing.assert_allclose(got[key], want[key], atol=PROB_ATOL, rtol=0)
  for key in ("top_k_indices", "exit_step", "patch_boxes"):
    np.testing.assert_array_equal(got[key], want[key])
  np.testing.assert_array_equal(got["top_k_classes"].astype(str),
                                want["top_k_classes"].astype(str))
  # The offsets are the boxes' top-left corners in network pixels.
  size = lite.metadata["frame_size"]
  np.testing.assert_array_equal(got["patch_offsets"] / size,
                                want["patch_boxes"][..., :2])
  return got


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
  """The V1 golden run exported by the command line (TFLite, batch 2) and
  in process (SavedModel)."""
  root = tmp_path_factory.mktemp("tflite_v1")
  # A copy: a tool keeps its log in the run it reads (<run>/logs/).
  run = str(root / "v1_discrete")
  shutil.copytree(os.path.join(GOLDEN, "v1_discrete"), run)
  names = root / "names.txt"
  names.write_text("\n".join(NAMES) + "\n")
  proc = subprocess.run(
      [_script("adafocus-export"), f"--run={run}", f"--workspace={root}",
       "--format=tflite", "--tflite_batch=2", f"--class_names={names}"],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lite_dir = os.path.join(root, "exports", "adafocus-tflite", "1")
  assert f"exported {lite_dir} (tflite)" in proc.stdout
  saved_dir = str(root / "saved" / "1")
  export.export_run(run, saved_dir, class_names=NAMES)
  return run, lite_dir, saved_dir, root


def test_v1_tflite_matches_the_saved_model(v1):
  run, lite_dir, saved_dir, _ = v1
  assert sorted(os.listdir(lite_dir)) == [tflite_model.METADATA_FILE,
                                          tflite_model.MODEL_FILE]
  # Nothing but the version directory beside it: the temporary is gone.
  assert os.listdir(os.path.dirname(lite_dir)) == ["1"]
  lite = tflite_model.TFLiteModel(lite_dir)
  meta = lite.metadata
  assert meta["format"] == "tflite" and meta["patches"] == "policy"
  assert meta["class_names"] == NAMES and meta["run"] == run
  assert (meta["num_frames"], meta["frame_size"]) == (8, 64)
  lite_meta = meta["tflite"]
  assert lite_meta["batch_size"] == lite.runner.batch_size == 2
  assert lite_meta["inputs"] == {"frames": ["float32", [2, 8, 64, 64, 3]]}
  assert lite_meta["outputs"]["patch_offsets"] == ["int32", [2, 8, 2]]
  assert lite_meta["normalization"]["mean"] == pytest.approx(
      list(lite.cfg.data.mean))
  # No WHILE op (the recurrent loops run unrolled): XNNPACK refuses a
  # graph with its dynamic-sized outputs.
  plain_ops = tf.lite.Interpreter(
      model_path=os.path.join(lite_dir, tflite_model.MODEL_FILE),
      experimental_op_resolver_type=(
          tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  ops = {op["op_name"] for op in plain_ops._get_ops_details()}  # pylint: disable=protected-access
  assert "FULLY_CONNECTED" in ops and "WHILE" not in ops
  # Three videos: a full chunk of two and a padded one.
  got = _compare(saved_dir, lite, _videos(8))
  assert got["probabilities"].shape == (3, 10)
  assert got["patch_offsets"].shape == (3, 8, 2)
  # The reference kernels (no XNNPACK) give the same answer.
  plain = tflite_model.TFLiteModel(lite_dir, num_threads=1, xnnpack=False)
  np.testing.assert_allclose(plain.predict_frames(_videos(8))
                             ["probabilities"], got["probabilities"],
                             atol=PROB_ATOL)


def test_two_stream_tflite_matches_the_saved_model(tmp_path):
  run = os.path.join(GOLDEN, "two_stream_continuous")
  lite_dir, saved_dir = str(tmp_path / "lite" / "1"), str(tmp_path / "sm")
  meta = tflite_model.export_tflite(run, lite_dir, class_names=NAMES)
  assert meta["tflite"]["inputs"] == {
      "glance_frames": ["float32", [1, 4, 64, 64, 3]],
      "focus_frames": ["float32", [1, 6, 64, 64, 3]]}
  export.export_run(run, saved_dir, class_names=NAMES)
  # The two-stream model samples its streams from any number of frames.
  got = _compare(saved_dir, tflite_model.TFLiteModel(lite_dir), _videos(11))
  assert got["patch_offsets"].shape == (3, 1, 2)


def test_serve_client_runs_the_tflite_model_on_a_frame_folder(v1):
  _, lite_dir, _, root = v1
  folder = video_fixtures.write_frame_folder(str(root / "frames"), 13)
  bad = root / "garbage.mp4"
  bad.write_bytes(b"not a video\n" * 32)
  proc = subprocess.run(
      [_script("adafocus-serve-client"), f"--tflite={lite_dir}", "--json",
       "--threads=1", folder, str(bad)],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert f"{bad}: error:" in proc.stderr
  (line,) = proc.stdout.splitlines()
  doc = json.loads(line)
  # The answer is the loader's on the T frames of TSN centre sampling.
  frames = serving_client.sample_frames(serving_client.read_video(folder), 8)
  want = tflite_model.TFLiteModel(lite_dir).predict_frames(
      serving_client.decode_jpegs(frames.jpegs)[None])
  assert doc["video"] == folder
  assert doc["top_k_classes"] == [NAMES[i] for i in want["top_k_indices"][0]]
  np.testing.assert_allclose(doc["probabilities"], want["probabilities"][0],
                             atol=1e-6)
  assert doc["patch_offsets"] == want["patch_offsets"][0].tolist()


def test_loader_refuses_what_it_would_misread(v1, tmp_path):
  _, lite_dir, saved_dir, _ = v1
  with pytest.raises(FileNotFoundError, match="not a TFLite export"):
    tflite_model.TFLiteModel(saved_dir)
  lite = tflite_model.TFLiteModel(lite_dir)
  with pytest.raises(ValueError, match="uint8"):
    lite.predict_frames(_videos(8).astype(np.float32))
  with pytest.raises(ValueError, match="exactly 8 frames"):
    lite.predict_frames(_videos(5))
  with pytest.raises(ValueError, match=r"input 'frames' has shape"):
    lite.predict(np.zeros((1, 8, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="empty batch"):
    lite.predict(np.zeros((0, 8, 64, 64, 3), np.float32))
  with pytest.raises(FileExistsError):
    tflite_model.export_tflite(os.path.join(GOLDEN, "v1_discrete"), lite_dir)


def test_a_failed_write_leaves_nothing(tmp_path):
  model_dir = tmp_path / "exports"
  model_dir.mkdir()

  def fill(tmp):
    with open(os.path.join(tmp, tflite_model.MODEL_FILE), "wb") as f:
      f.write(b"half")
    raise OSError("disk full")
  with pytest.raises(OSError, match="disk full"):
    export.write_version(str(model_dir / "1"), fill)
  assert not os.listdir(model_dir)


def test_builtin_forms_equal_the_ops_they_replace():
  rng = np.random.default_rng(3)
  frames = tf.constant(rng.standard_normal((2, 3, 20, 24, 3)), tf.float32)
  offsets = tf.constant(rng.integers(0, 9, (2, 3, 2)), tf.int32)
  np.testing.assert_array_equal(
      tflite_ops.gather_patches(frames, offsets, 12),
      patches.extract_patches(frames, offsets, 12))
  one = offsets[:, :1]
  np.testing.assert_array_equal(tflite_ops.gather_patches(frames, one, 12),
                                patches.extract_patches(frames, one, 12))
  with pytest.raises(tflite_ops.UnsupportedOp, match="fractional"):
    tflite_ops.gather_patches(frames, tf.cast(offsets, tf.float32), 12)
  net = glance_lib.GlanceNet("tiny_cnn", 16, 1.0, 4)
  images = tf.constant(rng.standard_normal((2, 64, 64, 3)), tf.float32)
  np.testing.assert_allclose(tflite_ops.pooled_resize(net, images),
                             net.resize(images), atol=1e-6)
  with pytest.raises(tflite_ops.UnsupportedOp, match="60x60 frames to 16x16"):
    tflite_ops.pooled_resize(net, images[:, :60, :60])


@pytest.mark.parametrize("name", ("v1_discrete", "two_stream_continuous"))
def test_a_tflite_glance_fed_to_the_recognizer_gives_its_outputs(name):
  # The hybrid backend's parts: the glance alone as a TFLite model, its
  # outputs given to ``Recognizer.__call__`` instead of its own glance.
  run = os.path.join(GOLDEN, name)
  recognizer = trained_run.TrainedRun(run).recognizer()
  cfg = recognizer.cfg
  rng = np.random.default_rng(3)
  s = cfg.data.frame_size
  batch = {key: tf.constant(rng.standard_normal((3, count, s, s, 3)),
                            tf.float32)
           for key, count in clips.frame_streams(cfg).items()}
  runner = tflite_runner.Runner(tflite_model.convert_glance(recognizer))
  key = recognizer.glance_key
  assert runner.input_shapes == {key: (1,) + tuple(batch[key].shape[1:])}
  glance = runner({key: batch[key].numpy()})
  # Stage 3 tuned these runs' glance: the policy reads its own glance net's.
  assert recognizer.policy_glance is not None
  assert sorted(glance) == ["maps", "policy_maps", "pooled"]
  want = recognizer(batch, "policy")
  got = recognizer(batch, "policy", glance=glance_output.Glance.from_outputs(
      {k: tf.constant(v) for k, v in glance.items()}))
  np.testing.assert_allclose(got.probs, want.probs, atol=PROB_ATOL, rtol=0)
  np.testing.assert_array_equal(np.argmax(got.probs, -1),
                                np.argmax(want.probs, -1))
  np.testing.assert_allclose(got.glance_probs, want.glance_probs,
                             atol=PROB_ATOL, rtol=0)
  np.testing.assert_array_equal(got.offsets, want.offsets)
  # The same glance given back reproduces the recognizer's own exactly.
  again = recognizer(batch, "policy", glance=recognizer.glance(batch))
  np.testing.assert_array_equal(again.probs, want.probs)

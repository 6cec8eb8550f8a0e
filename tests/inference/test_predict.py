"""launch/predict.py, launch/evaluate.py and their library on a tiny real run.

One run (stage 1 and 2 for one epoch each on 16 videos) is trained once per
module; the two command lines run once each, side by side, in subprocesses.
"""
import json
import os
import shutil
import subprocess
import sys
import types

import adafocus_tf  # pylint: disable=unused-import
import av
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf.data import augment
from adafocus_tf.data import pipeline
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_sources
from adafocus_tf.evaluation import evaluate as evaluate_lib
from adafocus_tf.evaluation import metrics
from adafocus_tf.evaluation import predictions
from adafocus_tf.inference import clips as clips_lib
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import visualize
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.profiling import flops
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import tflite_cache
from adafocus_tf.serving import tflite_model

# Every test uses a run trained by its module's fixtures.
pytestmark = pytest.mark.training

NUM_FRAMES = 20
WIDTH, HEIGHT = 64, 48
# TSN centres of 8 segments of 20 frames: floor((i + 0.5) * 2.5).
SAMPLED = [1, 3, 6, 8, 11, 13, 16, 18]
EVAL_VIDEOS = 12


def _frames():
  """Noise with a bright block in the top-right quadrant (class 1's place)."""
  rng = np.random.default_rng(7)
  out = []
  for t in range(NUM_FRAMES):
    img = rng.integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[4:20, 36:60] = 200 + t
    out.append(img)
  return out


def _write_video(path, frames):
  encoder, options = video_fixtures.CODECS["h264"]
  with av.open(path, "w") as container:
    stream = container.add_stream(encoder, rate=10)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = dict(options)
    for img in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(img,
                                                             format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(cfg, run, inputs dir, the two command lines' results)."""
  root = tmp_path_factory.mktemp("predict")
  cfg, run = helpers.train_tiny_run(root, (1, 2))
  inputs = root / "inputs"
  inputs.mkdir()
  frames = _frames()
  _write_video(str(inputs / "clip.mp4"), frames)
  folder = inputs / "clip_frames"
  folder.mkdir()
  for k, img in enumerate(frames, 1):
    Image.fromarray(img).save(folder / f"image_{k:05d}.jpg", quality=95)
  (inputs / "garbage.mp4").write_bytes(b"this is not a video\n" * 64)
  paths = [str(inputs / "clip.mp4"), str(folder), str(inputs / "none.mp4"),
           str(inputs / "garbage.mp4")]
  out = str(root / "pictures")
  # --early_exit without thresholds: a warning, and every clip runs to the
  # end.
  # TensorFlow's kernels, whose numbers the tests compare exactly with the
  # recognizer's (the TFLite backends': test_the_*_backend_*).
  predict = helpers.start_launch(
      "predict.py", [f"--run={run}", "--json", "--early_exit",
                     f"--visualize={out}", "--backend=tf"] + paths)
  evaluate = helpers.start_launch(
      "evaluate.py", [f"--run={run}", "--progress=false",
                      f"--max_videos={EVAL_VIDEOS}"])
  results = {}
  for name, proc in (("predict", predict), ("evaluate", evaluate)):
    stdout, stderr = proc.communicate(timeout=600)
    results[name] = (proc.returncode, stdout, stderr)
  return types.SimpleNamespace(cfg=cfg, run=run, data_dir=cfg.data.data_dir,
                               paths=paths, out=out, **results)


@pytest.fixture(scope="module")
def predictor(tiny):
  return predict_lib.Predictor(tiny.run, backend="tf")


@pytest.fixture(scope="module")
def predicted(tiny):
  code, stdout, stderr = tiny.predict
  assert code == 1, stderr[-3000:]
  # The user's terminal: the command's own lines only.
  assert helpers.noise_lines(stderr) == []
  return json.loads(stdout), stderr


def test_json_output_has_the_fields_and_reports_bad_inputs(tiny, predicted):
  doc, stderr = predicted
  assert doc["patches"] == "policy"  # stage 2 is done
  assert doc["backend"] == "tf"
  assert doc["class_names"].endswith(os.path.join("val", "meta.json"))
  (warning,) = doc["warnings"]
  assert "no early-exit thresholds" in warning
  video, folder, missing, garbage = doc["results"]
  for result, kind in ((video, "video"), (folder, "frames")):
    assert result["ok"] and result["kind"] == kind
    assert (result["frame_width"], result["frame_height"]) == (WIDTH, HEIGHT)
    assert result["num_frames"] == NUM_FRAMES
    assert result["sampled_frames"] == SAMPLED
    assert [t["name"] for t in result["top_k"]] == [
        f"c{t['class']}" for t in result["top_k"]]
    assert sorted(t["class"] for t in result["top_k"]) == [0, 1, 2, 3]
    assert sum(t["prob"] for t in result["top_k"]) == pytest.approx(1, 1e-5)
    assert len(result["boxes"]) == len(result["offsets"]) == 8
    # No thresholds: the last step, the full cost of policy patches.
    assert (result["exit_step"], result["early_exit"]) == (7, False)
    assert result["gflops"] == pytest.approx(flops.choice_gflops(
        flops.video_macs(tiny.cfg), "policy"))
    assert os.path.isfile(result["visualization"]["png"])
  assert not missing["ok"] and "no such file" in missing["error"]
  assert not garbage["ok"] and "cannot open" in garbage["error"]
  assert f"{tiny.paths[2]}: no such file" in stderr
  assert f"{tiny.paths[3]}: cannot open" in stderr


def _evaluation_batch(tmp_path, cfg, clips):
  """The clips' stored frames through the evaluation input pipeline."""
  split = str(tmp_path / "split")
  # A clip holds only its sampled frames: store every frame, as prepare
  # does (the test data records no frame settings: the defaults).
  settings = video_decode.FrameSettings()
  stored = [video_sources.read_source(c.kind, c.path, None, settings)
            for c in clips]
  records = [schema.encode_video(f"v{i}", [0], s.jpegs, s.height, s.width)
             for i, s in enumerate(stored)]
  shards.write_shard(split, 0, 1, records, {})
  return next(iter(pipeline.make_dataset(cfg.data, split, False,
                                         len(clips))))


def test_predictions_equal_the_model_on_evaluation_frames(
    tiny, predicted, predictor, tmp_path):
  cfg = tiny.cfg
  results = predicted[0]["results"][:2]
  clips = [predictor.read(p) for p in tiny.paths[:2]]
  batch = _evaluation_batch(tmp_path, cfg, clips)
  # The files reach the network exactly as evaluation reads them.
  np.testing.assert_allclose(np.stack([c.inputs["frames"] for c in clips]),
                             batch["frames"].numpy(), atol=1e-5)
  outputs = predictor.recognizer(batch, "policy")
  offsets, probs = outputs.offsets, outputs.probs[:, -1]
  settings = video_decode.FrameSettings()  # the test data records none
  s, p = cfg.data.frame_size, cfg.model.patch_size
  for i, (result, clip) in enumerate(zip(results, clips)):
    order = np.argsort(-probs[i].numpy(), kind="stable")
    assert [t["class"] for t in result["top_k"]] == order.tolist()
    np.testing.assert_allclose([t["prob"] for t in result["top_k"]],
                               probs[i].numpy()[order], atol=1e-5)
    np.testing.assert_array_equal(result["offsets"], offsets[i].numpy())
    # Boxes: network pixels -> the stored frame's crop window -> original.
    sw, sh = video_decode.resized_size(WIDTH, HEIGHT, settings.short_side)
    assert clip.stored_size == (sw, sh)
    wy, wx, side, _ = augment.eval_window(sh, sw, cfg.data.eval_resize,
                                          s).numpy()
    y, x = offsets[i].numpy().T * side / s + np.array([[wy], [wx]])
    expected = np.stack([x * WIDTH / sw, y * HEIGHT / sh,
                         (x + p * side / s) * WIDTH / sw,
                         (y + p * side / s) * HEIGHT / sh], 1)
    np.testing.assert_allclose(result["boxes"], expected, atol=1e-3)


def test_visualization_draws_the_patch_on_the_frames(tiny, predicted,
                                                     predictor):
  result = predicted[0]["results"][0]
  clip = predictor.read(tiny.paths[0])
  sheet = np.asarray(Image.open(result["visualization"]["png"]).convert(
      "RGB")).astype(int)
  tile = visualize.tile_size(clip.stored_size, 160)
  scale = tile[0] / WIDTH, tile[1] / HEIGHT
  for t, box in enumerate(result["boxes"]):
    plain = np.asarray(clip.stored_image(t).resize(
        tile, Image.Resampling.BILINEAR)).astype(int)
    ox, oy = visualize.tile_origin(t, tile, 4)
    x0, y0, x1, y1 = (round(v * scale[k % 2]) for k, v in enumerate(box))
    xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
    on_outline = [(y0, xm), (y1 - 1, xm), (ym, x0), (ym, x1 - 1)]
    for y, x in on_outline:
      diff = np.abs(sheet[oy + y, ox + x] - plain[y, x]).max()
      assert diff > 60, (t, y, x)
    # Inside the patch the frame itself is shown.
    np.testing.assert_array_equal(sheet[oy + ym, ox + xm], plain[ym, xm])
  with Image.open(result["visualization"]["gif"]) as gif:
    assert gif.n_frames == 8


def test_evaluate_writes_the_metrics_of_its_predictions(tiny, predictor):
  code, stdout, stderr = tiny.evaluate
  assert code == 0, stderr[-3000:]
  assert "val/policy" in stdout
  saved = json.load(open(os.path.join(tiny.run, "metrics.json")))
  row = saved["evaluation"]["val/policy"]
  cfg = tiny.cfg
  pred = predictions.predict_split(
      predictor.recognizer, os.path.join(tiny.data_dir, "val"), "policy",
      max_videos=EVAL_VIDEOS, progress=False)
  expected = metrics.summarize(pred["step_probs"][:, -1], pred["step_probs"],
                               pred["labels"])
  for key in ("top1", "top5", "mAP"):
    assert row[key] == pytest.approx(expected[key], rel=1e-6), key
  assert row["mAP_per_step"] == pytest.approx(expected["mAP_per_step"],
                                              rel=1e-6)
  assert row["num_videos"] == EVAL_VIDEOS
  assert row["gflops_per_video"] == pytest.approx(
      flops.choice_gflops(flops.video_macs(cfg), "policy"))


def test_mirrored_evaluation_equals_one_device(tiny):
  split = os.path.join(tiny.data_dir, "val")
  run = trained_run.TrainedRun(tiny.run, cfg=tiny.cfg)
  one, pred_one = evaluate_lib.evaluate_split(run, split, "centre", 10,
                                              progress=False)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  mirrored, pred_m = evaluate_lib.evaluate_split(run, split, "centre", 10,
                                                 strategy)
  np.testing.assert_array_equal(pred_one["video_ids"], pred_m["video_ids"])
  np.testing.assert_allclose(pred_one["step_probs"], pred_m["step_probs"],
                             atol=1e-6)
  assert mirrored["top1"] == one["top1"] and mirrored["num_videos"] == 10


def test_early_exit_reports_the_exit_step_and_its_cost(tiny):
  # Nobody may exit after frames 0 and 1 (thresholds above 1), everybody
  # after frame 2.
  thresholds = [exit_rule.NEVER] * 2 + [0.0] * 6
  threshold_file.save(tiny.run, thresholds, [0, 0, 1] + [0] * 5, [0] * 8, None,
                      0.0, final_weights.resolve(tiny.run))
  try:
    early = predict_lib.Predictor(tiny.run, "centre", early_exit=True)
  finally:
    os.remove(threshold_file.path(tiny.run))
  assert early.warnings == []
  clip = early.read(tiny.paths[1])
  result = early.predict(clip, top_k=2)
  assert (result.exit_step, result.early_exit) == (2, True)
  cost = flops.video_macs(tiny.cfg)
  assert result.gflops == pytest.approx(
      3 * flops.choice_gflops(cost, "centre") / 8)
  probs, _ = early.predict_frames(clip.inputs["frames"][None], [clip.path])
  assert [c for c, _, _ in result.top_k] == np.argsort(
      -probs[0, 2], kind="stable")[:2].tolist()
  # Centre patches: the same box in every frame.
  assert np.unique(result.offsets, axis=0).tolist() == [[12, 12]]


def test_loading_a_run_builds_no_agent_and_no_optimizer(tiny, monkeypatch):
  built = helpers.forbid_agents_and_optimizers(monkeypatch)
  predictor = predict_lib.Predictor(tiny.run)
  assert predictor.patches == "policy" and predictor.recognizer.policy
  assert not built


def test_choices_the_run_cannot_make_are_refused(tiny):
  split = os.path.join(tiny.data_dir, "val")
  run = trained_run.TrainedRun(tiny.run)
  assert evaluate_lib.resolve_eval_patches(run, split, "auto") == "policy"
  with pytest.raises(ValueError, match="stage 0"):
    evaluate_lib.resolve_eval_patches(run, split, "glance_only")
  with pytest.raises(ValueError, match="patches="):
    predict_lib.Predictor(tiny.run, "oracle")


def test_unreadable_data_falls_back_to_class_indices(tiny, tmp_path):
  cfg = helpers.tiny_config(str(tmp_path / "moved"))
  meta, where = clips_lib.read_data_meta(cfg)
  assert meta is None and "meta.json" in where
  names, source = clips_lib.class_names_of(cfg, meta, where)
  assert names is None and source.startswith("no readable meta.json")
  assert clips_lib.frame_settings_of(meta) == video_decode.FrameSettings()
  meta, where = clips_lib.read_data_meta(tiny.cfg)
  assert clips_lib.class_names_of(tiny.cfg, meta, where)[0] == [
      "c0", "c1", "c2", "c3"]


@pytest.fixture(scope="module")
def two_stream(tmp_path_factory):
  """A tiny two-stream run with a policy, and a real encoded video."""
  root = tmp_path_factory.mktemp("predict_two_stream")
  cfg, run = helpers.train_tiny_run(
      root, (1, 2), **helpers.two_stream_overrides())
  video = _write_video(str(root / "clip.mp4"), _frames())
  return types.SimpleNamespace(cfg=cfg, run=run, video=video, root=root)


def test_a_two_stream_run_predicts_a_video_with_pictures(two_stream):
  cfg = two_stream.cfg
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch", "predict.py"),
       f"--run={two_stream.run}", "--json", "--backend=tf",
       f"--visualize={two_stream.root / 'pictures'}", two_stream.video],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  doc = json.loads(proc.stdout)
  (result,) = doc["results"]
  assert doc["patches"] == "policy"
  # Glance and focus frames: TSN centres of 4 and 6 segments of 20 frames.
  assert result["glance_frames"] == [2, 7, 12, 17]
  assert result["sampled_frames"] == [1, 5, 8, 11, 15, 18]
  # Two exit steps: the glance alone, then glance and focus.
  assert (result["num_steps"], result["exit_step"]) == (2, 1)
  # One patch per video, drawn on every focus frame.
  assert len(result["offsets"]) == len(result["boxes"]) == 6
  assert len({tuple(o) for o in result["offsets"]}) == 1
  assert result["gflops"] == pytest.approx(flops.choice_gflops(
      flops.video_macs(cfg), "policy"), rel=1e-9)
  # The prediction is the recognizer's on the video's evaluation frames.
  predictor = predict_lib.Predictor(two_stream.run, backend="tf")
  clip = predictor.read(two_stream.video)
  outputs = predictor.recognizer(
      {k: tf.constant(v[None]) for k, v in clip.inputs.items()})
  probs = outputs.probs[0, -1].numpy()
  top = [t["class"] for t in result["top_k"]]
  assert top == np.argsort(-probs, kind="stable").tolist()
  np.testing.assert_allclose([t["prob"] for t in result["top_k"]],
                             probs[top], atol=1e-5)
  np.testing.assert_array_equal(result["offsets"][0],
                                outputs.offsets[0, 0].numpy())
  png = result["visualization"]["png"]
  sheet = np.asarray(Image.open(png).convert("RGB"))
  assert sheet.shape[0] > 100 and sheet.std() > 0
  with Image.open(result["visualization"]["gif"]) as gif:
    assert gif.n_frames == 6


def _same_predictions(got, want, frames, names):
  """``got`` predicts what ``want`` does: top-1 and patches, probabilities
  within 1e-4."""
  probs, offsets = got.predict_frames(frames, names)
  want_probs, want_offsets = want.predict_frames(frames, names)
  np.testing.assert_allclose(probs, want_probs, atol=1e-4, rtol=0)
  np.testing.assert_array_equal(probs.argmax(-1), want_probs.argmax(-1))
  np.testing.assert_array_equal(offsets, want_offsets)


def test_the_tflite_backend_equals_tensorflow_kernels(tiny, predictor):
  # The default, ``auto`` on a CPU: the whole TFLite model, converted once
  # and cached in the run directory (a second predictor reads the cache).
  lite = predict_lib.Predictor(tiny.run)
  assert lite.backend == "tflite" and not lite.backend_note
  cached = os.listdir(os.path.join(tiny.run, tflite_cache.DIRECTORY))
  assert [n for n in cached if n.startswith("predictor-policy-")]
  assert predict_lib.Predictor(tiny.run, backend="tflite").backend == "tflite"
  clips = [predictor.read(p) for p in tiny.paths[:2]]
  frames = np.stack([c.inputs["frames"] for c in clips])
  _same_predictions(lite, predictor, frames, tiny.paths[:2])
  # Random patches need the per-input seeds only TensorFlow's graph has:
  # ``auto`` takes the hybrid.
  drawn = predict_lib.Predictor(tiny.run, "random", backend="auto")
  assert drawn.backend == "hybrid" and "seeds" in drawn.backend_note
  with pytest.raises(ValueError, match="backend=tflite: random patches"):
    predict_lib.Predictor(tiny.run, "random", backend="tflite")
  with pytest.raises(ValueError, match="backend="):
    predict_lib.Predictor(tiny.run, backend="onnx")


def test_the_hybrid_backend_equals_tensorflow_kernels(tiny, predictor):
  # The glance network as a TFLite model, its outputs fed to the rest in
  # TensorFlow's graph: every patch choice, random ones drawn as there.
  hybrid = predict_lib.Predictor(tiny.run, backend="hybrid")
  assert hybrid.backend == "hybrid" and not hybrid.backend_note
  cached = os.listdir(os.path.join(tiny.run, tflite_cache.DIRECTORY))
  assert [n for n in cached if n.startswith("glance-policy-")]
  clips = [predictor.read(p) for p in tiny.paths[:2]]
  frames = np.stack([c.inputs["frames"] for c in clips])
  _same_predictions(hybrid, predictor, frames, tiny.paths[:2])
  _same_predictions(
      predict_lib.Predictor(tiny.run, "random", backend="hybrid"),
      predict_lib.Predictor(tiny.run, "random", backend="tf"), frames,
      tiny.paths[:2])


def test_a_two_stream_run_predicts_alike_on_every_backend(two_stream):
  want = predict_lib.Predictor(two_stream.run, backend="tf")
  clip = want.read(two_stream.video)
  frames = {k: v[None] for k, v in clip.inputs.items()}
  for backend in ("tflite", "hybrid"):
    got = predict_lib.Predictor(two_stream.run, backend=backend)
    assert got.backend == backend
    _same_predictions(got, want, frames, [clip.path])


def test_tflite_cache_follows_weights_replaced_under_the_same_name(
    tiny, predictor, tmp_path):
  # Issue 23: the cache was keyed on the checkpoint's path, so weights
  # replaced under the same ckpt-N name kept the old flatbuffer answering.
  run = str(tmp_path / "run")
  shutil.copytree(tiny.run, run)
  frames = np.stack([predictor.read(tiny.paths[0]).inputs["frames"]])
  names = tiny.paths[:1]
  before, _ = predict_lib.Predictor(run).predict_frames(frames, names)
  cache = os.path.join(run, tflite_cache.DIRECTORY)
  old = set(os.listdir(cache))
  weights = final_weights.resolve(run)
  helpers.rewrite_checkpoint(weights.model_checkpoint)
  assert final_weights.resolve(run).model_checkpoint == (
      weights.model_checkpoint)

  lite = predict_lib.Predictor(run)
  assert lite.backend == "tflite"
  kernels = predict_lib.Predictor(run, backend="tf")
  got, _ = lite.predict_frames(frames, names)
  want, _ = kernels.predict_frames(frames, names)
  assert np.max(np.abs(want - before)) > 1e-3, "the weights must matter"
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  # A new conversion, and the outdated flatbuffer of the run removed.
  now = set(os.listdir(cache))
  assert len(now) == len(old) and not now & {
      n for n in old if n.startswith("predictor-policy-")}


def test_a_read_only_run_converts_to_tflite_once(tiny, tmp_path,
                                                 monkeypatch):
  # Issue 28: a run directory this process cannot write was converted
  # again on every call; its flatbuffer now waits in the local cache.
  run = str(tmp_path / "run")
  shutil.copytree(tiny.run, run)
  in_run = os.path.join(run, tflite_cache.DIRECTORY)
  shutil.rmtree(in_run, ignore_errors=True)
  local = tmp_path / "cache" / "tflite"
  monkeypatch.setenv("ADAFOCUS_TFLITE_CACHE", str(local))
  # As a read-only mount answers (root would write through chmod).
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, m, **kw: (
      False if os.path.abspath(p) == run and m & os.W_OK
      else real(p, m, **kw)))
  assert predict_lib.Predictor(run, backend="tflite").backend == "tflite"
  assert not os.path.exists(in_run)
  assert len(os.listdir(local)) == 1

  def refuse(*args, **kwargs):
    raise AssertionError("converted again")
  monkeypatch.setattr(tflite_model, "convert", refuse)
  assert predict_lib.Predictor(run, backend="tflite").backend == "tflite"

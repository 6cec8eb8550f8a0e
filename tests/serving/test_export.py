"""SavedModel export for TF Serving, and the REST / gRPC clients.

One tiny V1 run trains stage 1 (one epoch) and is exported with centre
patches, then trains two PPO steps of stage 2 and is exported with its
policy; a tiny two-stream (Something-Something) run does the same and is
exported with its policy. The exports are checked against the in-process
``Recognizer``, loaded in a process where this package cannot be imported
(TF1 session loader, TF Serving's C++ loading path, and ``saved_model_cli
run``), and served to the clients by small local stand-ins of TF Serving's
REST and gRPC APIs.
"""
import base64
import collections
import concurrent.futures
import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf import config as config_lib
from adafocus_tf import serving
from adafocus_tf.data import augment
from adafocus_tf.data import pipeline
from adafocus_tf.data import sampling
from adafocus_tf.data import schema
from adafocus_tf.inference import clips
from adafocus_tf.inference import loading
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.models import adafocus
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import final_weights
from adafocus_tf.serving import client as serving_client
from adafocus_tf.serving import export
from adafocus_tf.serving import grpc_client
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import preprocess
from adafocus_tf.serving import rest_client
from adafocus_tf.training import experiment

T = helpers.TINY["data.num_frames"]
ATOL = 1e-5
Exported = collections.namedtuple("Exported", "cfg run policy_dir centre_dir")


# These fixtures train runs: the tests that use them (or ``backend``) are
# marked ``training``.
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  data = helpers.write_dataset(str(root / "data"), num_train=16, num_val=8)
  # eval_resize > frame_size: the serving graph must crop, then resize.
  cfg = helpers.tiny_config(data, data__eval_resize=36, stage1__epochs=1)
  run = str(root / "run")
  strategy = tf.distribute.get_strategy()
  experiment.run_stages(cfg, run, [1], strategy, progress=False)
  centre_dir = str(root / "centre" / "1")
  export.export_run(run, centre_dir)
  experiment.run_stages(cfg, run, [2], strategy, progress=False, max_steps=2)
  assert final_weights.policy_checkpoint(run)
  policy_dir = str(root / "exports" / "adafocus" / "1")
  export.export_run(run, policy_dir)
  return Exported(cfg, run, policy_dir, centre_dir)


@pytest.fixture(scope="module")
def two_stream(tmp_path_factory):
  """A two-stream run after stage 1 and two PPO steps, exported."""
  root = tmp_path_factory.mktemp("export2")
  data = helpers.write_dataset(str(root / "data"), num_train=16, num_val=8)
  cfg = helpers.tiny_two_stream_config(data, data__eval_resize=36,
                                       stage1__epochs=1)
  run = str(root / "run")
  strategy = tf.distribute.get_strategy()
  experiment.run_stages(cfg, run, [1], strategy, progress=False)
  experiment.run_stages(cfg, run, [2], strategy, progress=False, max_steps=2)
  policy_dir = str(root / "exports" / "two_stream" / "1")
  export.export_run(run, policy_dir)
  return Exported(cfg, run, policy_dir, None)


def _videos(num_videos, num_frames, height, width, seed=0):
  """Serialized SequenceExamples of JPEG frames and their decoded pixels."""
  rng = np.random.default_rng(seed)
  records, pixels = [], []
  for v in range(num_videos):
    frames = rng.integers(0, 255, (num_frames, height, width, 3), np.uint8)
    frames[:, 4:20, 6:24] = 220 - 20 * v
    jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
    records.append(schema.encode_video(f"v{v}", [v % helpers.NUM_CLASSES],
                                       jpegs, height, width))
    pixels.append(np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]))
  return records, np.stack(pixels)


def _example_inputs(cfg, records):
  """Network inputs of serialized videos, by the evaluation input pipeline."""
  fn = pipeline.make_video_fn(cfg.data, training=False, seed=0, epoch=0)
  videos = [fn(r) for r in records]
  return {k: tf.stack([v[k] for v in videos])
          for k in clips.frame_streams(cfg)}


def _pixel_inputs(cfg, pixels):
  """Network inputs of uint8 [B, N, H, W, 3] videos: the evaluation transform.

  Each stream's frames of evaluation sampling of the N given (all N of
  them for the V1 model, which takes T), the crop window of
  ``augment.eval_window`` cut from the decoded pixels (the pipeline crops
  while decoding the JPEG, which differs from decoding and then cropping by
  a few levels at the window's edges).
  """
  d = cfg.data
  n, h, w = pixels.shape[1:4]
  y, x, side, _ = augment.eval_window(h, w, d.eval_resize,
                                      d.frame_size).numpy()
  out = {}
  for key, count in clips.frame_streams(cfg).items():
    idx = sampling.sample_indices(tf.constant(n), count, False,
                                  d.dense_sampling).numpy()
    crop = tf.constant(pixels[:, idx, y:y + side, x:x + side])
    resized = tf.stack([tf.image.resize(v, [d.frame_size] * 2,
                                        antialias=True)
                        for v in tf.unstack(crop)])
    out[key] = augment.normalize(resized, d.mean, d.std)
  return out


_LOADED = {}


def _recognizer(cfg, run, checkpoint, with_policy):
  """The in-process recognizer of a run, restored once per test module."""
  key = (run, checkpoint, with_policy)
  if key not in _LOADED:
    _LOADED[key] = loading.from_checkpoints(
        cfg, checkpoint, final_weights.policy_checkpoint(run) if with_policy
        else None)
  return _LOADED[key]


def _reference(cfg, run, checkpoint, with_policy, inputs):
  """What the in-process recognizer says about normalised ``inputs``."""
  rec = _recognizer(cfg, run, checkpoint, with_policy)
  b = next(iter(inputs.values())).shape[0]
  outputs = rec({**inputs, "seed": tf.zeros([b, 2], tf.int64)})
  step_probs = rec.exit_probs(outputs).numpy()
  boxes = patches.offsets_to_boxes(outputs.offsets, cfg.data.frame_size,
                                   cfg.model.patch_size).numpy()
  return {"step_probs": step_probs, "probabilities": step_probs[:, -1],
          "patch_boxes": boxes}


def _check_outputs(out, ref, class_names, exit_step=None):
  out = {k: np.asarray(v) for k, v in out.items()}
  assert set(out) == set(module_lib.OUTPUTS)
  np.testing.assert_allclose(out["probabilities"], ref["probabilities"],
                             atol=ATOL)
  np.testing.assert_allclose(out["step_probabilities"], ref["step_probs"],
                             atol=ATOL)
  np.testing.assert_allclose(out["patch_boxes"], ref["patch_boxes"],
                             atol=ATOL)
  k = min(module_lib.TOP_K, len(class_names))
  order = np.argsort(-ref["probabilities"], axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(out["top_k_indices"], order)
  np.testing.assert_allclose(out["top_k_probabilities"],
                             np.take_along_axis(ref["probabilities"], order, 1),
                             atol=ATOL)
  names = [[c.decode() if isinstance(c, bytes) else str(c) for c in row]
           for row in out["top_k_classes"]]
  assert names == [[class_names[i] for i in row] for row in order]
  last = ref["step_probs"].shape[1] - 1
  want = np.full(len(order), last) if exit_step is None else exit_step
  np.testing.assert_array_equal(out["exit_step"], want)
  assert out["exit_step"].dtype == np.int32
  assert out["top_k_indices"].dtype == np.int32


@pytest.mark.training
def test_layout_metadata_and_atomic_write(exported, monkeypatch):
  for d, choice in ((exported.policy_dir, "policy"),
                    (exported.centre_dir, "centre")):
    assert sorted(os.listdir(d)) == ["assets", "assets.extra",
                                     "fingerprint.pb", "saved_model.pb",
                                     "variables"]
    # Nothing but the version directory beside it: the temporary is gone.
    assert os.listdir(os.path.dirname(d)) == ["1"]
    meta = export.read_metadata(d)
    assert meta["patches"] == choice
    assert meta["class_names"] == [f"c{i}" for i in range(4)]
    assert (meta["num_frames"], meta["frame_size"], meta["eval_resize"]) == (
        T, 32, 36)
    assert meta["frame_streams"] == {"frames": T} and meta["exit_steps"] == T
    assert meta["early_exit"] is None and meta["gflops_per_video"] > 0
    assert sum(meta["exit_step_macs"]) == pytest.approx(
        meta["gflops_per_video"] * 1e9)
    saved_cfg = config_lib.ExperimentConfig.from_dict(meta["config"])
    assert saved_cfg == exported.cfg
    assert set(meta["signatures"]) == {serving.SERVING_DEFAULT,
                                       serving.EXAMPLE_SIGNATURE}
    assert meta["signatures"][serving.SERVING_DEFAULT]["inputs"] == {
        "frames": ["uint8", [-1, T, -1, -1, 3]]}
  assert export.read_metadata(exported.policy_dir)["policy_glance_shared"]
  model_dir = os.path.dirname(exported.policy_dir)
  assert export.next_version_dir(model_dir) == os.path.join(model_dir, "2")
  with pytest.raises(FileExistsError):
    export.export_run(exported.run, exported.policy_dir)

  # The SavedModel is written beside the version, under a name that is not
  # a version number, and appears under its own name only when complete.
  real_save, seen = tf.saved_model.save, {}

  def spy(obj, path, **kwargs):
    seen.update(path=path, listing=sorted(os.listdir(model_dir)))
    real_save(obj, path, **kwargs)
  monkeypatch.setattr(tf.saved_model, "save", spy)
  export.export_run(exported.run, os.path.join(model_dir, "2"))
  assert os.path.dirname(seen["path"]) == model_dir
  assert not os.path.basename(seen["path"]).isdigit()
  assert "2" not in seen["listing"]
  assert sorted(os.listdir(model_dir)) == ["1", "2"]

  def fail(*args, **kwargs):
    del args, kwargs
    raise RuntimeError("disk full")
  # A failed export leaves neither the version nor its temporary behind.
  monkeypatch.setattr(tf.saved_model, "save", fail)
  with pytest.raises(RuntimeError, match="disk full"):
    export.export_run(exported.run, os.path.join(model_dir, "3"))
  assert sorted(os.listdir(model_dir)) == ["1", "2"]


@pytest.mark.training
def test_export_builds_no_agent_and_no_optimizer(exported, tmp_path,
                                                 monkeypatch):
  built = helpers.forbid_agents_and_optimizers(monkeypatch)
  meta = export.export_run(exported.run, str(tmp_path / "1"))
  assert not built and meta["patches"] == "policy"
  # The trap is armed: building the trainer's agent would have raised.
  with pytest.raises(AssertionError, match="optimizer"):
    tf.keras.optimizers.Adam()


@pytest.mark.training
def test_signatures_match_in_process_model(exported):
  # 12 stored frames of 40x56: TSN centre sampling picks 8, and the crop
  # window (36 of 40, centred) and resize to 32 are exercised.
  records, pixels = _videos(2, 12, 40, 56)
  idx = serving_client.tsn_centre_indices(12, T)
  cfg = exported.cfg
  for d in (exported.policy_dir, exported.centre_dir):
    meta = export.read_metadata(d)
    policy = meta["patches"] == "policy"
    loaded = tf.saved_model.load(d)
    out = loaded.signatures["tf_example"](examples=tf.constant(records))
    ref = _reference(cfg, exported.run, meta["checkpoint"], policy,
                     _example_inputs(cfg, records))
    _check_outputs(out, ref, meta["class_names"])
    out = loaded.signatures["serving_default"](
        frames=tf.constant(pixels[:, idx]))
    ref = _reference(cfg, exported.run, meta["checkpoint"], policy,
                     _pixel_inputs(cfg, pixels[:, idx]))
    _check_outputs(out, ref, meta["class_names"])


@pytest.mark.training
def test_signatures_reject_what_they_would_misread(exported):
  # A loaded signature, like TF Serving, runs the graph on any shape sent:
  # the graph itself must refuse.
  serve = tf.saved_model.load(exported.centre_dir).signatures
  records, pixels = _videos(1, T, 40, 56)
  alpha = np.full(pixels.shape[:-1] + (1,), 255, np.uint8)
  for frames in (np.concatenate([pixels, alpha], -1), pixels[..., :1]):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"frames must be RGB: 3 channels"):
      serve["serving_default"](frames=tf.constant(frames))

  # Frame 5 of 12 is larger than the context's 40x56: its crop window
  # would cut a wrong part of it.
  rng = np.random.default_rng(7)
  jpegs = [tf.io.encode_jpeg(rng.integers(0, 255, (h, w, 3), np.uint8)
                             ).numpy()
           for h, w in [(40, 56)] * 5 + [(48, 64)] + [(40, 56)] * 6]
  big = schema.encode_video("big-frame", [0], jpegs, 40, 56)
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    serve["tf_example"](examples=tf.constant([records[0], big]))
  assert ("[big-frame] [: frame] [5] [is (height, width)] [48 64] "
          "[but the context says] [40 56]") in str(e.value), str(e.value)
  # Well-formed requests are still answered.
  out = serve["tf_example"](examples=tf.constant(records))
  assert out["probabilities"].shape == (1, helpers.NUM_CLASSES)


@pytest.mark.training
def test_policy_keeps_its_own_glance_when_weights_differ(exported):
  # A run whose final glance net differs from the one the policy was
  # trained on: patches from the policy's glance, classes from the final.
  cfg, run = exported.cfg, exported.run
  records, _ = _videos(2, 12, 40, 56, seed=6)
  policy_ckpt = final_weights.policy_checkpoint(run)
  rec = loading.from_checkpoints(cfg,
                                 final_weights.resolve(run).model_checkpoint,
                                 policy_ckpt)
  model = rec.model
  policy_glance = glance_lib.from_config(cfg)
  policy_glance(tf.zeros([1, 32, 32, 3]))
  checkpoints.restore_glance(policy_glance, policy_ckpt)
  for v in model.glance.variables:
    v.assign(v * 1.5)
  module = module_lib.ServingModule(
      loading.build(cfg, model, rec.policy, policy_glance),
      [f"c{i}" for i in range(4)])
  # Saved with the module: what the graph reads.
  saved = {v.ref() for v in module.model_variables + module.policy_variables}
  assert {v.ref() for v in policy_glance.variables} <= saved
  assert {v.ref() for v in rec.policy.variables} <= saved
  out = module.serve_examples(tf.constant(records))
  frames = _example_inputs(cfg, records)["frames"]
  offsets = rec.policy.offsets(adafocus.video_glance(policy_glance,
                                                     frames)[0])
  probs = model.classifier.step_probs(model(frames, offsets)).numpy()[:, -1]
  np.testing.assert_allclose(out["probabilities"], probs, atol=ATOL)
  np.testing.assert_allclose(
      out["patch_boxes"],
      patches.offsets_to_boxes(offsets, cfg.data.frame_size,
                               cfg.model.patch_size), atol=ATOL)


_TF1_LOADER = helpers.ISOLATED + """
import numpy as np
import tensorflow as tf
export_dir, inputs, out_path = sys.argv[2:5]
data = np.load(inputs, allow_pickle=True)
out, errors = {}, []
with tf.compat.v1.Session(graph=tf.Graph()) as sess:
  meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)

  def run(name, value):
    sig = meta.signature_def[name]
    (inp,) = sig.inputs.values()
    return sess.run({k: v.name for k, v in sig.outputs.items()},
                    {inp.name: value})

  for k, v in run("serving_default", data["frames"]).items():
    out["frames/" + k] = v
  for k, v in run("tf_example", data["examples"]).items():
    out["examples/" + k] = v
  bad = [("serving_default", data["frames"][0]),        # rank 4
         ("serving_default", data["frames"][:0]),       # empty batch
         ("tf_example", data["examples"][:0]),          # empty batch
         ("tf_example", data["bad_examples"]),          # not a JPEG
         ("tf_example", data["big_examples"])]          # frames too large
  for name, value in bad:
    try:
      run(name, value)
      errors.append("")
    except (tf.errors.OpError, ValueError) as e:
      errors.append(type(e).__name__ + ": " + str(e))
  # The process survived the bad requests and still answers.
  for k, v in run("tf_example", data["examples"]).items():
    out["again/" + k] = v
out["errors"] = np.array(errors, dtype=object)
np.savez(out_path, **out)
"""

def _isolated(code, args, cwd):
  argv, env = helpers.isolated_python(code, args)
  proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def _run_isolated(export_dir, frames, records, tmp_path):
  """The TF1 session loader's outputs and errors for ``export_dir``.

  Args:
    export_dir: the export.
    frames: uint8 [B, N, H, W, 3] for ``serving_default``.
    records: serialized videos of 12 stored 40x56 frames for ``tf_example``.
    tmp_path: a scratch directory.
  """
  bad = schema.encode_video("bad", [0], [b"not a jpeg"] * 3, 40, 56)
  # Frames 6.. of a record larger than its context's size: the crop
  # window would come from the wrong size.
  _, small = _videos(1, 6, 40, 56, seed=8)
  _, large = _videos(1, 6, 48, 64, seed=9)
  big = schema.encode_video(
      "big", [0], [tf.io.encode_jpeg(f).numpy()
                   for f in list(small[0]) + list(large[0])], 40, 56)
  inputs = tmp_path / "inputs.npz"
  np.savez(inputs, frames=frames, examples=np.array(records, dtype=object),
           bad_examples=np.array([bad], dtype=object),
           big_examples=np.array([big], dtype=object))
  out_path = tmp_path / "out.npz"
  _isolated(_TF1_LOADER, [export_dir, str(inputs), str(out_path)],
            cwd=tmp_path)
  out = np.load(out_path, allow_pickle=True)
  errors = list(out["errors"])
  assert all(errors), errors
  assert "empty batch" in errors[1] and "empty batch" in errors[2], errors
  assert errors[3].startswith("InvalidArgumentError"), errors
  assert ("[big] [: frame] [6] [is (height, width)] [48 64] "
          "[but the context says] [40 56]") in errors[4], errors
  return out


@pytest.mark.training
def test_loads_and_runs_without_the_package(exported, tmp_path):
  records, pixels = _videos(2, 12, 40, 56, seed=3)
  small_records, small_pixels = _videos(1, T, 16, 20, seed=4)
  frames = pixels[:, serving_client.tsn_centre_indices(12, T)]
  out = _run_isolated(exported.policy_dir, frames, records, tmp_path)
  meta = export.read_metadata(exported.policy_dir)
  cfg, ckpt = exported.cfg, meta["checkpoint"]
  refs = {"frames": _pixel_inputs(cfg, frames),
          "examples": _example_inputs(cfg, records)}
  refs["again"] = refs["examples"]
  for prefix, ref_inputs in refs.items():
    ref = _reference(cfg, exported.run, ckpt, True, ref_inputs)
    _check_outputs({k: out[f"{prefix}/{k}"] for k in module_lib.OUTPUTS},
                   ref, meta["class_names"])

  # saved_model_cli, the way its docs show it: pixels as a literal, and
  # the examples from a .npy file.
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  examples_npy = tmp_path / "examples.npy"
  np.save(examples_npy, np.array(small_records, dtype=object))
  common = ["run", "--dir", exported.policy_dir, "--tag_set", "serve",
            "--overwrite"]
  _isolated(helpers.ISOLATED_SCRIPT, [cli] + common + [
      "--signature_def", "serving_default", "--outdir", str(tmp_path / "f"),
      "--input_exprs", f"frames={small_pixels.tolist()!r}"], cwd=tmp_path)
  _isolated(helpers.ISOLATED_SCRIPT, [cli] + common + [
      "--signature_def", "tf_example", "--outdir", str(tmp_path / "e"),
      "--inputs", f"examples={examples_npy}"], cwd=tmp_path)
  for sub, ref_inputs in (("f", _pixel_inputs(cfg, small_pixels)),
                          ("e", _example_inputs(cfg, small_records))):
    got = {k: np.load(tmp_path / sub / f"{k}.npy", allow_pickle=True)
           for k in module_lib.OUTPUTS}
    ref = _reference(cfg, exported.run, ckpt, True, ref_inputs)
    _check_outputs(got, ref, meta["class_names"])


@pytest.mark.training
def test_two_stream_export_runs_without_the_package(two_stream, tmp_path):
  cfg, run, d = two_stream.cfg, two_stream.run, two_stream.policy_dir
  meta = export.read_metadata(d)
  assert meta["patches"] == "policy" and meta["model_variant"] == "two_stream"
  assert meta["num_frames"] is None and meta["exit_steps"] == 2
  assert meta["frame_streams"] == {"glance_frames": 4, "focus_frames": 6}
  # Any number of frames per request; one patch per video; two exit steps.
  sig = meta["signatures"][serving.SERVING_DEFAULT]
  assert sig["inputs"] == {"frames": ["uint8", [-1, -1, -1, -1, 3]]}
  assert sig["outputs"]["patch_boxes"] == ["float32", [-1, 1, 4]]
  assert sig["outputs"]["step_probabilities"] == ["float32", [-1, 2, 4]]
  # The client sends all 12 frames; the graph samples the 4 glance and 6
  # focus frames of evaluation from them, as from the records' 12.
  records, pixels = _videos(3, 12, 40, 56, seed=7)
  out = _run_isolated(d, pixels, records, tmp_path)
  refs = {"frames": _pixel_inputs(cfg, pixels),
          "examples": _example_inputs(cfg, records)}
  assert [r.shape[1] for r in refs["frames"].values()] == [4, 6]
  refs["again"] = refs["examples"]
  for prefix, ref_inputs in refs.items():
    ref = _reference(cfg, run, meta["checkpoint"], True, ref_inputs)
    assert ref["step_probs"].shape == (3, 2, 4)
    got = {k: out[f"{prefix}/{k}"] for k in module_lib.OUTPUTS}
    _check_outputs(got, ref, meta["class_names"])
    np.testing.assert_allclose(got["patch_boxes"][:, :, 2:] -
                               got["patch_boxes"][:, :, :2], 8 / 32,
                               atol=ATOL)


@pytest.mark.training
def test_frames_the_graph_refuses(exported, two_stream):
  # TF Serving's C++ runtime feeds tensors without checking them against
  # the signature: the graph itself refuses what it cannot read right.
  frames = np.zeros([1, T, 40, 56, 3], np.uint8)
  rgba = np.zeros([1, T, 40, 56, 4], np.uint8)
  def fn(pixels, cfg):
    # In a graph, as served (eagerly, tf.slice would catch some first).
    return tf.function(lambda x: preprocess.preprocess_frames(x, cfg),
                       autograph=False)(pixels)

  for cfg, bad, message in (
      (exported.cfg, rgba, "3 channels"),
      (exported.cfg, frames[:, :5], f"exactly {T} frames"),
      (two_stream.cfg, rgba[:, :3], "3 channels"),
      (two_stream.cfg, frames[:, :0], "at least one frame"),
      (two_stream.cfg, frames[:, :, :0], "height 0")):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      fn(tf.constant(bad), cfg)
  # Two-stream requests take any number of frames, even one.
  out = fn(tf.constant(frames[:, :1]), two_stream.cfg)
  assert {k: v.shape.as_list() for k, v in out.items()} == {
      "glance_frames": [1, 4, 32, 32, 3], "focus_frames": [1, 6, 32, 32, 3]}


def test_early_exit_rule():
  probs = np.full((3, 4, 2), 0.5, np.float32)
  probs[0, 1] = [0.9, 0.1]   # confident at step 1
  probs[1, 2] = [0.3, 0.7]   # not enough for step 2's threshold
  probs[1, 3] = [0.2, 0.8]
  thresholds = np.array([0.95, 0.85, 0.75, 0.99], np.float32)
  step, at_exit = module_lib.early_exit(tf.constant(probs), thresholds)
  np.testing.assert_array_equal(step.numpy(), [1, 3, 3])
  np.testing.assert_allclose(at_exit.numpy(),
                             [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
  # The same rule as the early-exit module's.
  np.testing.assert_array_equal(
      step.numpy(), exit_rule.exit_steps(probs, thresholds))


def _half_exit_at(step_probs, step):
  """Thresholds [E] letting about half the videos go at ``step``.

  Nobody exits before the last step otherwise (calibration is the
  early-exit module's business). The threshold sits half-way between two
  videos' confidences, so that none sits on it, where float rounding in the
  exported graph could flip its exit.
  """
  conf = step_probs.max(-1)
  thresholds = np.full(step_probs.shape[1], exit_rule.NEVER,
                       np.float32)
  ranked = np.sort(conf[:, step])
  k = len(ranked) // 2
  thresholds[step] = (ranked[k - 1] + ranked[k]) / 2
  return thresholds


@pytest.mark.training
@pytest.mark.parametrize("family", ["one_stream", "two_stream"])
def test_early_exit_export(family, request, tmp_path, monkeypatch):
  exp = request.getfixturevalue(
      "exported" if family == "one_stream" else "two_stream")
  # The V1 model lets videos go after frame 2; the two-stream model after
  # its glance (step 0, the glance's prediction alone).
  step = 2 if family == "one_stream" else 0
  records, _ = _videos(6, 12, 32, 32, seed=5)
  ckpt = final_weights.resolve(exp.run).model_checkpoint
  ref = _reference(exp.cfg, exp.run, ckpt, True,
                   _example_inputs(exp.cfg, records))
  thresholds = _half_exit_at(ref["step_probs"], step)
  monkeypatch.setattr(threshold_file, "load_thresholds",
                      lambda run, weights: thresholds)
  d = str(tmp_path / "1")
  meta = export.export_run(exp.run, d, early_exit_on=True)
  assert meta["checkpoint"] == ckpt
  assert meta["early_exit"]["thresholds"] == pytest.approx(thresholds)
  # The early-exit module's own rule, on the in-process probabilities.
  want = exit_rule.exit_steps(ref["step_probs"], thresholds)
  last = ref["step_probs"].shape[1] - 1
  assert set(want) == {step, last}, want
  ref["probabilities"] = exit_rule.exit_predictions(ref["step_probs"],
                                                    want)
  out = tf.saved_model.load(d).signatures["tf_example"](
      examples=tf.constant(records))
  _check_outputs(out, ref, meta["class_names"], exit_step=want)
  with pytest.raises(ValueError, match="one per exit step"):
    export.export_run(exp.run, str(tmp_path / "2"),
                      thresholds=np.zeros(last + 2, np.float32))


# -- clients -------------------------------------------------------------------
class _Backend:
  """Answers predict and metadata calls from a loaded export."""

  def __init__(self, export_dir):
    self.model = tf.saved_model.load(export_dir)
    from tensorflow.python.saved_model import loader_impl  # pylint: disable=g-import-not-at-top
    graph = loader_impl.parse_saved_model(export_dir).meta_graphs[0]
    self.signature_defs = {
        name: graph.signature_def[name]
        for name in (serving.SERVING_DEFAULT, serving.EXAMPLE_SIGNATURE)}

  def predict(self, signature, value):
    fn = self.model.signatures[signature]
    (name,) = fn.structured_input_signature[1]
    return {k: v.numpy() for k, v in fn(**{name: value}).items()}


def _rest_server(backend, log):
  """A stand-in of TF Serving's REST API on 127.0.0.1 (row format)."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top

  class Handler(http.server.BaseHTTPRequestHandler):

    def _send(self, code, body):
      data = json.dumps(body).encode()
      self.send_response(code)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def do_GET(self):  # pylint: disable=invalid-name
      if self.path != "/v1/models/adafocus/metadata":
        return self._send(404, {"error": "Not found"})
      self._send(200, {
          "model_spec": {"name": "adafocus", "signature_name": "",
                         "version": "1"},
          "metadata": {"signature_def": {"signature_def": {
              name: json_format.MessageToDict(
                  sig, preserving_proto_field_name=True)
              for name, sig in self.server.backend.signature_defs.items()}}}})

    def do_POST(self):  # pylint: disable=invalid-name
      body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
      log.append((self.path, body))
      if self.path != "/v1/models/adafocus:predict":
        return self._send(404, {"error": "Not found"})
      sig = body.get("signature_name", serving.SERVING_DEFAULT)
      instances = body["instances"]
      if sig == serving.EXAMPLE_SIGNATURE:
        value = tf.constant([base64.b64decode(i["b64"]) for i in instances])
      else:
        value = tf.constant(np.asarray(instances, np.uint8))
      try:
        out = self.server.backend.predict(sig, value)
      except (tf.errors.OpError, ValueError, TypeError) as e:
        return self._send(400, {"error": str(e).splitlines()[0]})
      rows = [{k: (v[i].astype(str).tolist() if v.dtype == object
                   else v[i].tolist()) for k, v in out.items()}
              for i in range(len(instances))]
      self._send(200, {"predictions": rows})

    def log_message(self, *args):
      del args

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  server.backend = backend
  server.timeout = 30
  return server


@pytest.fixture(scope="module")
def backend(exported):
  return _Backend(exported.policy_dir)


@pytest.fixture()
def media(tmp_path):
  clip = video_fixtures.write_video(str(tmp_path / "clip.mp4"), 20,
                                    width=56, height=40)
  folder = video_fixtures.write_frame_folder(str(tmp_path / "frames"), 11,
                                             width=44, height=36)
  return clip, folder


def test_rest_request_body_format(media):
  clip, folder = media
  instance, grpc_inputs = serving_client.video_inputs(
      folder, serving_client.EXAMPLE_SIGNATURE, T)
  body = rest_client.predict_body("tf_example", [instance])
  body = json.loads(json.dumps(body))
  assert set(body) == {"signature_name", "instances"}
  assert body["signature_name"] == "tf_example"
  (inst,) = body["instances"]
  assert set(inst) == {"b64"}
  raw = base64.b64decode(inst["b64"])
  assert raw == grpc_inputs["examples"][0]
  v = schema.parse_video(raw)
  assert v["frames"].shape == (T,) and v["labels"].shape == (0,)
  assert (int(v["height"]), int(v["width"]), int(v["num_frames"])) == (
      36, 44, T)
  # The T frames TSN centre sampling picks, in order.
  want = serving_client.tsn_centre_indices(11, T)
  got = video_fixtures.match_frames(list(v["frames"].numpy()))
  assert got == list(want)
  instance, grpc_inputs = serving_client.video_inputs(
      clip, serving.SERVING_DEFAULT, T)
  arr = np.array(instance)
  assert arr.shape == (T, 40, 56, 3) and arr.min() >= 0 and arr.max() <= 255
  np.testing.assert_array_equal(arr, grpc_inputs["frames"][0])
  assert all(isinstance(x, int) for x in instance[0][0][0])
  with pytest.raises(ValueError, match="num_frames"):
    serving_client.video_inputs(clip, serving.SERVING_DEFAULT, None)
  for n, t in ((5, 8), (8, 8), (11, 8), (300, 16), (1, 3)):
    np.testing.assert_array_equal(
        serving_client.tsn_centre_indices(n, t),
        sampling.segment_indices(tf.constant(n), t, training=False).numpy())


@contextlib.contextmanager
def _serving(backend):
  """Runs ``_rest_server`` in a thread; yields (its URL, its request log)."""
  log = []
  server = _rest_server(backend, log)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}", log
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.training
def test_rest_round_trip(backend, media):
  clip, folder = media
  with _serving(backend) as (url, log):
    client = rest_client.RestClient(url, "adafocus", timeout=30)
    assert client.num_frames() == T
    for sig in serving_client.SIGNATURES:
      instance, inputs = serving_client.video_inputs(clip, sig, T)
      (pred,) = client.predict(sig, [instance])
      (name,) = inputs
      want = backend.predict(sig, tf.constant(inputs[name]))
      np.testing.assert_allclose(pred["probabilities"],
                                 want["probabilities"][0], atol=ATOL)
      assert list(pred["top_k_classes"]) == [
          c.decode() for c in want["top_k_classes"][0]]
      assert int(pred["exit_step"]) == T - 1
      assert serving_client.format_prediction("clip", pred).startswith(
          "clip: c")
    path, body = log[-1]
    assert path == "/v1/models/adafocus:predict"
    assert body["signature_name"] == "serving_default"
    # A bad request is an error from the server, and the server goes on.
    bad = serving_client.example_instances([schema.encode_video(
        "bad", [0], [b"junk"], 8, 8)])
    with pytest.raises(serving_client.ServingError, match="HTTP 400"):
      client.predict("tf_example", bad)
    # The command-line client, end to end.
    proc = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "launch",
                                      "serve_client.py"),
         f"--url={url}", "--model=adafocus", "--json", clip, folder],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["video"] for x in lines] == [clip, folder]
    assert all(len(x["patch_boxes"]) == T for x in lines)


@pytest.mark.training
def test_two_stream_client_sends_every_frame(two_stream, media):
  _, folder = media
  cfg, d = two_stream.cfg, two_stream.policy_dir
  ckpt = export.read_metadata(d)["checkpoint"]
  with _serving(_Backend(d)) as (url, _):
    client = rest_client.RestClient(url, "adafocus", timeout=30)
    # The model takes any number of frames: the client sends all 11.
    assert client.num_frames() == serving_client.ALL_FRAMES
    instance, inputs = serving_client.video_inputs(
        folder, serving.SERVING_DEFAULT, client.num_frames())
    assert np.array(instance).shape == (11, 36, 44, 3)
    (pred,) = client.predict(serving.SERVING_DEFAULT, [instance])
    ref = _reference(cfg, two_stream.run, ckpt, True,
                     _pixel_inputs(cfg, inputs["frames"]))
    instance, inputs = serving_client.video_inputs(
        folder, serving.EXAMPLE_SIGNATURE, client.num_frames())
    assert schema.parse_video(inputs["examples"][0])["frames"].shape == (11,)
    (pred_ex,) = client.predict(serving.EXAMPLE_SIGNATURE, [instance])
    # The evaluation transform of the same JPEGs, in process.
    _, _, stored = clips.preprocess(serving_client.read_video(folder), cfg)
    ref_ex = _reference(cfg, two_stream.run, ckpt, True,
                        {k: v[None] for k, v in stored.items()})
  for got, want in ((pred, ref), (pred_ex, ref_ex)):
    np.testing.assert_allclose(got["probabilities"], want["probabilities"][0],
                               atol=ATOL)
    np.testing.assert_allclose(got["patch_boxes"], want["patch_boxes"][0],
                               atol=ATOL)
    assert int(got["exit_step"]) == 1


@pytest.mark.training
def test_grpc_request_and_round_trip(backend, media):
  pytest.importorskip("tensorflow_serving.apis",
                      reason="needs tensorflow-serving-api (the test extra)")
  clip, _ = media
  _, inputs = serving_client.video_inputs(clip, "tf_example", T)
  req = grpc_client.grpc_request("adafocus", "tf_example", inputs,
                                 version=3)
  assert req.model_spec.name == "adafocus"
  assert req.model_spec.signature_name == "tf_example"
  assert req.model_spec.version.value == 3
  assert list(req.inputs) == ["examples"]
  proto = req.inputs["examples"]
  assert proto.dtype == tf.string.as_datatype_enum
  assert [d.size for d in proto.tensor_shape.dim] == [1]
  assert list(proto.string_val) == list(inputs["examples"])
  _, frames = serving_client.video_inputs(clip, "serving_default", T)
  req = grpc_client.grpc_request("adafocus", "serving_default", frames)
  proto = req.inputs["frames"]
  assert not req.model_spec.HasField("version")
  assert proto.dtype == tf.uint8.as_datatype_enum
  assert [d.size for d in proto.tensor_shape.dim] == [1, T, 40, 56, 3]
  np.testing.assert_array_equal(tf.make_ndarray(proto), frames["frames"])

  grpc = pytest.importorskip("grpc")
  from tensorflow_serving.apis import get_model_metadata_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

  class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):

    def Predict(self, request, context):  # pylint: disable=invalid-name
      (name, proto), = request.inputs.items()
      try:
        out = backend.predict(request.model_spec.signature_name,
                              tf.constant(tf.make_ndarray(proto)))
      except (tf.errors.OpError, ValueError) as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e)[:200])
      resp = predict_pb2.PredictResponse()
      for k, v in out.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
      return resp

    def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
      del context
      resp = get_model_metadata_pb2.GetModelMetadataResponse()
      resp.model_spec.name = request.model_spec.name
      defs = get_model_metadata_pb2.SignatureDefMap()
      for name, sig in backend.signature_defs.items():
        defs.signature_def[name].CopyFrom(sig)
      resp.metadata["signature_def"].Pack(defs)
      return resp

  server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      Servicer(), server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  try:
    client = grpc_client.GrpcClient(f"127.0.0.1:{port}", "adafocus",
                                    timeout=30)
    assert client.num_frames() == T
    (pred,) = client.predict("tf_example", inputs)
    want = backend.predict("tf_example", tf.constant(inputs["examples"]))
    np.testing.assert_allclose(pred["probabilities"],
                               want["probabilities"][0], atol=ATOL)
    np.testing.assert_array_equal(pred["patch_boxes"],
                                  want["patch_boxes"][0])
    with pytest.raises(serving_client.ServingError, match="INVALID_ARGUMENT"):
      client.predict("serving_default", {"frames": frames["frames"][:0]})
    client.close()
  finally:
    server.stop(grace=None)

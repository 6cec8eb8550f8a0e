"""The PyTorch checkpoint converter: numerical parity with the reference.

PyTorch cannot be installed beside this project's stack (torch 2.x needs
typing-extensions >= 4.10, tf-agents 0.19 pins 4.5.0), so the reference
side runs in its own interpreter (``conftest.py``): ``torch_reference.py``
(beside this file) builds the reference's modules with the reference's
module names and random weights, saves checkpoints with the reference's key
structure and the outputs of the reference's forward passes.

Each test converts with the real converter (a run directory, read back by
the loaders ``launch/evaluate.py`` uses) and compares at relative error at
most 1e-4 (max |ours - reference| / max |reference|, float32).
"""
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.convert import checkpoint_file
from adafocus_tf.convert import errors
from adafocus_tf.convert import fill
from adafocus_tf.convert import recurrent
from adafocus_tf.convert import reference as reference_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.convert.state import Filler, TensorSource
from adafocus_tf.convert.torch_pickle import CheckpointFormatError
from adafocus_tf.models import adafocus
from adafocus_tf.models import linear_classifier
from adafocus_tf.models import recurrent_classifier
from adafocus_tf.policy import action_space
from adafocus_tf.policy import continuous_actions
from adafocus_tf.policy import discrete_actions
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import networks
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.training.ppo import episodes

RTOL = 1e-4
REPO = helpers.REPO

# The V1 case: real MobileNetV2 and ResNet-50 layouts on small inputs.
V1 = dict(frames=3, frame_size=64, patch=32, classes=helpers.NUM_CLASSES,
          hidden=24, num_actions=49, policy_hidden=20, policy_conv=32)
V1_OVERRIDES = [f"data.num_classes={V1['classes']}",
                f"data.num_frames={V1['frames']}",
                f"data.frame_size={V1['frame_size']}",
                f"data.eval_resize={V1['frame_size']}",
                f"model.glance_size={V1['frame_size']}", "eval_batch_size=4"]
STH = dict(glance_frames=4, focus_frames=4, frame_size=64, patch=32,
           classes=6)
STH_OVERRIDES = [f"data.num_classes={STH['classes']}",
                 f"data.glance_frames={STH['glance_frames']}",
                 f"data.focus_frames={STH['focus_frames']}",
                 f"data.num_frames={STH['glance_frames']}",
                 f"data.frame_size={STH['frame_size']}",
                 f"data.eval_resize={STH['frame_size']}",
                 f"model.glance_size={STH['frame_size']}"]
SPEC = [
    dict(case="v1", name="v1", frames=V1["frames"],
         frame_size=V1["frame_size"], patch=V1["patch"],
         classes=V1["classes"], hidden=V1["hidden"],
         num_actions=V1["num_actions"], policy_hidden=V1["policy_hidden"],
         policy_conv=V1["policy_conv"]),
    dict(case="something", name="sth", **STH),
    dict(case="parts", name="parts"),
    dict(case="reader", name="reader"),
]


def rel_err(ours, ref) -> float:
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-12))


def assert_close(ours, ref, what):
  err = rel_err(ours, ref)
  print(f"{what}: relative error {err:.2e}")   # shown with pytest -s
  assert err <= RTOL, f"{what}: relative error {err:.3g} > {RTOL}"


# -- the PyTorch side -----------------------------------------------------------


@pytest.fixture(scope="session")
def ref(torch_reference, tmp_path_factory):
  """Reference checkpoints and outputs: the spec's cases, made once."""
  out = tmp_path_factory.mktemp("torch_reference")
  torch_reference("torch_reference.py", SPEC, out)
  yield out
  # About 300 MB of checkpoints: not worth keeping among pytest's last runs.
  shutil.rmtree(out, ignore_errors=True)


def _policy_outputs(run, batch):
  """The converted run's policy distribution and values on a batch's glance.

  Args:
    run: the converted run directory.
    batch: ``{"frames": ...}`` or ``{"glance_frames": ...}``.
  """
  recognizer = trained_run.TrainedRun(run).recognizer()
  cfg = recognizer.cfg
  obs = recognizer.glance(batch).policy_maps
  if cfg.model.patch_per_video:
    obs = frame_stack.stack_frames(obs)
  _, actor, critic = networks.from_config(
      cfg.model, tuple(obs.shape[2:]), action_space.from_config(cfg.model))
  tf.train.Checkpoint(actor=actor, critic=critic).restore(
      checkpoints.latest_stage_checkpoint(run, 2)
  ).assert_existing_objects_matched()
  steps = episodes.episode_time_steps(obs)
  b = obs.shape[0]
  dist, _ = actor(steps.observation, steps.step_type,
                  actor.get_initial_state(b))
  values, _ = critic(steps.observation, steps.step_type,
                     critic.get_initial_state(b))
  return dist, values


def outputs(ref_dir, name):
  with np.load(ref_dir / f"{name}.npz") as d:
    return {k: d[k] for k in d.files}


# -- reading checkpoints --------------------------------------------------------


@pytest.mark.parity
def test_reader_matches_torch_load_in_both_formats(ref):
  # The torch side read each file with torch.load(weights_only=True) and
  # with our numpy-only reader and compared both to the tensors it saved.
  report = json.loads((ref / "reader.json").read_text())
  assert report == {"zip/torch": True, "zip/numpy": True,
                    "legacy/torch": True, "legacy/numpy": True}
  expected = outputs(ref, "reader")
  for fmt in ("zip", "legacy"):
    got = checkpoint_file.read(str(ref / f"reader_{fmt}.pth.tar"))
    assert got["epoch"] == 4 and got["name"] == "x"
    for key, value in expected.items():
      np.testing.assert_array_equal(got["state_dict"][key], value)
      assert got["state_dict"][key].dtype == value.dtype, key
    np.testing.assert_array_equal(got["nested"][0], expected["float"])


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
  text = tmp_path / "notes.pth.tar"
  text.write_text("not a checkpoint\n")
  other_zip = tmp_path / "other.pth.tar"
  with zipfile.ZipFile(other_zip, "w") as z:
    z.writestr("readme.txt", "hello")
  empty = tmp_path / "empty.pth.tar"
  empty.write_bytes(b"")
  plain_pickle = tmp_path / "plain.pth.tar"
  plain_pickle.write_bytes(pickle.dumps({"glancer": {}}))
  for path, words in ((text, "not a PyTorch checkpoint"),
                      (other_zip, "no <name>/data.pkl"),
                      (empty, "empty"),
                      (plain_pickle, "not one torch.save wrote")):
    with pytest.raises(CheckpointFormatError, match=words):
      checkpoint_file.read(str(path), reader="numpy")
  with pytest.raises(FileNotFoundError):
    checkpoint_file.read(str(tmp_path / "absent.pth.tar"))


class _Payload:
  """Pickles as a call of os.system: what an unsafe load would run."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_names_code_runs_none_of_it(tmp_path):
  marker = tmp_path / "ran"
  path = tmp_path / "evil.pth.tar"
  # The zip layout torch.save writes, with a payload in data.pkl.
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("evil/data.pkl", pickle.dumps({"glancer": _Payload(marker)},
                                             protocol=2))
  obj = checkpoint_file.read(str(path), reader="numpy")
  assert not marker.exists()
  with pytest.raises(CheckpointFormatError, match="not a state dict"):
    reference_lib.parse(obj, str(path))


# -- parts, tiny ----------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(ref):
  return checkpoint_file.read(str(ref / "parts.pth.tar")), outputs(ref,
                                                                   "parts")


def _classifier(kind, sd, built_with=12):
  clf = (recurrent_classifier.RecurrentClassifier(
      5, sd["gru.weight_hh_l0"].shape[1], 0.5) if kind == "gru" else
         linear_classifier.LinearClassifier(5, 0.5))
  clf(tf.zeros([1, 2, built_with]))
  return clf


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["gru", "linear"])
def test_classifier_logits_match_at_every_step(parts, kind):
  sds, out = parts
  clf = _classifier(kind, sds[kind])
  src, filler = TensorSource(sds[kind], kind), Filler()
  recurrent.fill_classifier(clf, src, filler)
  fill.finish_all([src], filler, clf.weights)
  x = out["features"]
  assert_close(clf(x).numpy(), out[f"{kind}_logits"], f"{kind} logits")
  if kind == "gru":
    # One frame at a time (early exit, the PPO rollout) is the same GRU.
    state = clf.initial_state(x.shape[0])
    for t in range(x.shape[1]):
      logits, state = clf.step(x[:, t], state)
      assert_close(logits.numpy(), out["gru_logits"][:, t], f"step {t}")


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_policy_outputs_and_values_match_at_every_step(parts, kind):
  sds, out = parts
  sd = sds[f"policy_{kind}"]
  maps = out["maps"]                                   # [B, T, h, w, C]
  h, w, c = maps.shape[2:]
  spec = (discrete_actions.DiscreteActions(9).spec if kind == "discrete" else
          continuous_actions.ContinuousActions(0.25).spec)
  actor, critic = networks.build_networks(
      networks.observation_spec((h, w, c)), spec, conv_channels=4, hidden=8,
      batchnorm=kind == "continuous")
  src, filler = TensorSource(sd, kind), Filler()
  fill.fill_policy(actor, critic, src, (c, h, w), filler)
  fill.finish_all([src], filler, fill.unique_variables(actor.variables,
                                                        critic.variables))
  b, t = maps.shape[:2]
  step_types = tf.concat([tf.zeros([b, 1], tf.int32),
                          tf.ones([b, t - 1], tf.int32)], 1)
  dist, _ = actor(maps, step_types, actor.get_initial_state(b))
  values, _ = critic(maps, step_types, critic.get_initial_state(b))
  if kind == "discrete":
    # The reference's actor ends in a softmax; ours emits its logits.
    ours = tf.nn.softmax(dist.logits).numpy()
  else:
    ours = dist.mean().numpy()          # the sigmoid mean of the Gaussian
  assert_close(ours, out[f"policy_{kind}_actor"], f"{kind} actor")
  assert_close(values.numpy(), out[f"policy_{kind}_values"], "values")


# -- errors ---------------------------------------------------------------------


@pytest.mark.parity
def test_a_missing_key_names_the_key_and_the_variable(parts):
  sd = dict(parts[0]["gru"])
  del sd["fc.bias"]
  clf = _classifier("gru", sd)
  with pytest.raises(errors.MissingKeyError) as e:
    recurrent.fill_classifier(clf, TensorSource(sd, "ckpt['fc']"), Filler())
  assert "ckpt['fc']['fc.bias']" in str(e.value)
  assert "classifier/fc/bias" in str(e.value)


@pytest.mark.parity
def test_an_extra_key_is_named(parts):
  sd = dict(parts[0]["gru"], **{"fc.scale": np.ones(5, np.float32)})
  clf = _classifier("gru", sd)
  src, filler = TensorSource(sd, "ckpt['fc']"), Filler()
  recurrent.fill_classifier(clf, src, filler)
  with pytest.raises(errors.UnusedKeyError, match=r"'fc\.scale'"):
    fill.finish_all([src], filler, clf.weights)


@pytest.mark.parity
def test_a_shape_mismatch_names_both_sides(parts):
  sd = parts[0]["linear"]
  clf = _classifier("linear", sd, built_with=7)   # 7 inputs, the file has 12
  with pytest.raises(errors.ShapeMismatchError) as e:
    recurrent.fill_classifier(clf, TensorSource(sd, "ckpt['fc']"), Filler())
  assert "ckpt['fc']['fc.weight']" in str(e.value)
  assert "classifier/fc/kernel" in str(e.value)
  assert "(12, 5)" in str(e.value) and "(7, 5)" in str(e.value)


@pytest.mark.parity
def test_an_unfilled_variable_is_named(parts):
  clf = _classifier("gru", parts[0]["gru"])
  filler = Filler()
  recurrent.fill_gru(clf.gru.cell, TensorSource(parts[0]["gru"], "f"), "gru",
                     filler)
  with pytest.raises(errors.UnfilledVariableError, match="classifier/fc/kernel"):
    filler.check_filled(clf.weights)


def test_classes_that_disagree_with_the_preset_are_refused():
  arch = reference_lib.Architecture(num_classes=239, classifier="gru",
                                    classifier_hidden=1024)
  with pytest.raises(errors.ArchitectureError,
                     match="239 classes.*data.num_classes=200"):
    run_writer.make_config("actnet", 128, arch, False, log=lambda s: None)
  cfg = run_writer.make_config("actnet", 128, arch, False,
                               overrides=["data.num_classes=239"],
                               log=lambda s: None)
  assert cfg.model.glance_backbone == "mobilenet_v2_torch"


# -- the V1 model as a run directory ------------------------------------------


@pytest.fixture(scope="module")
def v1_run(ref, tmp_path_factory):
  """The V1 checkpoint converted by the command line a user runs."""
  run = str(tmp_path_factory.mktemp("v1") / "run")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "convert_checkpoint.py"),
       f"--checkpoint={ref / 'v1.pth.tar'}", "--dataset=actnet",
       f"--patch_size={V1['patch']}", f"--out={run}"]
      + [f"--override={o}" for o in V1_OVERRIDES],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return run, proc.stdout


@pytest.mark.parity
def test_v1_run_directory_has_the_converted_architecture(v1_run):
  run, stdout = v1_run
  assert "stage 2 done" in stdout and run_dir.stage_done(run, 2)
  assert "model.glance_backbone: 'mobilenet_v2' -> 'mobilenet_v2_torch'" in (
      stdout)
  cfg = run_dir.read_config(run)
  m = cfg.model
  assert (m.glance_backbone, m.focus_backbone, m.classifier) == (
      "mobilenet_v2_torch", "resnet50", "gru")
  assert (m.classifier_hidden, m.num_actions, m.policy_hidden,
          m.policy_conv_channels, m.patch_size) == (
              V1["hidden"], V1["num_actions"], V1["policy_hidden"],
              V1["policy_conv"], V1["patch"])


@pytest.mark.parity
def test_v1_model_matches_the_reference(ref, v1_run):
  run, _ = v1_run
  out = outputs(ref, "v1")
  cfg = run_dir.read_config(run)
  model = trained_run.TrainedRun(run, cfg=cfg).recognizer().model   # what evaluate.py loads
  frames, offsets = out["frames"], out["offsets"]
  fmap, pooled = model.glance_features(frames)
  assert_close(fmap.numpy(), out["glance_map"], "glance maps")
  assert_close(pooled.numpy(), out["glance_pooled"], "glance pooled")
  assert_close(model.glance.logits(pooled).numpy(), out["glance_logits"],
               "glance head")
  feats = model.focus_features(frames, offsets)
  assert_close(feats.numpy(), out["focus_features"], "focus features")
  assert_close(model.focus.logits(feats).numpy(), out["focus_logits"],
               "focus head")
  # The whole network for given patch positions: logits at every step.
  assert_close(model(frames, offsets).numpy(), out["logits"], "logits")


@pytest.mark.parity
def test_v1_policy_matches_the_reference(ref, v1_run):
  run, _ = v1_run
  out = outputs(ref, "v1")
  cfg = run_dir.read_config(run)
  frames = out["frames"]
  dist, values = _policy_outputs(run, {"frames": tf.constant(frames)})
  assert_close(tf.nn.softmax(dist.logits).numpy(), out["policy_probs"],
               "action probabilities")
  assert_close(values.numpy(), out["policy_values"], "values")
  # Evaluation (the run as every tool loads it): argmax actions -> the
  # same patches -> the same logits.
  got = trained_run.TrainedRun(run, cfg=cfg).recognizer()({"frames": tf.constant(frames)}, "policy")
  np.testing.assert_array_equal(got.offsets, out["greedy_offsets"])
  assert_close(got.logits.numpy(), out["greedy_logits"],
               "logits with the policy's patches")


@pytest.mark.parity
def test_evaluate_runs_on_the_converted_run(v1_run, tmp_path):
  run, _ = v1_run
  data = helpers.write_dataset(str(tmp_path / "data"), num_train=4,
                               num_val=4, num_frames=V1["frames"],
                               size=V1["frame_size"])
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "evaluate.py"),
       f"--run={run}", f"--data_dir={data}", "--progress=false"],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "val/policy" in proc.stdout


@pytest.mark.parity
def test_v1_backbone_files_make_a_stage0_run(ref, tmp_path):
  run = str(tmp_path / "run")
  path = str(ref / "v1.pth.tar")
  result = run_writer.convert("actnet", V1["patch"], run,
                              glance_checkpoint=path, focus_checkpoint=path,
                              overrides=V1_OVERRIDES, log=lambda s: None)
  assert result["stage"] == 0 and run_dir.stage_done(run, 0)
  out = outputs(ref, "v1")
  model = trained_run.TrainedRun(run).recognizer().model
  fmap, pooled = model.glance_features(out["frames"])
  assert_close(fmap.numpy(), out["glance_map"], "glance maps")
  assert_close(model.glance.logits(pooled).numpy(), out["glance_logits"],
               "glance head")
  feats = model.focus_features(out["frames"], out["offsets"])
  assert_close(model.focus.logits(feats).numpy(), out["focus_logits"],
               "focus head")


# -- Something-Something (TSM) ---------------------------------------------------


def _check_something(model, out, heads_only=False):
  fmap, pooled = model.glance_features(out["glance_frames"])
  assert_close(fmap.numpy(), out["glance_map"], "glance maps")
  assert_close(pooled.numpy(), out["glance_pooled"], "glance pooled")
  assert_close(model.glance.logits(pooled).numpy(), out["glance_logits"],
               "glance head")
  feats = adafocus.video_focus(model.focus, out["focus_frames"],
                               out["offsets"], STH["patch"])
  assert_close(feats.numpy(), out["focus_features"], "focus features")
  assert_close(model.focus.logits(feats).numpy(), out["focus_logits"],
               "focus head")
  if not heads_only:
    logits = model(out["glance_frames"], out["focus_frames"], out["offsets"])
    assert_close(logits.numpy()[:, 0], out["logits"], "logits")


@pytest.mark.parity
def test_something_model_and_policy_match_the_reference(ref, tmp_path,
                                                        monkeypatch):
  run = str(tmp_path / "run")
  with monkeypatch.context() as patched:
    # Converting (and loading the result) builds no PPO agent and no
    # optimiser.
    built = helpers.forbid_agents_and_optimizers(patched)
    result = run_writer.convert("sthv1", STH["patch"], run,
                                checkpoint=str(ref / "sth.pth.tar"),
                                overrides=STH_OVERRIDES, log=lambda s: None)
    trained_run.TrainedRun(run).recognizer()
  assert result["stage"] == 2 and not built
  cfg = run_dir.read_config(run)
  assert cfg.model.temporal_shift and cfg.model.classifier == "logit_mean"
  assert (cfg.model.policy, cfg.model.policy_batchnorm,
          cfg.model.policy_conv_channels) == ("continuous", True, 64)
  out = outputs(ref, "sth")
  _check_something(trained_run.TrainedRun(run, cfg=cfg).recognizer().model, out)
  # One step per video: the glance maps of all frames stacked on channels.
  dist, values = _policy_outputs(
      run, {"glance_frames": tf.constant(out["glance_frames"])})
  assert_close(dist.mean().numpy(), out["policy_mean"], "policy mean")
  assert_close(values.numpy(), out["policy_values"], "values")
  got = trained_run.TrainedRun(run, cfg=cfg).recognizer()(
      {"glance_frames": tf.constant(out["glance_frames"]),
       "focus_frames": tf.constant(out["focus_frames"])}, "policy")
  np.testing.assert_array_equal(got.offsets, out["greedy_offsets"])
  assert_close(got.logits.numpy()[:, 0], out["greedy_logits"],
               "logits with the policy's patch")


@pytest.mark.parity
def test_tsm_backbone_files_make_a_stage0_run(ref, tmp_path):
  run = str(tmp_path / "run")
  run_writer.convert(
      "sthv1", STH["patch"], run,
      glance_checkpoint=str(ref / "sth_tsm_mobilenet_v2.pth.tar"),
      focus_checkpoint=str(ref / "sth_tsm_resnet50.pth.tar"),
      overrides=STH_OVERRIDES, log=lambda s: None)
  model = trained_run.TrainedRun(run).recognizer().model
  _check_something(model, outputs(ref, "sth"))


# -- whole-file errors and the command line ------------------------------------


@pytest.fixture(scope="module")
def v1_checkpoint(ref):
  return reference_lib.load(str(ref / "v1.pth.tar"))


def _convert_edited(monkeypatch, tmp_path, ckpt, entry, edit):
  """Converts the V1 checkpoint with ``edit`` applied to one entry."""
  entries = dict(ckpt.entries)
  entries[entry] = dict(entries[entry])
  edit(entries[entry])
  # The edit would otherwise (rightly) disagree with model_state_dict.
  entries.pop(reference_lib.MODEL_STATE, None)
  edited = reference_lib.Checkpoint(ckpt.path, ckpt.kind, ckpt.family,
                                    entries, ckpt.other)
  monkeypatch.setattr(reference_lib, "load", lambda path: edited)
  run = tmp_path / "run"
  run_writer.convert("actnet", V1["patch"], str(run), checkpoint=ckpt.path,
                     overrides=V1_OVERRIDES, log=lambda s: None)
  return run


@pytest.mark.parity
def test_a_missing_backbone_tensor_stops_the_conversion(
    monkeypatch, tmp_path, v1_checkpoint):
  key = "net.layer4.2.bn3.running_var"
  with pytest.raises(errors.MissingKeyError) as e:
    _convert_edited(monkeypatch, tmp_path, v1_checkpoint, "focuser",
                    lambda sd: sd.pop(key))
  assert f"['focuser']['{key}']" in str(e.value)
  assert "layer4_2_bn3/moving_variance" in str(e.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parity
def test_an_extra_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                              v1_checkpoint):
  key = "net.features.19.0.weight"
  with pytest.raises(errors.UnusedKeyError, match=f"'{key}'"):
    _convert_edited(monkeypatch, tmp_path, v1_checkpoint, "glancer",
                    lambda sd: sd.update({key: np.ones(3, np.float32)}))
  assert not (tmp_path / "run").exists()


@pytest.mark.parity
def test_a_wrong_shape_stops_the_conversion(monkeypatch, tmp_path,
                                            v1_checkpoint):
  key = "net.features.3.conv.1.0.weight"           # a depthwise kernel
  with pytest.raises(errors.ShapeMismatchError) as e:
    _convert_edited(monkeypatch, tmp_path, v1_checkpoint, "glancer",
                    lambda sd: sd.update({key: sd[key][:, :, :2, :]}))
  assert f"['glancer']['{key}']" in str(e.value)
  assert "features_3_conv_1_0/depthwise_kernel" in str(e.value)


@pytest.mark.parity
def test_policy_copies_that_disagree_stop_the_conversion(
    monkeypatch, tmp_path, v1_checkpoint):
  # The reference acts with policy_old; it must equal the saved policy.
  key = "policy.policy_old.actor.0.bias"
  with pytest.raises(errors.ConversionError, match="policy copies disagree"):
    _convert_edited(monkeypatch, tmp_path, v1_checkpoint, "focuser",
                    lambda sd: sd.update({key: sd[key] + 1.0}))


@pytest.mark.parity
def test_ignore_policy_writes_a_stage1_run(monkeypatch, tmp_path,
                                           v1_checkpoint):
  monkeypatch.setattr(reference_lib, "load", lambda path: v1_checkpoint)
  run = str(tmp_path / "run")
  result = run_writer.convert("actnet", V1["patch"], run,
                              checkpoint=v1_checkpoint.path,
                              overrides=V1_OVERRIDES, ignore_policy=True,
                              log=lambda s: None)
  assert result["stage"] == 1
  assert run_dir.stage_done(run, 1) and not run_dir.stage_done(run, 2)


@pytest.mark.parity
def test_a_v1_checkpoint_converted_as_v2_is_refused(ref, tmp_path):
  run = tmp_path / "run"
  path = str(ref / "v1.pth.tar")
  with pytest.raises(errors.ArchitectureError,
                     match=r"v1.pth.tar is an AdaFocus \(V1\) or TSM "
                           r"checkpoint, not a v2 one"):
    run_writer.convert("actnet", V1["patch"], str(run), checkpoint=path,
                       method="v2", log=lambda s: None)
  with pytest.raises(errors.ArchitectureError, match="V2 is converted from"):
    run_writer.convert("actnet", V1["patch"], str(run),
                       glance_checkpoint=path, method="v2",
                       log=lambda s: None)
  assert not run.exists()


@pytest.mark.parity
def test_command_line_reports_errors(ref, tmp_path):
  script = os.path.join(REPO, "launch", "convert_checkpoint.py")
  bad = tmp_path / "bad.pth.tar"
  bad.write_text("hello")
  run = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, script, f"--checkpoint={bad}", "--dataset=actnet",
       "--patch_size=128", f"--out={run}"],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert "not a PyTorch checkpoint" in proc.stderr
  assert not run.exists()
  proc = subprocess.run(
      [sys.executable, script, f"--checkpoint={ref / 'sth.pth.tar'}",
       "--dataset=actnet", "--patch_size=32", f"--out={run}"],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert "Something-Something" in proc.stderr and "sthv1" in proc.stderr

"""Converting official AdaFocusV2 checkpoints: parity with the PyTorch model.

``torch_reference_v2.py`` (run in the torch interpreter, ``conftest.py``)
re-creates the official V2 and V2-TSM models with the official module
names, gives them random weights and batch-norm statistics that make the
policy put patches in different places for every frame and video, saves
the official file layout and the test-mode outputs. The tests convert the
files with the command a user runs, load the run as every tool does
(``TrainedRun.recognizer``), and compare (docs/METHOD.md V2-2 explains the tolerances:
both sides round the sampling coordinates in float32):

  * patch positions a (S - P), before any rounding: within 1e-3 pixel;
  * patches (each side cutting at its own positions): within 5e-4;
  * logits: within 1e-2 of their range, the same top-1 at every step.

Real MobileNetV2 and ResNet-50 layouts at 224 with P = 128; few classes,
frames and policy and classifier units keep the files small.
"""
import os
import shutil
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.convert import errors
from adafocus_tf.convert import reference as reference_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.convert import v2 as v2_lib
from adafocus_tf.models import patches
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

POSITION_TOL_PX = 1e-3
PATCH_TOL = 5e-4
LOGIT_TOL = 1e-2          # of the reference logits' range
MIN_SPREAD_PX = 5
FRAME_SIZE, PATCH = 224, 128
V2 = dict(frames=4, classes=5, policy_hidden=48, mlp_width=96,
          # The coarse-to-fine order of 4 frames: the middle (1), the ends,
          # then the midpoint left (2).
          frame_order=[1, 0, 3, 2])
V2_OVERRIDES = [f"data.num_classes={V2['classes']}",
                f"data.num_frames={V2['frames']}"]
TSM = dict(glance_frames=2, focus_frames=3, classes=5, policy_hidden=[40, 24])
TSM_OVERRIDES = [f"data.num_classes={TSM['classes']}",
                 f"data.glance_frames={TSM['glance_frames']}",
                 f"data.focus_frames={TSM['focus_frames']}",
                 f"data.num_frames={TSM['glance_frames']}"]
SPEC = [dict(case="v2", name="v2", frame_size=FRAME_SIZE, patch=PATCH, **V2),
        dict(case="v2_tsm", name="v2_tsm", frame_size=FRAME_SIZE,
             patch=PATCH, **TSM)]
CONVERT = os.path.join(helpers.REPO, "launch", "convert_checkpoint.py")


@pytest.fixture(scope="module")
def ref_v2(torch_reference, tmp_path_factory):
  """The official-layout files and the official outputs, made once."""
  out = tmp_path_factory.mktemp("torch_reference_v2")
  torch_reference("torch_reference_v2.py", SPEC, out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def outputs(ref_dir, name):
  with np.load(ref_dir / f"{name}.npz") as d:
    return {k: d[k] for k in d.files}


def convert_cli(*args):
  return subprocess.run([sys.executable, CONVERT, *args], capture_output=True,
                        text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def v2_run(ref_v2, tmp_path_factory):
  """The V2 file converted by the command a user runs (no V2 flag)."""
  run = str(tmp_path_factory.mktemp("v2") / "run")
  proc = convert_cli(f"--checkpoint={ref_v2 / 'v2.pth.tar'}",
                     "--dataset=actnet", f"--patch_size={PATCH}",
                     f"--out={run}",
                     *[f"--override={o}" for o in V2_OVERRIDES])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return run, proc.stdout


def assert_positions(ours, ref_offsets):
  err = float(np.max(np.abs(ours - ref_offsets)))
  print(f"positions: {err:.2e} pixel")    # shown with pytest -s
  assert err <= POSITION_TOL_PX


def assert_patches_move(ref_offsets):
  """The random statistics make the policy move patches pixels apart."""
  assert np.ptp(ref_offsets.reshape(-1, 2), axis=0).max() > MIN_SPREAD_PX


def assert_patches(ours, ref_patches):
  err = float(np.max(np.abs(ours - ref_patches)))
  print(f"patches: {err:.2e}")
  assert err <= PATCH_TOL


def assert_logits(ours, ref_logits, what):
  err = float(np.max(np.abs(ours - ref_logits)) / np.ptp(ref_logits))
  print(f"{what}: {err:.2e} of the range")
  assert err <= LOGIT_TOL, what
  np.testing.assert_array_equal(ours.argmax(-1), ref_logits.argmax(-1))


# -- V2 (ActivityNet, FCVID, Mini-Kinetics) -------------------------------------


@pytest.mark.parity
def test_v2_file_makes_a_v2_run_with_the_file_s_architecture(ref_v2, v2_run):
  ckpt = reference_lib.load(str(ref_v2 / "v2.pth.tar"))
  assert (ckpt.kind, ckpt.family) == (reference_lib.ADAFOCUS_V2,
                                      reference_lib.V2)
  arch = v2_lib.architecture(ckpt)
  assert (arch.num_classes, arch.glance_backbone, arch.glance_dim,
          arch.map_side, arch.policy_conv_channels, arch.policy_hidden,
          arch.classifier_hidden, arch.num_steps) == (
              V2["classes"], v2_lib.MOBILENET, 1280, 7, 64,
              V2["policy_hidden"], V2["mlp_width"], V2["frames"])
  run, stdout = v2_run
  assert "stage 1 done" in stdout and run_dir.stage_done(run, 1)
  assert "model.policy_hidden: 2048 -> 48" in stdout
  m = run_dir.read_config(run).model
  assert (m.variant, m.glance_backbone, m.focus_backbone, m.policy_hidden,
          m.classifier_hidden, m.policy_conv_channels, m.patch_size,
          m.frame_order) == (
              "v2", "mobilenet_v2_torch", "resnet50",
              V2["policy_hidden"], V2["mlp_width"], 64, PATCH,
              "coarse_to_fine")


@pytest.mark.parity
def test_v2_run_matches_the_official_model(ref_v2, v2_run):
  out = outputs(ref_v2, "v2")
  recognizer = trained_run.TrainedRun(v2_run[0]).recognizer()     # what every tool loads
  model = recognizer.model
  np.testing.assert_array_equal(model.order, out["order"])
  frames = tf.constant(out["frames"])          # chronological
  got = recognizer({"frames": frames}, "policy")
  # Per-step outputs are in reading order, offsets chronological.
  offsets = model.in_reading_order(got.offsets).numpy()
  assert_patches_move(out["offsets"])
  assert_positions(offsets, out["offsets"])
  ours = patches.extract_patches(model.in_reading_order(frames),
                                 tf.constant(offsets), PATCH)
  assert_patches(ours.numpy().reshape(out["patches"].shape), out["patches"])
  assert_logits(got.logits.numpy(), out["logits"], "step logits")
  maps, pooled = model.glance_features(frames)
  assert_logits(maps.numpy(), out["glance_map"], "glance maps")
  assert_logits(model.glance.logits(pooled).numpy(), out["glance_logits"],
                "glance head")
  # Frame by frame (early exit) is the same model.
  state = recognizer.initial_state(frames.shape[0])
  for e in range(V2["frames"]):
    _, offset, state = recognizer.step(recognizer.step_inputs(
        {"frames": frames}, e), state, e)
    assert_positions(offset.numpy()[:, 0], out["offsets"][:, e])


# -- V2-TSM (Something-Something, Jester) ---------------------------------------


@pytest.mark.parity
def test_v2_tsm_run_matches_the_official_model(ref_v2, tmp_path):
  run = str(tmp_path / "run")
  result = run_writer.convert("sthv1", PATCH, run,
                              checkpoint=str(ref_v2 / "v2_tsm.pth.tar"),
                              overrides=TSM_OVERRIDES, log=lambda s: None)
  assert result["stage"] == 1
  m = run_dir.read_config(run).model
  assert (m.variant, m.temporal_shift, m.policy_mlp) == (
      "v2_tsm", True, tuple(TSM["policy_hidden"]))
  out = outputs(ref_v2, "v2_tsm")
  # The model as every tool loads it, run part by part.
  model = trained_run.TrainedRun(run).recognizer().model
  glance = tf.constant(out["glance_frames"])
  focus = tf.constant(out["focus_frames"])
  maps, pooled = model.glance_features(glance)
  offsets = model.policy_offsets(maps)                   # [B, 1, 2]
  assert_patches_move(out["offsets"])
  assert_positions(offsets.numpy()[:, 0], out["offsets"])
  ours = patches.extract_patches(focus, offsets, PATCH)
  assert_patches(ours.numpy().reshape(out["patches"].shape), out["patches"])
  glance_head, glance_aux = model.glance_means(pooled)
  focus_head, focus_aux = model.focus_means(focus, offsets)
  assert_logits(model.combine(glance_head, focus_head).numpy()[:, 0],
                out["logits"], "prediction")
  assert_logits(glance_aux.numpy(), out["glance_aux_logits"].mean(1),
                "glance new_new_fc")
  assert_logits(focus_aux.numpy(), out["focus_aux_logits"].mean(1),
                "focus new_new_fc")


# -- bad input -----------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_checkpoint(ref_v2):
  return reference_lib.load(str(ref_v2 / "v2.pth.tar"))


def _convert_edited(monkeypatch, tmp_path, ckpt, edit):
  """Converts the V2 file with ``edit`` applied to its state dict."""
  sd = dict(ckpt.entries["state_dict"])
  edit(sd)
  edited = reference_lib.Checkpoint(ckpt.path, ckpt.kind, ckpt.family,
                                    {"state_dict": sd}, ckpt.other)
  monkeypatch.setattr(reference_lib, "load", lambda path: edited)
  run_writer.convert("actnet", PATCH, str(tmp_path / "run"),
                     checkpoint=ckpt.path, overrides=V2_OVERRIDES,
                     log=lambda s: None)


@pytest.mark.parity
def test_a_missing_v2_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                 v2_checkpoint):
  key = "policy_stn.encoder.5.running_var"
  with pytest.raises(errors.MissingKeyError) as e:
    _convert_edited(monkeypatch, tmp_path, v2_checkpoint,
                    lambda sd: sd.pop(key))
  assert f"v2.pth.tar['state_dict']['{key}'] is missing" in str(e.value)
  assert "dense_0_bn/moving_variance" in str(e.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parity
def test_an_extra_v2_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                v2_checkpoint):
  key = "policy_stn.fc.1.weight"
  with pytest.raises(errors.UnusedKeyError, match=f"'{key}'"):
    _convert_edited(monkeypatch, tmp_path, v2_checkpoint,
                    lambda sd: sd.update({key: np.ones(2, np.float32)}))
  assert not (tmp_path / "run").exists()


@pytest.mark.parity
def test_a_wrong_v2_shape_stops_the_conversion(monkeypatch, tmp_path,
                                              v2_checkpoint):
  key = "global_CNN.features.5.conv.3.weight"     # a depthwise kernel
  with pytest.raises(errors.ShapeMismatchError) as e:
    _convert_edited(monkeypatch, tmp_path, v2_checkpoint,
                    lambda sd: sd.update({key: sd[key][:, :, :2]}))
  assert f"['state_dict']['{key}']" in str(e.value)
  assert "features_5_conv_1_0/depthwise_kernel" in str(e.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parity
def test_a_v2_file_converted_as_v1_is_refused(ref_v2, tmp_path):
  run = tmp_path / "run"
  proc = convert_cli(f"--checkpoint={ref_v2 / 'v2.pth.tar'}",
                     "--dataset=actnet", f"--patch_size={PATCH}",
                     f"--out={run}", "--method=v1")
  assert proc.returncode == 1
  assert "v2.pth.tar is an AdaFocusV2 (v2) checkpoint, not a v1 one" in (
      proc.stderr)
  assert "nothing was written" in proc.stderr and not run.exists()
  # The V2-TSM file is a Something-Something one.
  with pytest.raises(errors.ArchitectureError, match="sthv1, sthv2 or jester"):
    run_writer.convert("actnet", PATCH, str(run),
                       checkpoint=str(ref_v2 / "v2_tsm.pth.tar"),
                       log=lambda s: None)
  with pytest.raises(errors.ArchitectureError, match="pass it as --checkpoint"):
    run_writer.convert("actnet", PATCH, str(run),
                       glance_checkpoint=str(ref_v2 / "v2.pth.tar"),
                       log=lambda s: None)
  assert not run.exists()


# -- the architecture from the tensors, without PyTorch -------------------------


def _state_dict(glance_keys, glance_dim, map_side, steps=16, classes=200):
  """The tensors ``v2.architecture`` reads, at their official shapes."""
  z = lambda *shape: np.zeros(shape, np.float32)   # pylint: disable=unnecessary-lambda-assignment
  sd = {k: z(1) for k in glance_keys}
  sd.update({"global_CNN_fc.1.weight": z(classes, glance_dim),
             "policy_stn.encoder.0.weight": z(64, glance_dim, 1, 1),
             "policy_stn.encoder.4.weight": z(2048, 64 * map_side ** 2),
             "policy_stn.gru.weight_hh_l0": z(6144, 2048),
             "classifier.mlp.layers.0.weight": z(4096, glance_dim + 2048)})
  sd.update({f"classifier.classifiers.{t}.1.weight": z(classes, 4096)
             for t in range(steps)})
  return reference_lib.Checkpoint("f.pth.tar", reference_lib.ADAFOCUS_V2,
                                  reference_lib.V2, {"state_dict": sd}, [])


def test_official_shapes_give_the_official_v2_configs():
  mn2 = v2_lib.architecture(_state_dict(
      ["global_CNN.features.0.0.weight"], 1280, 7))
  cfg = run_writer.make_v2_config("actnet", 128, mn2, log=lambda s: None)
  preset = config_lib.get_preset("actnet", "v2")
  assert cfg.model == preset.model        # the V2 preset is the official one
  # The "-RN" glance: a ResNet-50 on 96 x 96 frames, a 3 x 3 map.
  rn = v2_lib.architecture(_state_dict(
      ["global_CNN.layer1.0.conv1.weight"], 2048, 3))
  cfg = run_writer.make_v2_config("fcvid", 160, rn,
                                  overrides=["data.num_classes=200"],
                                  log=lambda s: None)
  assert (cfg.model.glance_backbone, cfg.model.glance_size,
          cfg.model.patch_size) == ("resnet50", 96, 160)


def test_v2_tensors_that_disagree_with_the_config_are_refused():
  arch = v2_lib.architecture(_state_dict(
      ["global_CNN.features.0.0.weight"], 1280, 7, steps=8, classes=239))
  with pytest.raises(errors.ArchitectureError,
                     match=r"data.num_classes=239 but the config has "
                           r"data.num_classes=200.*--dataset"):
    run_writer.make_v2_config("actnet", 128, arch, log=lambda s: None)
  with pytest.raises(errors.ArchitectureError,
                     match="data.num_frames=8 but the config has "
                           "data.num_frames=16"):
    run_writer.make_v2_config("fcvid", 128, arch, log=lambda s: None)
  with pytest.raises(errors.ArchitectureError, match="model.glance_size=112"):
    run_writer.make_v2_config("fcvid", 128, arch, overrides=[
        "data.num_frames=8", "model.glance_size=112"], log=lambda s: None)
  # V1's MobileNetV2 layout under V2 keys is not the official V2 glance.
  with pytest.raises(errors.ArchitectureError, match="torchvision"):
    v2_lib.architecture(_state_dict(
        ["global_CNN.features.0.0.weight",
         "global_CNN.features.1.conv.0.0.weight"], 1280, 7))

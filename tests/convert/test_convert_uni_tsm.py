"""Converting official Uni-AdaFocus-TSM checkpoints: parity with the PyTorch
model.

``torch_reference_uni_tsm.py`` (run in the torch interpreter,
``conftest.py``) re-creates the official TSM-family model of
LeapLabTHU/Uni-AdaFocus, folder "Uni-AdaFocus-TSM with Experiments on
Sth-Sth V1&V2 and Jester", ``archs/uni_adafocus_tsm.py`` (``AdaFocus.forward``
in test mode, with the official module names; the ``TSN`` nets of
``ops/models.py``), gives it random weights and batch-norm statistics that
make the selected frames and the region differ from video to video, and
saves the official file layout (``main.py``'s ``save_checkpoint``) and the
test-mode outputs, once in float32 and once in float64 (the same weights
and frames). The tests convert the files with the command a user runs,
load the runs as every tool does (``TrainedRun.recognizer``), and compare,
whole clips and exit by exit (``ops/early_exit_uni_adafocus_tsm.py`` reads
two exits: ``global_avg_logit``, then the prediction
``global_final_logit + local_final_logit``):

  * float64 on both sides (Keras' global policy float64): the same
    selected frames (``policy_sample_indices``), the region
    (``get_patch_grid_scalexy`` of ``spatial_policy``) within 1e-3 pixel,
    both exits' logits within 1e-2 of their range, the same top-1.
  * float32 (the official file as released): the same frames; the region
    and the logits judged against the exact (float64) official model as
    ``test_convert_uni.py`` judges them: ours at most ``FLOAT32_FACTOR``
    times as far from it as the official float32 model is, or within the
    float64 bounds; the same top-1 wherever float32 rounding cannot flip
    it.
  * float32, part by part from the official intermediates: glance maps,
    both glance heads, ``TemporalPolicy``, ``SpatialPolicy``, ``aux_fc`` on
    the region of the maps, ``MCSampleFeature`` on the official draws, the
    patches and the focus net at the official frames and region, each
    within 1e-3 of its range.

The re-creation was checked once against the unmodified official module
(``archs/uni_adafocus_tsm.py`` with ``ops/models.py``,
``ops/temporal_shift.py``, ``archs/mobilenet_v2.py``; torchvision's
ResNet-50 stood in by ``torch_reference.ResNet50``): its state dict loads
strictly, and on the same weights and draws every test- and
training-mode output and ``main.py``'s training loss are bit-identical;
335 of the 342 gradients too, the temporal policy's within 3.5e-7 (the
Monte-Carlo mean is summed in another order).

Real TSM-MobileNetV2 and TSM-ResNet-50 at 224 with P = 96 (the README's
smaller patch; the spatial auxiliary branch samples 3 x 3 map cells); G = 3
glance frames, K = 2 focus frames of N = 6 candidates, few classes and
narrow policies keep the files small. Measured: float64 regions 4e-12
pixel, exit logits 3e-12 of their range (3e-8 exit by exit); float32
regions 2.2e-3 pixel and logits 1.9e-3 of the range from the float64
official model (the official float32 model: 1.6e-3 and 1.1e-3); parts
within 6e-5 of their range.
"""
import functools
import re
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.convert import errors
from adafocus_tf.convert import reference as reference_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.convert import uni_tsm as uni_tsm_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import temporal_objective
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

# The ActivityNet family's tolerances, judgement and comparisons.
import keras_precision
import test_convert_uni as uni_parity
from test_convert_uni import assert_close, assert_regions, convert_cli
from test_convert_uni import parsed
from test_convert_uni import FLOAT32_FACTOR, LOGIT_TOL, MIN_SPREAD_PX
from test_convert_uni import REGION_TOL_PX, STRICT_TOL

pytestmark = pytest.mark.parity

FRAME_SIZE, PATCH = 224, 96
DATASET = "sthv1"
SIZES = dict(glance_segments=3, focus_segments=2, segments=6, classes=5,
             spatial_hidden=16, temporal_hidden=8)
G, K, N = (SIZES[k] for k in ("glance_segments", "focus_segments",
                               "segments"))
OVERRIDES = [f"data.num_classes={SIZES['classes']}",
             f"data.glance_frames={G}", f"data.num_frames={G}",
             f"data.focus_frames={N}", f"uni.focus_frames={K}"]
# Seed 2: the three videos' selected frames and regions all differ.
SPEC = [dict(case="uni_tsm", name=name, seed=2, dtype=dtype,
             frame_size=FRAME_SIZE, patch=PATCH, batch=3, mc_samples=4,
             **SIZES)
        for name, dtype in (("uni_tsm", "float32"), ("uni_tsm_f64",
                                                     "float64"))]
# Exit 0: the glance alone (``global_avg_logit``); exit 1: the prediction.
EXIT_KEYS = ("glance_avg", "logits")


@pytest.fixture(scope="module")
def ref_tsm(torch_reference, tmp_path_factory):
  """The official-layout files and the official outputs, made once."""
  out = tmp_path_factory.mktemp("torch_reference_uni_tsm")
  torch_reference("torch_reference_uni_tsm.py", SPEC, out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def _outputs(ref_dir, name):
  out = uni_parity.load_outputs(ref_dir, name)
  # Both exits' official logits, [B, 2, C] as our recognizer's.
  out["exits"] = np.stack([out[k] for k in EXIT_KEYS], 1)
  return out


@pytest.fixture(scope="module")
def out(ref_tsm):
  return _outputs(ref_tsm, "uni_tsm")


@pytest.fixture(scope="module")
def exact(ref_tsm):
  """The official model in float64."""
  return _outputs(ref_tsm, "uni_tsm_f64")


@pytest.fixture(scope="module")
def tsm_run(ref_tsm, tmp_path_factory):
  """The float32 file converted by the command a user runs (no method
  flag)."""
  run = str(tmp_path_factory.mktemp("uni_tsm") / "run")
  proc = convert_cli(f"--checkpoint={ref_tsm / 'uni_tsm.pth.tar'}",
                     f"--dataset={DATASET}", f"--patch_size={PATCH}",
                     f"--out={run}", *[f"--override={o}" for o in OVERRIDES])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return run, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def recognizer(tsm_run):
  return trained_run.TrainedRun(tsm_run[0]).recognizer()   # as tools load it


def _batch(ref):
  return {"glance_frames": tf.constant(ref["glance_frames"]),
          "focus_frames": tf.constant(ref["focus_frames"])}


def _run_all(recognizer, ref):
  """Whole-clip logits [B, 2, C] and plans, and each exit's logits and
  plan entries."""
  return uni_parity.run_all(recognizer, _batch(ref), 2)


@pytest.fixture(scope="module")
def ours32(recognizer, out):
  return _run_all(recognizer, out)


@pytest.fixture(scope="module")
def ours64(ref_tsm, exact, tmp_path_factory):
  """The float64 file converted and run with Keras' global policy and
  floatx float64 (every layer computes in float64)."""
  run = str(tmp_path_factory.mktemp("uni_tsm_f64") / "run")
  with keras_precision.global_dtype("float64"):
    run_writer.convert(DATASET, PATCH, run,
                       checkpoint=str(ref_tsm / "uni_tsm_f64.pth.tar"),
                       overrides=OVERRIDES, log=lambda s: None)
    return _run_all(trained_run.TrainedRun(run).recognizer(), exact)


def _official_plan(ref):
  """The official frames [B, K] and the video's region repeated, [B, K, 4]."""
  return ref["focus_indices"], np.repeat(ref["regions"][:, None], K, 1)


def assert_plans(plan, ref, what):
  """The same frames; regions within ``REGION_TOL_PX``."""
  indices, regions = _official_plan(ref)
  np.testing.assert_array_equal(focus_plan.indices(plan).numpy(), indices)
  assert_regions(plan[..., 1:], regions, what)


def test_tsm_file_makes_a_uni_tsm_run_with_the_file_s_architecture(
    ref_tsm, tsm_run):
  """The architecture from the tensors (official ``AdaFocus.__init__``:
  ``SpatialPolicy``'s last kernel spans the G glance frames)."""
  ckpt = reference_lib.load(str(ref_tsm / "uni_tsm.pth.tar"))
  assert (ckpt.kind, ckpt.family) == (reference_lib.UNI_ADAFOCUS,
                                      reference_lib.UNI_TSM)
  assert {"epoch", "arch", "optimizer", "best_prec1", "scaler"} <= set(
      ckpt.other)
  arch = uni_tsm_lib.architecture(ckpt)
  assert (arch.num_classes, arch.glance_dim, arch.map_side,
          arch.spatial_hidden, arch.temporal_hidden, arch.glance_frames) == (
              SIZES["classes"], 1280, 7, SIZES["spatial_hidden"],
              SIZES["temporal_hidden"], G)
  run, log = tsm_run
  assert "stage 1 done" in log and run_dir.stage_done(run, 1)
  assert f"uni.focus_frames={K} of data.focus_frames={N} candidates" in log
  cfg = run_dir.read_config(run)
  m, u, d = cfg.model, cfg.uni, cfg.data
  assert (m.variant, m.glance_backbone, m.focus_backbone, m.temporal_shift,
          m.patch_size) == ("uni_tsm", "mobilenet_v2_torch", "resnet50",
                            True, PATCH)
  assert (d.glance_frames, d.focus_frames, u.focus_frames, u.spatial_hidden,
          u.temporal_hidden) == (G, N, K, SIZES["spatial_hidden"],
                                 SIZES["temporal_hidden"])


def test_tsm_run_in_float64_is_the_official_model(ours64, exact):
  """``AdaFocus.forward`` (test mode) in float64 against the float64 run:
  frames of ``policy_sample_indices``, the region of
  ``get_patch_grid_scalexy``, both exits' logits (whole clips and exit by
  exit)."""
  # The random policies move the region, change its size and select
  # other frames from video to video.
  assert np.ptp(exact["regions"], axis=0).min() > MIN_SPREAD_PX
  assert len({tuple(i) for i in exact["focus_indices"]}) == len(
      exact["focus_indices"])
  assert_plans(ours64["plan"], exact, "float64 regions")
  assert_close(ours64["logits"], exact["exits"], "float64 exit logits",
               LOGIT_TOL)
  np.testing.assert_array_equal(ours64["logits"].argmax(-1),
                                exact["exits"].argmax(-1))
  for e, (logits, plan) in enumerate(ours64["exits"]):
    assert_close(logits, exact["exits"][:, e], f"float64 exit {e}",
                 LOGIT_TOL, scale=exact["exits"])
    np.testing.assert_array_equal(logits.argmax(-1),
                                  exact["exits"][:, e].argmax(-1))
    if e:
      assert_plans(plan, exact, f"float64 exit {e} plan")


def test_tsm_run_in_float32_is_as_close_as_the_official_one(ours32, out,
                                                            exact):
  """The released (float32) file's run against the same official model
  in float32 and float64 (module doc), whole clips and exit by exit."""
  plan = ours32["plan"]
  np.testing.assert_array_equal(focus_plan.indices(plan).numpy(),
                                out["focus_indices"])
  np.testing.assert_array_equal(out["focus_indices"], exact["focus_indices"])
  judged = uni_parity._judged  # pylint: disable=protected-access
  judged("float32 regions (pixel)", plan[..., 1:], _official_plan(out)[1],
         _official_plan(exact)[1], REGION_TOL_PX)
  scale = np.ptp(exact["exits"])
  judged("float32 exit logits (of the range)", ours32["logits"],
         out["exits"], exact["exits"], LOGIT_TOL, scale)
  # The same top-1 wherever the official top two are further apart than
  # what the bound above lets ours move.
  top = np.sort(exact["exits"], -1)
  noise = np.max(np.abs(out["exits"] - exact["exits"]), -1)
  clear = (top[..., -1] - top[..., -2]) > 2 * FLOAT32_FACTOR * noise
  same = ours32["logits"].argmax(-1) == exact["exits"].argmax(-1)
  print(f"top-1: the same at {same.sum()} of {same.size} exits, "
        f"{clear.sum()} of which must be")
  assert same[clear].all()
  # Exit by exit is the whole clip's computation.
  for e, (logits, step_plan) in enumerate(ours32["exits"]):
    assert_close(logits, ours32["logits"][:, e],
                 f"float32 exit {e} against the whole clip", STRICT_TOL,
                 scale=exact["exits"])
    if e:
      np.testing.assert_array_equal(step_plan, plan)


def test_tsm_parts_match_the_official_ones(recognizer, out):
  """Part by part in float32 from the official intermediates
  (``AdaFocus.forward``, test mode): the glance ``TSN`` and both its heads,
  ``TemporalPolicy``, ``SpatialPolicy``, ``aux_fc`` on
  ``get_patch_grid_scalexy`` of the maps, ``MCSampleFeature`` on the
  official draws, the focus ``TSN`` at the official frames and region."""
  model = recognizer.model
  batch = _batch(out)
  maps, pooled = model.glance_features(batch["glance_frames"])
  assert_close(maps.numpy(), out["glance_map"], "glance maps")
  head, aux = model.glance_heads(pooled)
  assert_close(head.numpy(), out["glance_final"], "glance new_fc mean")
  assert_close(aux.numpy(), out["glance_aux_logits"], "glance new_new_fc")
  maps, pooled = tf.constant(out["glance_map"]), tf.constant(
      out["glance_pooled"])
  weights = model.temporal_weights(pooled)
  assert_close(weights.numpy(), out["weights"], "temporal weights")
  actions = model.video_actions(maps)
  assert_regions(actions.numpy() * FRAME_SIZE,
                 out["spatial_actions"] * FRAME_SIZE,
                 "spatial actions (x 224)")
  plan = model.plan_of(tf.constant(out["weights"]),
                       tf.constant(out["spatial_actions"])).numpy()
  assert_plans(plan, out, "plan of the official weights and action")
  assert_close(model.spatial_aux_logits(maps, actions).numpy(),
               out["spatial_logits"], "spatial auxiliary logits")
  mc = temporal_objective.mc_logits(tf.constant(out["glance_aux_logits"]),
                                    weights, tf.constant(out["mc_removed"]))
  assert_close(mc.numpy(), out["temporal_logits"], "Monte-Carlo logits")
  official = focus_plan.make(tf.constant(out["focus_indices"]),
                             tf.constant(_official_plan(out)[1]))
  candidates = batch["focus_frames"]
  patches = model.patches(candidates, official).numpy()
  assert_close(patches.reshape(out["patches"].shape), out["patches"],
               "patches at the official region")
  feats = model.focus_features(candidates, official)
  assert_close(feats.numpy(), out["focus_features"], "focus features")
  focus_head, focus_aux = model.focus_heads(feats)
  assert_close(focus_head.numpy(), out["focus_logits"].mean(1),
               "focus new_fc mean")
  assert_close(focus_aux.numpy(), out["focus_avg"], "focus new_new_fc mean")
  logits = model.head_logits(pooled, candidates, official).numpy()
  assert_close(logits, out["exits"], "exit logits at the official plan")
  np.testing.assert_array_equal(logits.argmax(-1), out["exits"].argmax(-1))


# -- bad input -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tsm_checkpoint(ref_tsm):
  return reference_lib.load(str(ref_tsm / "uni_tsm.pth.tar"))


def _convert_edited(monkeypatch, tmp_path, ckpt, edit, dataset=DATASET,
                    overrides=OVERRIDES, **kwargs):
  """Converts the TSM file with ``edit`` applied to its state dict."""
  uni_parity.convert_edited(monkeypatch, tmp_path, ckpt, edit, dataset, PATCH,
                            overrides, **kwargs)


def test_a_missing_tsm_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                   tsm_checkpoint):
  uni_parity.check_missing_tensors(
      functools.partial(_convert_edited, monkeypatch, tmp_path,
                        tsm_checkpoint), tmp_path / "run", "uni_tsm.pth.tar",
      (("spatial_policy.encoder.4.running_var", "bn2/moving_variance"),
       ("global_CNN.new_new_fc.bias", "glance_aux_head/bias")))


def test_an_extra_tsm_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                  tsm_checkpoint):
  # The ImageNet head TSN replaces by a dropout has no place either.
  uni_parity.check_extra_tensor(
      functools.partial(_convert_edited, monkeypatch, tmp_path,
                        tsm_checkpoint), tmp_path / "run",
      "global_CNN.base_model.classifier.weight")


def test_a_wrong_tsm_shape_stops_the_conversion(monkeypatch, tmp_path,
                                                tsm_checkpoint):
  uni_parity.check_wrong_policy_shape(
      functools.partial(_convert_edited, monkeypatch, tmp_path,
                        tsm_checkpoint), tmp_path / "run")
  key = "temporal_policy.Tconv.0.weight"        # reads 1280 channels
  with pytest.raises(errors.ShapeMismatchError, match="reads 640 channels"):
    _convert_edited(monkeypatch, tmp_path, tsm_checkpoint,
                    lambda sd: sd.update({key: sd[key][:, :640]}))
  assert not (tmp_path / "run").exists()


def test_frame_settings_that_do_not_fit_are_refused(monkeypatch, tmp_path,
                                                    tsm_checkpoint):
  """G is in the tensors (the spatial policy's last kernel); K and N are
  the config's and must fit each other; the glance map's side is the
  spatial policy's last kernel's."""
  base = [o for o in OVERRIDES if not o.startswith(
      ("data.glance_frames", "uni.focus_frames", "data.focus_frames"))]
  for overrides, message in (
      (base + ["data.focus_frames=6", "uni.focus_frames=2"],
       f"imply data.glance_frames={G} but the config has "
       "data.glance_frames=8: wrong --dataset, or a custom setting that "
       f"needs --override=data.glance_frames={G}"),
      (base + [f"data.glance_frames={G}", "data.focus_frames=6",
               "uni.focus_frames=7"], "uni.focus_frames"),
      (OVERRIDES + ["model.glance_size=160"],
       "reads a 7x7 glance map but model.glance_size=160 gives 5x5"),
      (OVERRIDES[1:], f"data.num_classes={SIZES['classes']} but")):
    with pytest.raises((errors.ArchitectureError, ValueError),
                       match=re.escape(message)):
      _convert_edited(monkeypatch, tmp_path, tsm_checkpoint, lambda sd: None,
                      overrides=overrides)
    assert not (tmp_path / "run").exists()


def test_a_tsm_file_converted_as_v1_or_v2_or_for_actnet_is_refused(
    ref_tsm, tmp_path):
  """``--method`` of another method, an ActivityNet-family preset, or the
  file as a backbone: each refused before anything is written."""
  run = tmp_path / "run"
  for method in ("v1", "v2"):
    with pytest.raises(errors.ArchitectureError,
                       match=re.escape(
                           "uni_tsm.pth.tar is a Uni-AdaFocus (uni_tsm) "
                           f"checkpoint, not a {method} one: it converts "
                           "with --method=uni")):
      run_writer.convert(DATASET, PATCH, str(run),
                         checkpoint=str(ref_tsm / "uni_tsm.pth.tar"),
                         method=method, log=lambda s: None)
  with pytest.raises(errors.ArchitectureError,
                     match="Uni-AdaFocus-TSM one .uni_tsm. but "
                           "--dataset=actnet is a uni preset: use one of "
                           "jester, sthv1, sthv2"):
    run_writer.convert("actnet", PATCH, str(run),
                       checkpoint=str(ref_tsm / "uni_tsm.pth.tar"),
                       overrides=OVERRIDES, log=lambda s: None)
  with pytest.raises(errors.ArchitectureError, match="pass it as --checkpoint"):
    run_writer.convert(DATASET, PATCH, str(run),
                       glance_checkpoint=str(ref_tsm / "uni_tsm.pth.tar"),
                       log=lambda s: None)
  assert not run.exists()


# -- other files as Uni-AdaFocus-TSM, without PyTorch -------------------------


@pytest.mark.parametrize("keys, family", [
    (["global_CNN.features.0.0.weight", "spatial_policy.encoder.0.weight",
      "classifier.global_mlp.layers.0.weight"], reference_lib.UNI),
    (["global_CNN.base_model.features.0.0.weight", "policy_stn.0.weight"],
     reference_lib.V2_TSM),
    (["global_CNN.features.0.0.weight", "policy_stn.gru.weight_hh_l0"],
     reference_lib.V2)])
def test_other_files_are_not_read_as_uni_tsm(keys, family):
  """The ActivityNet family's, V2-TSM's and V2's files are told apart;
  reading one as Uni-AdaFocus-TSM names what it is."""
  ckpt = parsed(keys)
  assert ckpt.family == family
  with pytest.raises(errors.ArchitectureError,
                     match=f"is a [a-z_0-9]+ \\({family}\\) checkpoint, not a "
                           "Uni-AdaFocus-TSM one"):
    uni_tsm_lib.architecture(ckpt)


def test_a_uni_tsm_file_given_to_the_activitynet_family_is_named():
  from adafocus_tf.convert import uni as uni_lib   # pylint: disable=g-import-not-at-top
  ckpt = parsed(["global_CNN.base_model.features.0.0.weight",
                  "spatial_policy.encoder.0.weight", "aux_fc.weight"])
  assert (ckpt.kind, ckpt.family) == (reference_lib.UNI_ADAFOCUS,
                                      reference_lib.UNI_TSM)
  with pytest.raises(errors.ArchitectureError,
                     match="is a Uni-AdaFocus checkpoint of the uni_tsm "
                           "family, not of the ActivityNet family .*: "
                           "convert/uni_tsm.py reads it"):
    uni_lib.architecture(ckpt)


def test_an_incomplete_uni_tsm_file_is_refused_by_name(monkeypatch,
                                                        tmp_path):
  """Recognised as Uni-AdaFocus-TSM, then refused for what it lacks."""
  ckpt = parsed(["global_CNN.base_model.features.0.0.weight",
                  "local_CNN.base_model.conv1.weight",
                  "spatial_policy.encoder.0.weight", "aux_fc.weight"])
  monkeypatch.setattr(reference_lib, "load", lambda path: ckpt)
  with pytest.raises(errors.MissingKeyError,
                     match=re.escape("f.pth.tar['state_dict']"
                                     "['global_CNN.new_fc.weight'] is "
                                     "missing")):
    run_writer.convert(DATASET, PATCH, str(tmp_path / "run"),
                       checkpoint="f.pth.tar", log=lambda s: None)
  assert not (tmp_path / "run").exists()

"""Converting official Uni-AdaFocus checkpoints: parity with the PyTorch model.

``torch_reference_uni.py`` (run in the torch interpreter, ``conftest.py``),
case ``uni``, re-creates the official ActivityNet-family model of
LeapLabTHU/Uni-AdaFocus, folder "Uni-AdaFocus with Experiments on
ActivityNet, FCVID and Mini-Kinetics", ``models/uni_adafocus.py``
(``AdaFocus.forward`` in test mode, with its official module names), gives
it random weights and batch-norm statistics that make both policies differ
from video to video and frame to frame, and saves the official file layout
(``main.py``'s ``save_checkpoint``: ``epoch``, ``state_dict``,
``optimizer``, ``best_acc1``) and the test-mode outputs, once in float32
and once in float64 (the same weights and frames). The tests convert the
files with the command a user runs, load the runs as every tool does
(``TrainedRun.recognizer``), and compare, whole clips and exit by exit:

  * float64 on both sides (Keras' global policy float64): the same
    computation. The same selected frames, regions within 1e-3 pixel
    (measured 1e-5: the plans are float32), every step's logits within
    1e-2 of their range (measured 2e-5), the same top-1 at every step.
  * float32 (the official file as released): the same frames. The regions
    and logits are judged against the exact (float64) official model, as
    ``test_train_parity.py`` judges float32 steps: ours may be at most
    ``FLOAT32_FACTOR`` times as far from it as the official float32 model
    is. Both sides' float32 glance maps move the random spatial policy's
    regions by a few thousandths of a pixel (official float32: 2.5e-3
    pixel, ours 3.1e-3), and the focus steps' logits, whose patches come
    from those regions, by 5e-3 of their range (official 4.5e-3, ours
    4.6e-3): a fixed 1e-3 pixel would fail the official model itself. The
    same top-1 as the official model wherever float32 rounding of that
    size cannot flip it.
  * float32, part by part from the official intermediates (glance maps,
    actions, regions, patches, features): each part within 1e-3 of its
    range (measured at most 1.2e-4) and regions within 1e-3 pixel
    (measured 2e-6).

Real MobileNetV2 and ResNet-50 layouts at 224 with P = 128; N = 12
candidates, G = 6 glance and K = 4 focus frames, few classes and narrow
policies and classifier keep the files small.
"""
import functools
import os
import re
import shutil
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import keras_precision
from adafocus_tf.convert import errors
from adafocus_tf.convert import reference as reference_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.convert import uni as uni_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import temporal_objective
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.parity

REGION_TOL_PX = 1e-3
LOGIT_TOL = 1e-2          # of the reference logits' range
STRICT_TOL = 1e-3         # of the range, from the official intermediates
# float32 against the float64 official model (module doc).
FLOAT32_FACTOR = 3.0
MIN_SPREAD_PX = 5
FRAME_SIZE, PATCH = 224, 128
UNI = dict(segments=12, glance_segments=6, focus_segments=4, classes=5,
           mlp_width=64, spatial_hidden=32, temporal_hidden=16)
G, K = UNI["glance_segments"], UNI["focus_segments"]
OVERRIDES = [f"data.num_classes={UNI['classes']}",
             f"data.num_frames={UNI['segments']}"]
SPEC = [dict(case="uni", name=name, dtype=dtype, frame_size=FRAME_SIZE,
             patch=PATCH, batch=2, mc_samples=4, **UNI)
        for name, dtype in (("uni", "float32"), ("uni_f64", "float64"))]
CONVERT = os.path.join(helpers.REPO, "launch", "convert_checkpoint.py")


@pytest.fixture(scope="module")
def ref_uni(torch_reference, tmp_path_factory):
  """The official-layout files and the official outputs, made once."""
  out = tmp_path_factory.mktemp("torch_reference_uni")
  torch_reference("torch_reference_uni.py", SPEC, out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def load_outputs(ref_dir, name):
  """The official outputs ``<name>.npz`` of a reference run.

  Args:
    ref_dir: the reference script's output directory.
    name: the case's name.

  Returns:
    {array name: array}.
  """
  with np.load(ref_dir / f"{name}.npz") as d:
    return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def out(ref_uni):
  return load_outputs(ref_uni, "uni")


@pytest.fixture(scope="module")
def exact(ref_uni):
  """The official model in float64."""
  return load_outputs(ref_uni, "uni_f64")


def convert_cli(*args):
  return subprocess.run([sys.executable, CONVERT, *args], capture_output=True,
                        text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def uni_run(ref_uni, tmp_path_factory):
  """The float32 file converted by the command a user runs (no method
  flag)."""
  run = str(tmp_path_factory.mktemp("uni") / "run")
  proc = convert_cli(f"--checkpoint={ref_uni / 'uni.pth.tar'}",
                     "--dataset=actnet", f"--patch_size={PATCH}",
                     f"--out={run}", *[f"--override={o}" for o in OVERRIDES])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return run, proc.stdout


@pytest.fixture(scope="module")
def recognizer(uni_run):
  return trained_run.TrainedRun(uni_run[0]).recognizer()   # as tools load it


def run_all(recognizer, batch, steps):
  """Whole-clip logits and plans, and each exit's logits and plan entries.

  Args:
    recognizer: a converted run's recognizer.
    batch: its frame streams (tensors, the B videos first).
    steps: its exit steps.

  Returns:
    dict: ``logits`` and ``plan`` of the whole clips (the policy's), and
    ``exits``, (logits, plan entries) of each exit step.
  """
  got = recognizer(batch, "policy")
  state = recognizer.initial_state(next(iter(batch.values())).shape[0])
  exits = []
  for e in range(steps):
    logits, plan, state = recognizer.step_logits(
        recognizer.step_inputs(batch, e), state, e)
    exits.append((logits.numpy(), plan.numpy()))
  return dict(logits=got.logits.numpy(), plan=got.offsets.numpy(),
              exits=exits)


def _run_all(recognizer, frames):
  """``run_all`` on the candidate frames, over the K + 1 exits."""
  return run_all(recognizer, {"frames": tf.constant(frames)}, K + 1)


@pytest.fixture(scope="module")
def ours32(recognizer, out):
  return _run_all(recognizer, out["frames"])


@pytest.fixture(scope="module")
def ours64(ref_uni, exact, tmp_path_factory):
  """The float64 file converted and run with Keras' global policy and
  floatx float64 (every layer computes in float64)."""
  run = str(tmp_path_factory.mktemp("uni_f64") / "run")
  with keras_precision.global_dtype("float64"):
    run_writer.convert("actnet", PATCH, run,
                       checkpoint=str(ref_uni / "uni_f64.pth.tar"),
                       overrides=OVERRIDES, log=lambda s: None)
    return _run_all(trained_run.TrainedRun(run).recognizer(),
                    exact["frames"])


def _range_error(ours, theirs, scale):
  return float(np.max(np.abs(ours - theirs)) / np.ptp(scale))


def assert_close(ours, theirs, what, tol=STRICT_TOL, scale=None):
  """Within ``tol`` of the range of ``scale`` (default ``theirs``)."""
  err = _range_error(ours, theirs, theirs if scale is None else scale)
  print(f"{what}: {err:.2e} of the range")     # shown with pytest -s
  assert err <= tol, what


def assert_regions(ours, theirs, what, tol=REGION_TOL_PX):
  err = float(np.max(np.abs(ours - theirs)))
  print(f"{what}: {err:.2e} pixel")
  assert err <= tol, what


def assert_plans(plan, ref, what):
  """The same frames; regions within ``REGION_TOL_PX``."""
  np.testing.assert_array_equal(focus_plan.indices(plan).numpy(),
                                ref["focus_indices"])
  assert_regions(plan[..., 1:], ref["regions"], what)


def test_uni_file_makes_a_uni_run_with_the_file_s_architecture(ref_uni,
                                                                uni_run):
  """The architecture from the tensors (official ``AdaFocus.__init__``:
  ``PoolingClassifier``'s heads give G and K)."""
  ckpt = reference_lib.load(str(ref_uni / "uni.pth.tar"))
  assert (ckpt.kind, ckpt.family) == (reference_lib.UNI_ADAFOCUS,
                                      reference_lib.UNI)
  arch = uni_lib.architecture(ckpt)
  assert (arch.num_classes, arch.glance_dim, arch.map_side,
          arch.spatial_hidden, arch.temporal_hidden, arch.classifier_hidden,
          arch.glance_frames, arch.focus_frames) == (
              UNI["classes"], 1280, 7, UNI["spatial_hidden"],
              UNI["temporal_hidden"], UNI["mlp_width"], G, K)
  run, stdout = uni_run
  assert "stage 1 done" in stdout and run_dir.stage_done(run, 1)
  assert "uni.glance_frames: 16 -> 6" in stdout
  assert "data.num_frames=12: the candidate frames" in stdout
  cfg = run_dir.read_config(run)
  m, u = cfg.model, cfg.uni
  assert (m.variant, m.glance_backbone, m.focus_backbone, m.classifier_hidden,
          m.patch_size, cfg.data.num_frames) == (
              "uni", "mobilenet_v2_torch", "resnet50", UNI["mlp_width"],
              PATCH, UNI["segments"])
  assert (u.glance_frames, u.focus_frames, u.spatial_hidden,
          u.temporal_hidden, u.min_region, u.max_region) == (
              G, K, UNI["spatial_hidden"], UNI["temporal_hidden"], 96, 224)


def test_uni_run_in_float64_is_the_official_model(ours64, exact):
  """``AdaFocus.forward`` (test mode) in float64 against the float64 run:
  frames of ``policy_sample_indices``, regions of
  ``get_patch_grid_scalexy``, the ``PoolingClassifier``'s step logits,
  whole clips and exit by exit (``ops/early_exit_uni_adafocus.py`` reads
  the step logits: exit 0 is glance step G, exit k focus step k)."""
  # The random policies move regions and change their sizes.
  assert np.ptp(exact["regions"].reshape(-1, 4), axis=0).min() > MIN_SPREAD_PX
  assert_plans(ours64["plan"], exact, "float64 regions")
  assert_close(ours64["logits"], exact["logits"], "float64 step logits",
               LOGIT_TOL)
  np.testing.assert_array_equal(ours64["logits"].argmax(-1),
                                exact["logits"].argmax(-1))
  for e, (logits, plan) in enumerate(ours64["exits"]):
    theirs = exact["logits"][:, G - 1 + e]
    assert_close(logits, theirs, f"float64 exit {e}", LOGIT_TOL,
                 scale=exact["logits"])
    np.testing.assert_array_equal(logits.argmax(-1), theirs.argmax(-1))
    if e:
      assert_plans(plan, {k: v[:, e - 1:e] for k, v in exact.items()
                          if k in ("focus_indices", "regions")},
                   f"float64 exit {e} region")


def _judged(what, ours, theirs, exact, bound, scale=1.0):
  """Ours (float32) at most ``FLOAT32_FACTOR`` times as far from the exact
  official value as the official float32 value is, or within ``bound``."""
  err = float(np.max(np.abs(ours - exact))) / scale
  official = float(np.max(np.abs(theirs - exact))) / scale
  print(f"{what}: ours {err:.2e}, official float32 {official:.2e} from the "
        "float64 official model")
  assert err <= max(FLOAT32_FACTOR * official, bound), what
  return max(err, official)


def test_uni_run_in_float32_is_as_close_as_the_official_one(ours32, out,
                                                            exact):
  """The released (float32) file's run against the same official model
  in float32 and float64 (module doc), whole clips and exit by exit."""
  plan = ours32["plan"]
  np.testing.assert_array_equal(focus_plan.indices(plan).numpy(),
                                out["focus_indices"])
  np.testing.assert_array_equal(out["focus_indices"], exact["focus_indices"])
  _judged("float32 regions (pixel)", plan[..., 1:], out["regions"],
          exact["regions"], REGION_TOL_PX)
  scale = np.ptp(exact["logits"])
  _judged("float32 glance steps (of the range)", ours32["logits"][:, :G],
          out["logits"][:, :G], exact["logits"][:, :G], STRICT_TOL, scale)
  _judged("float32 step logits (of the range)", ours32["logits"],
          out["logits"], exact["logits"], LOGIT_TOL, scale)
  # The same top-1 at every step of every video whose official top two
  # are further apart than ``FLOAT32_FACTOR`` times the official float32
  # model's own error there, twice (what the bound above lets ours move).
  top = np.sort(exact["logits"], -1)
  noise = np.max(np.abs(out["logits"] - exact["logits"]), -1)
  clear = (top[..., -1] - top[..., -2]) > 2 * FLOAT32_FACTOR * noise
  same = ours32["logits"].argmax(-1) == exact["logits"].argmax(-1)
  print(f"top-1: the same at {same.sum()} of {same.size} steps, "
        f"{clear.sum()} of which must be")
  assert clear[:, :G].all() and same[clear].all()
  # Exit by exit is the whole clip's computation.
  for e, (logits, step_plan) in enumerate(ours32["exits"]):
    assert_close(logits, ours32["logits"][:, G - 1 + e],
                 f"float32 exit {e} against the whole clip", STRICT_TOL,
                 scale=exact["logits"])
    if e:
      np.testing.assert_array_equal(step_plan[:, 0], plan[:, e - 1])


def test_uni_parts_match_the_official_ones(recognizer, out):
  """Part by part in float32 from the official intermediates
  (``AdaFocus.forward``): glance net and head, ``TemporalPolicy``,
  ``SpatialPolicy`` and its ``F.interpolate`` to the candidates,
  ``aux_fc`` on ``get_patch_grid_scalexy`` of the map, ``MCSampleFeature``
  on the official draws, the focus net on the official regions, the
  ``PoolingClassifier`` on the official features."""
  model = recognizer.model
  frames = tf.constant(out["frames"])
  maps, pooled = model.glance_features(frames)
  assert_close(maps.numpy(), out["glance_map"], "glance maps")
  assert_close(model.glance.logits(pooled).numpy(), out["glance_logits"],
               "glance head")
  maps, pooled = tf.constant(out["glance_map"]), tf.constant(
      out["glance_pooled"])
  weights = model.temporal_policy(pooled)
  assert_close(weights.numpy(), out["weights"], "temporal weights")
  actions = model.frame_actions(maps)
  # Actions in [0, 1] move regions by at most 224 pixels each.
  assert_regions(actions.numpy() * FRAME_SIZE, out["glance_actions"]
                 * FRAME_SIZE, "spatial actions (x 224)")
  plan = model.plan_of(tf.constant(out["weights"]),
                       tf.constant(out["glance_actions"])).numpy()
  assert_plans(plan, out, "regions of the official actions")
  assert_close(model.spatial_aux_logits(maps, actions).numpy(),
               out["spatial_logits"], "spatial auxiliary logits")
  mc = temporal_objective.mc_logits(tf.constant(out["glance_logits"]),
                                    weights, tf.constant(out["mc_removed"]))
  assert_close(mc.numpy(), out["temporal_logits"], "Monte-Carlo logits")
  official = focus_plan.make(tf.constant(out["focus_indices"]),
                             tf.constant(out["regions"]))
  patches = model.patches(frames, official).numpy()
  assert_close(patches.reshape(out["patches"].shape), out["patches"],
               "patches at the official regions")
  feats = model.focus_features(frames, official)
  assert_close(feats.numpy(), out["focus_features"], "focus features")
  assert_close(model.focus.logits(feats).numpy(), out["focus_logits"],
               "focus head")
  logits = model.head_logits(pooled, frames, official).numpy()
  assert_close(logits, out["logits"], "step logits at the official plan")
  np.testing.assert_array_equal(logits.argmax(-1), out["logits"].argmax(-1))


# -- bad input -----------------------------------------------------------------


@pytest.fixture(scope="module")
def uni_checkpoint(ref_uni):
  return reference_lib.load(str(ref_uni / "uni.pth.tar"))


def convert_edited(monkeypatch, tmp_path, ckpt, edit, dataset, patch,
                   overrides, **kwargs):
  """Converts a file with ``edit`` applied to its state dict into
  ``tmp_path / "run"``.

  Args:
    monkeypatch: pytest's, to hand the edited file to the converter.
    tmp_path: where the run goes.
    ckpt: the loaded file.
    edit: changes the state dict (a dict) in place.
    dataset: ``--dataset``.
    patch: ``--patch_size``.
    overrides: ``--override`` values.
    **kwargs: ``run_writer.convert``'s others.
  """
  sd = dict(ckpt.entries["state_dict"])
  edit(sd)
  edited = reference_lib.parse({"state_dict": sd, "epoch": 50}, ckpt.path)
  monkeypatch.setattr(reference_lib, "load", lambda path: edited)
  run_writer.convert(dataset, patch, str(tmp_path / "run"),
                     checkpoint=ckpt.path, overrides=overrides,
                     log=lambda s: None, **kwargs)


def _convert_edited(monkeypatch, tmp_path, ckpt, edit, overrides=OVERRIDES,
                    **kwargs):
  """Converts the Uni file with ``edit`` applied to its state dict."""
  convert_edited(monkeypatch, tmp_path, ckpt, edit, "actnet", PATCH,
                 overrides, **kwargs)


def check_missing_tensors(convert, run, file, keys):
  """Each tensor left out stops the conversion, naming it and its Keras
  variable, and leaves no run.

  Args:
    convert: ``convert(edit)`` converts the file with ``edit`` applied to
      its state dict into ``run``.
    run: the run directory.
    file: the file's name.
    keys: (state dict key, a part of its variable's name) pairs.
  """
  for key, variable in keys:
    with pytest.raises(errors.MissingKeyError) as e:
      convert(lambda sd, key=key: sd.pop(key))
    assert f"{file}['state_dict']['{key}'] is missing" in str(e.value)
    assert variable in str(e.value)
    assert not run.exists()


def check_extra_tensor(convert, run, key):
  """A tensor no variable takes stops the conversion, named, and leaves no
  run.

  Args:
    convert: converts the file with an edit (``check_missing_tensors``).
    run: the run directory.
    key: the added tensor's key.
  """
  with pytest.raises(errors.UnusedKeyError, match=f"'{key}'"):
    convert(lambda sd: sd.update({key: np.ones(2, np.float32)}))
  assert not run.exists()


def check_wrong_policy_shape(convert, run):
  """A spatial policy kernel of another shape stops the conversion, naming
  the tensor and its variable, and leaves no run.

  Args:
    convert: converts the file with an edit (``check_missing_tensors``).
    run: the run directory.
  """
  key = "spatial_policy.encoder.3.weight"       # a 3x3x3 convolution
  with pytest.raises(errors.ShapeMismatchError) as e:
    convert(lambda sd: sd.update({key: sd[key][:, :, :2]}))
  assert f"['state_dict']['{key}']" in str(e.value)
  assert "spatial_policy/conv2/kernel" in str(e.value)
  assert not run.exists()


def test_a_missing_uni_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                  uni_checkpoint):
  check_missing_tensors(
      functools.partial(_convert_edited, monkeypatch, tmp_path,
                        uni_checkpoint), tmp_path / "run", "uni.pth.tar",
      (("spatial_policy.encoder.4.running_var", "bn2/moving_variance"),
       ("temporal_policy.Tconv.3.weight", "temporal_policy/conv2/kernel"),
       ("classifier.local_mlp.layers.1.bias", "focus_bn/beta")))
  # A missing step head changes G: the heads must be numbered 0..G-1.
  with pytest.raises(errors.MissingKeyError, match="global_classifiers"):
    _convert_edited(monkeypatch, tmp_path, uni_checkpoint, lambda sd: sd.pop(
        "classifier.global_classifiers.2.1.weight"))
  assert not (tmp_path / "run").exists()


def test_an_extra_uni_tensor_stops_the_conversion(monkeypatch, tmp_path,
                                                 uni_checkpoint):
  check_extra_tensor(functools.partial(_convert_edited, monkeypatch, tmp_path,
                                       uni_checkpoint), tmp_path / "run",
                     "temporal_policy.Tconv.8.weight")


def test_a_wrong_uni_shape_stops_the_conversion(monkeypatch, tmp_path,
                                               uni_checkpoint):
  check_wrong_policy_shape(
      functools.partial(_convert_edited, monkeypatch, tmp_path,
                        uni_checkpoint), tmp_path / "run")


def test_candidates_that_do_not_fit_the_heads_are_refused(monkeypatch,
                                                          tmp_path,
                                                          uni_checkpoint):
  with pytest.raises(errors.ArchitectureError,
                     match=r"multiple of 6 and at least 4, but the config "
                           r"has data.num_frames=10: --override"):
    _convert_edited(monkeypatch, tmp_path, uni_checkpoint, lambda sd: None,
                    overrides=["data.num_classes=5", "data.num_frames=10"])
  with pytest.raises(errors.ArchitectureError, match="num_classes=5 but"):
    _convert_edited(monkeypatch, tmp_path, uni_checkpoint, lambda sd: None,
                    overrides=["data.num_frames=12"])
  assert not (tmp_path / "run").exists()


def test_a_uni_file_converted_as_v1_or_v2_is_refused(ref_uni, tmp_path):
  run = tmp_path / "run"
  for method in ("v1", "v2"):
    proc = convert_cli(f"--checkpoint={ref_uni / 'uni.pth.tar'}",
                       "--dataset=actnet", f"--patch_size={PATCH}",
                       f"--out={run}", f"--method={method}",
                       *[f"--override={o}" for o in OVERRIDES])
    assert proc.returncode == 1
    assert (f"uni.pth.tar is a Uni-AdaFocus (uni) checkpoint, not a {method} "
            "one: it converts with --method=uni") in proc.stderr
    assert "nothing was written" in proc.stderr and not run.exists()
  with pytest.raises(errors.ArchitectureError, match="pass it as --checkpoint"):
    run_writer.convert("actnet", PATCH, str(run),
                       glance_checkpoint=str(ref_uni / "uni.pth.tar"),
                       log=lambda s: None)
  with pytest.raises(errors.ArchitectureError,
                     match="--dataset=sthv1 is a uni_tsm preset: use one "
                           "of actnet"):
    run_writer.convert("sthv1", PATCH, str(run),
                       checkpoint=str(ref_uni / "uni.pth.tar"),
                       overrides=OVERRIDES, log=lambda s: None)
  assert not run.exists()


# -- other files as Uni-AdaFocus, without PyTorch ----------------------------


def parsed(keys, path="f.pth.tar"):
  """A parsed file of zero tensors under ``module.<key>``.

  Args:
    keys: the state dict's keys (``module.`` left out).
    path: the file's name, for messages.

  Returns:
    ``reference.parse``'s checkpoint.
  """
  z = np.zeros(1, np.float32)
  return reference_lib.parse({"state_dict": {f"module.{k}": z for k in keys},
                              "epoch": 3}, path)


@pytest.mark.parametrize("keys, what", [
    (["global_CNN.features.0.0.weight", "policy_stn.gru.weight_hh_l0",
      "classifier.mlp.layers.0.weight"], "an AdaFocusV2 (v2) checkpoint"),
    (["global_CNN.base_model.features.0.0.weight", "policy_stn.0.weight"],
     "an AdaFocusV2 (v2_tsm) checkpoint")])
def test_v2_files_converted_as_uni_are_refused(monkeypatch, tmp_path, keys,
                                               what):
  ckpt = parsed(keys)
  assert ckpt.kind == reference_lib.ADAFOCUS_V2
  monkeypatch.setattr(reference_lib, "load", lambda path: ckpt)
  with pytest.raises(errors.ArchitectureError,
                     match=re.escape(f"is {what}, not a uni one: it converts "
                                     "with --method=v2")):
    run_writer.convert("actnet", PATCH, str(tmp_path / "run"),
                       checkpoint="f.pth.tar", method="uni",
                       log=lambda s: None)
  assert not (tmp_path / "run").exists()


def test_a_v1_file_converted_as_uni_is_refused(monkeypatch, tmp_path):
  z = {"weight": np.zeros(1, np.float32)}
  ckpt = reference_lib.parse({"glancer": {"net.features.0.0.weight": z[
      "weight"]}, "focuser": {"net.fc.weight": z["weight"]}, "fc": {}},
                             "v1.pth.tar")
  monkeypatch.setattr(reference_lib, "load", lambda path: ckpt)
  with pytest.raises(errors.ArchitectureError,
                     match="is an AdaFocus \\(V1\\) or TSM checkpoint, not a "
                           "uni one: it converts with --method=v1"):
    run_writer.convert("actnet", PATCH, str(tmp_path / "run"),
                       checkpoint="v1.pth.tar", method="uni",
                       log=lambda s: None)
  assert not (tmp_path / "run").exists()


def test_uni_tsm_files_go_to_the_tsm_family_s_converter(monkeypatch,
                                                        tmp_path):
  """A TSM-family file is read by ``convert/uni_tsm.py``
  (test_convert_uni_tsm.py), which names what this one lacks."""
  ckpt = parsed(["global_CNN.base_model.features.0.0.weight",
                  "spatial_policy.encoder.0.weight", "aux_fc.weight"])
  assert (ckpt.kind, ckpt.family) == (reference_lib.UNI_ADAFOCUS,
                                      reference_lib.UNI_TSM)
  monkeypatch.setattr(reference_lib, "load", lambda path: ckpt)
  with pytest.raises(errors.ArchitectureError,
                     match="has no local_CNN.base_model.conv1 .ResNet-50.: "
                           "not the focus net of an official "
                           "Uni-AdaFocus-TSM checkpoint"):
    run_writer.convert("sthv1", PATCH, str(tmp_path / "run"),
                       checkpoint="f.pth.tar", log=lambda s: None)
  assert not (tmp_path / "run").exists()

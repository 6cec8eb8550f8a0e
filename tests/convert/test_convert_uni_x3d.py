"""Converting official Uni-AdaFocus-X3D checkpoints: parity with the
official model in test mode.

``torch_reference_x3d.py`` case ``uni_x3d`` re-creates LeapLabTHU/
Uni-AdaFocus @ 8846488, "Uni-AdaFocus-X3D with Experiments on
Kinetics-400/archs/uni_adafocus_X3D.py" ``AdaFocus`` (official module
names; ``forward`` in test mode: the glance X3D's ``get_featmap``, the
per-frame ``global_CNN_head``, ``TemporalPolicy``, ``SpatialPolicy`` and
its auxiliary prediction through ``get_patch_grid_scalexy`` on the glance
maps, ``policy_sample_indices`` at u = 0.5, the patches of the selected
candidates, the focus X3D and ``local_CNN_head``) with tiny X3D nets
(``x3d_tiny``) at the official frame, glance and patch sizes (224, 160,
128; 4 glance frames, 4 focus frames of 8 candidates), random weights and
calibrated batch-norm statistics, and saves the official file (``main.py``
``save_checkpoint``: ``state_dict`` with ``module.`` keys). The test
converts it (``adafocus_tf/convert/uni_x3d.py``) into our
``UniAdaFocusX3D`` and compares, in float32: the same selected
candidates; the regions within ``REGION_TOL_PX`` pixels; the prediction
(``global_final_logit + local_final_logit``), the glance-only exit
(``global_avg_logit``), the mean per-frame focus logits and the spatial
auxiliary logits within ``LOGIT_TOL`` of their range (measured at most
5e-7). The same file converted into a run as ``adafocus-convert`` does,
loaded as the tools load runs: the same frames, and the two exits' logits
whole-clip and step by step within ``LOGIT_TOL``. A bad file is refused
with the tensor named, the weights left as they were.
"""
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.convert import checkpoint_file
from adafocus_tf.convert import errors
from adafocus_tf.convert import reference as reference_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.convert import uni_x3d as convert_lib
from adafocus_tf.families import registry
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.parity

REGION_TOL_PX = 1e-3
LOGIT_TOL = 1e-4
CLASSES, CANDIDATES, GLANCE, FOCUS = 5, 8, 4, 4
FRAME, GLANCE_SIZE, PATCH = 224, 160, 128
# x3d_tiny (models/x3d/settings.py) in the official X3D's arguments.
TINY_X3D = dict(dim_c1=4, dim_c5=32, depth_factor=1.0, base_depths=[1, 1, 1, 1])
HIDDEN = 8
SPEC = [dict(case="uni_x3d", name="uni_x3d", batch=2, classes=CLASSES,
             segments=CANDIDATES, glance=GLANCE, focus=FOCUS,
             frame_size=FRAME, glance_size=GLANCE_SIZE, patch=PATCH,
             spatial_hidden=HIDDEN, temporal_hidden=HIDDEN, **TINY_X3D)]
OVERRIDES = dict(data__num_classes=CLASSES, data__focus_frames=CANDIDATES,
                 data__glance_frames=GLANCE, data__num_frames=GLANCE,
                 uni__focus_frames=FOCUS, data__frame_size=FRAME,
                 data__eval_resize=FRAME, model__glance_size=GLANCE_SIZE,
                 model__patch_size=PATCH, uni__min_region=96,
                 uni__max_region=224, uni__spatial_hidden=HIDDEN,
                 uni__temporal_hidden=HIDDEN)
# What a converted ``kinetics`` run needs beyond the file: the classes and
# glance frames (checked against the tensors), the candidates and K.
RUN_OVERRIDES = [f"data.num_classes={CLASSES}",
                 f"data.glance_frames={GLANCE}", f"data.num_frames={GLANCE}",
                 f"data.focus_frames={CANDIDATES}",
                 f"uni.focus_frames={FOCUS}"]


@pytest.fixture(scope="module")
def reference(torch_reference, tmp_path_factory):
  out = tmp_path_factory.mktemp("torch_reference_uni_x3d")
  torch_reference("torch_reference_x3d.py", SPEC, out)
  with np.load(out / "uni_x3d.npz") as d:
    outputs = {k: d[k] for k in d.files}
  checkpoint = checkpoint_file.read(str(out / "uni_x3d.pth.tar"))
  yield outputs, checkpoint, out / "uni_x3d.pth.tar"
  shutil.rmtree(out, ignore_errors=True)


def reference_file(reference):
  return reference[2]


def _model():
  cfg = helpers.tiny_uni_x3d_config(**OVERRIDES)
  model = registry.of(cfg).build_model(cfg)
  model.build_all()
  return model


def _range_error(ours, theirs):
  return float(np.max(np.abs(ours - theirs)) / np.ptp(theirs))


def test_test_mode_outputs_match_the_official_model(reference):
  theirs, checkpoint, _ = reference
  model = _model()
  convert_lib.convert(model, checkpoint, "uni_x3d.pth.tar")
  maps, pooled = model.glance_features(tf.constant(theirs["glance_frames"]))
  plan = model.policy_plan(maps, pooled)
  # The official test mode selects distinct frames per video.
  assert len({tuple(i) for i in theirs["indices"]}) > 1
  np.testing.assert_array_equal(focus_plan.indices(plan), theirs["indices"])
  np.testing.assert_allclose(focus_plan.regions(plan)[:, 0],
                             theirs["regions"], atol=REGION_TOL_PX)
  candidates = tf.constant(theirs["frames"])
  logits = model.head_logits(maps, pooled, candidates, plan).numpy()
  focus_maps = model.focus_features(candidates, plan)
  ours = {"prediction": logits[:, 1], "glance_only": logits[:, 0],
          "focus_frames": model.focus_heads(focus_maps)[1].numpy(),
          "spatial_aux": model.spatial_aux_logits(
              maps, model.video_actions(maps)).numpy()}
  for key, value in ours.items():
    err = _range_error(value, theirs[key])
    print(f"{key}: {err:.2e} of the range")
    assert err <= LOGIT_TOL, key


def test_the_converted_run_recognizes_as_the_official_model(reference,
                                                           tmp_path):
  """The file converted as ``adafocus-convert`` does (``--dataset=kinetics``,
  the frames not in the weights as overrides) and loaded as every tool
  loads a run: whole clips, and the two exits step by step."""
  theirs = reference[0]
  path = str(tmp_path / "uni_x3d.pth.tar")
  shutil.copy(reference_file(reference), path)
  run = str(tmp_path / "run")
  lines = []
  run_writer.convert("kinetics", PATCH, run, checkpoint=path,
                     overrides=RUN_OVERRIDES, log=lines.append)
  assert any("model.focus_backbone: 'x3d_l' -> 'x3d_tiny'" in line
             for line in lines)
  rec = trained_run.TrainedRun(run).recognizer()
  batch = {"glance_frames": tf.constant(theirs["glance_frames"]),
           "focus_frames": tf.constant(theirs["frames"])}
  out = rec(batch)
  np.testing.assert_array_equal(focus_plan.indices(out.offsets),
                                theirs["indices"])
  for i, key in enumerate(("glance_only", "prediction")):
    assert _range_error(out.logits[:, i].numpy(), theirs[key]) <= LOGIT_TOL
  state = rec.initial_state(2)
  for e, key in enumerate(("glance_only", "prediction")):
    logits, _, state = rec.step_logits(rec.step_inputs(batch, e), state, e)
    assert _range_error(logits.numpy(), theirs[key]) <= LOGIT_TOL, e


def test_the_file_is_told_apart_and_needs_an_x3d_preset(reference, tmp_path):
  path = reference_file(reference)
  ckpt = reference_lib.load(str(path))
  assert (ckpt.kind, ckpt.family) == (reference_lib.UNI_ADAFOCUS,
                                      reference_lib.UNI_X3D)
  arch = convert_lib.architecture(ckpt)
  assert (arch.num_classes, arch.glance_frames, arch.map_side,
          arch.glance_backbone, arch.focus_backbone) == (
              CLASSES, GLANCE, 5, "x3d_tiny", "x3d_tiny")
  with pytest.raises(errors.ArchitectureError,
                     match="a Uni-AdaFocus-X3D one .uni_x3d. but "
                           "--dataset=sthv1 is a uni_tsm preset: use one of "
                           "kinetics, synthetic_x3d"):
    run_writer.convert("sthv1", PATCH, str(tmp_path / "run"),
                       checkpoint=str(path), log=lambda s: None)
  with pytest.raises(errors.ArchitectureError,
                     match="data.num_classes=5 but the config has "
                           "data.num_classes=400"):
    run_writer.convert("kinetics", PATCH, str(tmp_path / "run"),
                       checkpoint=str(path), log=lambda s: None)
  assert not (tmp_path / "run").exists()


def test_a_misshapen_head_is_named_and_leaves_the_weights(reference):
  _, checkpoint, _ = reference
  bad = dict(checkpoint, state_dict=dict(checkpoint["state_dict"]))
  key = "module.local_CNN_head.3.weight"
  bad["state_dict"][key] = bad["state_dict"][key][:, :3]
  model = _model()
  before = [v.numpy() for v in model.weights]
  with pytest.raises(errors.ShapeMismatchError,
                     match=r"local_CNN_head\.3\.weight"):
    convert_lib.convert(model, bad, "bad.pth.tar")
  for was, var in zip(before, model.weights):
    np.testing.assert_array_equal(was, var.numpy())
  with pytest.raises(errors.ConversionError, match="no 'state_dict'"):
    convert_lib.convert(model, {"epoch": 3}, "bad.pth.tar")

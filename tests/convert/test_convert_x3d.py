"""Converting official X3D weights: parity with the official network.

``torch_reference_x3d.py`` (run in the torch interpreter, ``conftest.py``)
re-creates LeapLabTHU/Uni-AdaFocus @ 8846488, folder "Uni-AdaFocus-X3D
with Experiments on Kinetics-400", ``archs/x3d_video_model_builder.py``
``X3D`` with the SlowFast modules it builds (official module names, so
SlowFast's state-dict keys), at a tiny width (``DIM_C1`` 4, ``DIM_C5``
16) with the official stage depths 1, 2, 5, 3 (every block kind: the
projection shortcut, blocks with and without squeeze-excitation), random
weights and calibrated random batch-norm statistics. (That re-creation was
checked against the unmodified official modules, imported with stand-ins
for their unrelated dependencies, by ``check_official_x3d.py``: the same
266 state-dict keys and bit-identical float64 outputs.) The tests convert its state dict into
our Keras ``X3D`` (``adafocus_tf/convert/x3d.py``) and compare the
outputs of ``X3D.get_featmap`` in eval mode: the classifier's logits, the
feature maps and their spatial means (per-frame features):

  * float64 on both sides: within ``F64_RTOL`` (1e-9) of the largest
    magnitude;
  * float32 on both sides: within ``F32_RTOL`` (1e-4).

A missing, extra or misshapen tensor stops the conversion with an error
naming it and leaves the model's weights as they were. A Uni-AdaFocus-X3D
model given such files as its nets' weights starts from them.
"""
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.convert import checkpoint_file
from adafocus_tf.convert import errors
from adafocus_tf.convert import x3d as x3d_convert
from adafocus_tf.families import registry
from adafocus_tf.models.x3d import backbone
from adafocus_tf.models.x3d import settings as settings_lib

pytestmark = pytest.mark.parity

F64_RTOL, F32_RTOL = 1e-9, 1e-4
CLASSES, FRAMES, SIZE, BATCH = 5, 4, 64, 2
FACTORS = dict(dim_c1=4, dim_c5=16, depth_factor=1.0)
SETTINGS = settings_lib.X3DSettings(depth_factor=1.0, dim_c1=4, dim_c5=16,
                                    frames=FRAMES, crop_size=SIZE)
# The ``x3d_tiny`` preset's net, at the tiny Uni-AdaFocus-X3D config's
# glance clip (tests/helpers.py ``tiny_uni_x3d_config``).
TINY_PRESET = dict(dim_c1=4, dim_c5=32, depth_factor=1.0,
                   base_depths=[1, 1, 1, 1])
SPEC = [dict(case="x3d", name=name, dtype=dtype, batch=BATCH, frames=FRAMES,
             size=SIZE, num_classes=CLASSES, **FACTORS)
        for name, dtype in (("x3d_f32", "float32"), ("x3d_f64", "float64"))]
SPEC.append(dict(case="x3d", name="x3d_tiny", batch=BATCH, frames=4, size=32,
                 num_classes=helpers.NUM_CLASSES, **TINY_PRESET))


@pytest.fixture(scope="module")
def ref_dir(torch_reference, tmp_path_factory):
  out = tmp_path_factory.mktemp("torch_reference_x3d")
  torch_reference("torch_reference_x3d.py", SPEC, out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def _load(ref, name):
  with np.load(ref / f"{name}.npz") as d:
    outputs = {k: d[k] for k in d.files}
  state = checkpoint_file.read(str(ref / f"{name}.pth"))
  return outputs, state


def _model(dtype="float32"):
  model = backbone.X3D(SETTINGS, CLASSES)
  model(tf.zeros([1, FRAMES, SIZE, SIZE, 3], dtype))
  return model


def _outputs(model, clip):
  maps = model.features(tf.constant(clip))
  return dict(logits=model.head.classify(maps).numpy(), maps=maps.numpy(),
              frame_features=model.frame_features(maps).numpy())


def _assert_close(ours, theirs, rtol):
  for key in ("logits", "maps", "frame_features"):
    err = np.max(np.abs(ours[key] - theirs[key])) / np.max(np.abs(
        theirs[key]))
    print(f"{key}: {err:.2e} relative to the largest magnitude")
    assert err <= rtol, key


def test_float64_parity(ref_dir):
  theirs, state = _load(ref_dir, "x3d_f64")
  saved = (tf.keras.mixed_precision.global_policy(), tf.keras.backend.floatx())
  tf.keras.mixed_precision.set_global_policy("float64")
  tf.keras.backend.set_floatx("float64")
  try:
    model = _model("float64")
    x3d_convert.convert_state_dict(model, state, "x3d_f64.pth")
    ours = _outputs(model, theirs["clip"])
  finally:
    tf.keras.mixed_precision.set_global_policy(saved[0])
    tf.keras.backend.set_floatx(saved[1])
  _assert_close(ours, theirs, F64_RTOL)


def test_float32_parity_and_prefix(ref_dir):
  """float32, and a net under a Uni-AdaFocus checkpoint's prefix."""
  theirs, state = _load(ref_dir, "x3d_f32")
  model = _model()
  prefixed = {x3d_convert.FOCUS_PREFIX + k: v for k, v in state.items()}
  prefixed["aux_head.weight"] = np.zeros([CLASSES, 8], np.float32)
  x3d_convert.convert_state_dict(model, prefixed, "uni.pth",
                                 prefix=x3d_convert.FOCUS_PREFIX)
  _assert_close(_outputs(model, theirs["clip"]), theirs, F32_RTOL)


@pytest.mark.parametrize("edit, error, named", [
    ("drop", errors.MissingKeyError, "s3.pathway0_res1.branch2.b.weight"),
    ("extra", errors.UnusedKeyError, "s3.pathway0_res1.branch2.extra"),
    ("reshape", errors.ShapeMismatchError,
     "s3.pathway0_res1.branch2.b.weight"),
])
def test_bad_state_dict_is_named_and_leaves_weights(ref_dir, edit, error,
                                                    named):
  _, state = _load(ref_dir, "x3d_f32")
  key = "s3.pathway0_res1.branch2.b.weight"
  state = dict(state)
  if edit == "drop":
    del state[key]
  elif edit == "extra":
    state["s3.pathway0_res1.branch2.extra"] = np.zeros([2], np.float32)
  else:
    state[key] = state[key][:, :, :1]
  model = _model()
  before = [v.numpy() for v in model.weights]
  with pytest.raises(error, match=named.replace(".", r"\.")):
    x3d_convert.convert_state_dict(model, state, "x3d.pth")
  for was, var in zip(before, model.weights):
    np.testing.assert_array_equal(was, var.numpy())


def test_uni_x3d_model_starts_from_x3d_files(ref_dir):
  """``model.glance_weights`` / ``focus_weights`` (the official
  ``load_pretrain`` of ``x3d_s.pyth`` / ``x3d_l.pyth``), then the
  per-frame heads from the X3D heads (``share_head_params``)."""
  theirs, _ = _load(ref_dir, "x3d_tiny")
  path = str(ref_dir / "x3d_tiny.pth")
  cfg = helpers.tiny_uni_x3d_config(model__glance_weights=path,
                                    model__focus_weights=path)
  model = registry.of(cfg).build_model(cfg)
  model.build_all()
  for net in (model.glance, model.focus):
    _assert_close(_outputs(net, theirs["clip"]), theirs, F32_RTOL)
  np.testing.assert_array_equal(model.focus_frame_head.lin.kernel,
                                model.focus.head.lin_5.kernel)
  wrong = helpers.tiny_uni_x3d_config(
      model__glance_weights=str(ref_dir / "x3d_f32.pth"))
  with pytest.raises(errors.ConversionError, match="x3d_f32.pth"):
    registry.of(wrong).build_model(wrong).build_all()

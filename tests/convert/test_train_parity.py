"""One AdaFocusV2 and V2-TSM training step against the official one (issue 24).

``torch_train_v2.py`` (run in the torch interpreter) re-creates the official
training step of LeapLabTHU/AdaFocusV2 (its docstring names the official
file and function each part follows): a random V2 model in the official
layout, one batch, the random branch's actions recorded, dropout off, one
SGD step at a given epoch of the cosine schedule; it saves the weights
before and after and every loss term and group gradient norm. Here the
"before" file is converted (the converter a user runs), one step of our
trainer is taken from it (``training.one_step``) with the same batch and
draws, the "after" file is converted too, and the two runs are compared:

  * every loss term and the loss;
  * each variable group's gradient norm (policy, glance, focus,
    classifier);
  * every weight after the step, batch-norm statistics included, and
    every variable's update (after - before).

In float64 on both sides the two steps are the same computation (measured:
terms within 1e-9, gradient norms 4e-9, weights 1e-8, updates 2e-7). In
float32 both sides round differently through deep random-weight networks
whose batch norms see two videos: PyTorch's own float32 step is far from
its float64 one (V2: policy gradient norm 1.2%, focus 3.8%; V2-TSM: policy
25%), so float32 is judged by that yardstick: ours must be about as close
to the float64 official step as PyTorch's float32 step is
(``FLOAT32_FACTOR``).
"""
import dataclasses
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import checkpoints
from adafocus_tf.training import one_step

pytestmark = pytest.mark.parity

PATCH = 128
EPOCH = 3


@dataclasses.dataclass(frozen=True)
class Family:
  """A V2 family's case: its reference case, preset, sizes and overrides."""
  case: str
  dataset: str
  sizes: dict
  overrides: tuple


FAMILIES = {
    "v2": Family("v2_train_step", "actnet",
                 dict(frames=4, classes=5, policy_hidden=48, mlp_width=96,
                      frame_order=[1, 0, 3, 2], batch=2),
                 ("data.num_classes=5", "data.num_frames=4", "model.dropout=0",
                  "model.head_dropout=0")),
    "tsm": Family("v2_tsm_train_step", "sthv1",
                  dict(glance_frames=2, focus_frames=3, classes=5,
                       policy_hidden=[40, 24], batch=2),
                  ("data.num_classes=5", "data.glance_frames=2",
                   "data.focus_frames=3", "data.num_frames=2",
                   "model.head_dropout=0")),
}
# The cases: float64 on both sides (Keras' global policy and floatx float64
# while the files are converted and the step taken), and float32.
DTYPES = {"f64": "float64", "f32": "float32"}
# What float64 must meet, relative: every loss term, each group's gradient
# norm, each group's weights after the step and its update (after -
# before), as norms over the group's variables (batch-norm statistics
# included). Measured, V2 and V2-TSM: terms 1e-9, norms 4e-9, weights 1e-8,
# updates 2e-7.
TOLERANCES = {"terms": 1e-5, "norms": 1e-4, "weights": 1e-5, "updates": 1e-4}
# float32 is judged against the exact (float64) official step: ours may be
# at most this many times as far from it as PyTorch's own float32 step is,
# or within the float64 bounds. On these random-weight networks with two
# videos per batch norm, float32 rounding alone moves the official policy's
# gradient norm by 1.2% (V2) and 25% (V2-TSM, its per-video batch norms of
# two samples): a fixed float32 tolerance would be either meaningless or
# arbitrary.
FLOAT32_FACTOR = 3.0
# Both families in float64; float32 for V2-TSM, the stricter yardstick
# (V2's float32 case met it too, and was left out of the suite for its
# time).
CASES = [f"{family}_f64" for family in FAMILIES] + ["tsm_f32"]


def _stage1(family):
  return config_lib.get_preset(FAMILIES[family].dataset, "v2").stage1


def _spec(name):
  family, dtype = name.split("_")
  s = _stage1(family)
  base = s.backbone_lr
  spec = dict(case=FAMILIES[family].case, name=name, patch=PATCH,
              dtype=DTYPES[dtype], lr=base,
              ratios={"policy": s.policy_lr / base,
                      "glance": s.glance_lr / base,
                      "classifier": s.classifier_lr / base},
              epoch=EPOCH, epochs=s.schedule_epochs or s.epochs,
              momentum=s.momentum, weight_decay=s.weight_decay,
              **FAMILIES[family].sizes)
  if s.grad_clip_norm:
    spec["clip"] = s.grad_clip_norm
  return spec


@pytest.fixture(scope="module")
def reference(torch_reference, tmp_path_factory):
  out = tmp_path_factory.mktemp("torch_train_v2")
  torch_reference("torch_train_v2.py", [_spec(name) for name in CASES], out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def _convert(family, path, out):
  f = FAMILIES[family]
  run_writer.convert(f.dataset, PATCH, out, checkpoint=str(path),
                     overrides=f.overrides)
  return checkpoints.latest_stage_checkpoint(out, 1)


def _model_tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def _batch(family, ref):
  if family == "tsm":
    return {"glance_frames": ref["glance_frames"],
            "focus_frames": ref["focus_frames"], "label": ref["labels"],
            patch_choice.RANDOM_POSITIONS: ref["random_actions"][:, None]}
  order = ref["order"]
  # The official random actions are in reading order; ours chronological.
  positions = np.empty_like(ref["random_actions"])
  positions[:, order] = ref["random_actions"]
  return {"frames": ref["frames"], "label": ref["labels"],
          patch_choice.RANDOM_POSITIONS: positions}


@pytest.fixture(scope="module", params=CASES)
def stepped(request, reference, tmp_path_factory):
  """Ours: the before file converted, one step; theirs: the after file."""
  name = request.param
  family, dtype = name.split("_")
  root = tmp_path_factory.mktemp(f"steps_{name}")
  saved = (tf.keras.mixed_precision.global_policy(), tf.keras.backend.floatx())
  # The policy makes the layers compute in float64, floatx the backbones'
  # inputs (keras.Input) float64.
  tf.keras.mixed_precision.set_global_policy(DTYPES[dtype])
  tf.keras.backend.set_floatx(DTYPES[dtype])
  try:
    before = _convert(family, reference / f"{name}_before.pth.tar",
                      str(root / "before"))
    after = _convert(family, reference / f"{name}_after.pth.tar",
                     str(root / "after"))
    with np.load(reference / f"{name}.npz") as d:
      ref = {k: d[k] for k in d.files}
    exact = None
    if dtype != "f64":
      # The same step in float64 (same seed, weights and batch).
      with np.load(reference / f"{family}_f64.npz") as d:
        exact = {k: d[k] for k in d.files}
      exact["after"] = _model_tensors(_convert(
          family, reference / f"{family}_f64_after.pth.tar",
          str(root / "exact")))
    result = one_step.train_one_step(str(root / "before"), 1,
                                     _batch(family, ref), str(root / "ours"),
                                     epoch=EPOCH)
  finally:
    tf.keras.mixed_precision.set_global_policy(saved[0])
    tf.keras.backend.set_floatx(saved[1])
  return dict(name=dtype, ref=ref, exact=exact, result=result,
              before=_model_tensors(before), theirs=_model_tensors(after),
              ours=_model_tensors(result.checkpoint))


def _check_all(stepped, what, items):
  """Compares every item of one kind.

  float64: each within ``TOLERANCES[what]`` of the official value
  (relative). float32: each at most ``FLOAT32_FACTOR`` times as far from
  the float64 official value as the official float32 step's farthest item
  of this kind is (float32 rounding scatters over the items: one term or
  group may land near the exact value by luck), or within the float64
  bound.

  Args:
    stepped: the case.
    what: a key of ``TOLERANCES``.
    items: (label, ours, the official value in the case's precision, the
      official float64 value or None) for each item.
  """
  bound = TOLERANCES[what]
  if stepped["exact"] is None:
    for label, ours, theirs, _ in items:
      err = _relative(ours, theirs)
      print(f"  {what} {label}: {err:.2e}")
      assert err <= bound, (what, label)
    return
  scale = max(_relative(theirs, exact) for _, _, theirs, exact in items)
  for label, ours, theirs, exact in items:
    err = _relative(ours, exact)
    print(f"  {what} {label}: ours {err:.2e}, official float32 "
          f"{_relative(theirs, exact):.2e} (farthest {scale:.2e}) from the "
          "float64 step")
    assert err <= max(FLOAT32_FACTOR * scale, bound), (what, label)


def _relative(a, b):
  return float(np.linalg.norm(np.subtract(a, b)) / np.linalg.norm(b))


def _exact(stepped, key):
  return None if stepped["exact"] is None else stepped["exact"][key]


def test_loss_terms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  values = dict(result.terms, loss=result.loss)
  keys = {k: "loss" if k == "loss" else f"term_{k}" for k in values}
  _check_all(stepped, "terms",
             [(k, v, ref[keys[k]], _exact(stepped, keys[k]))
              for k, v in values.items()])


def test_group_gradient_norms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  exact = _exact(stepped, "norms")
  _check_all(stepped, "norms",
             [(str(name), result.gradient_norms[str(name)], ref["norms"][i],
               None if exact is None else exact[i])
              for i, name in enumerate(ref["norm_names"])])


def _by_group(tensors):
  """{group: all its variables' values, flattened}; a variable's group is
  the model part its name starts with (model/<group>/...)."""
  groups = {}
  for key in sorted(tensors):
    groups.setdefault(key.split("/")[1], []).append(
        np.ravel(tensors[key]).astype(np.float64))
  return {k: np.concatenate(v) for k, v in groups.items()}


def test_weights_after_the_step_equal_the_official_ones(stepped):
  assert set(stepped["ours"]) == set(stepped["theirs"])
  before, ours, theirs = (_by_group(stepped[k])
                          for k in ("before", "ours", "theirs"))
  exact = (None if stepped["exact"] is None
           else _by_group(stepped["exact"]["after"]))
  _check_all(stepped, "weights",
             [(g, ours[g], theirs[g], None if exact is None else exact[g])
              for g in theirs])
  _check_all(stepped, "updates",
             [(g, ours[g] - before[g], theirs[g] - before[g],
               None if exact is None else exact[g] - before[g])
              for g in theirs])

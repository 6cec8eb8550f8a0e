"""One Uni-AdaFocus training step against the official one (issue 26).

``torch_train_uni.py`` (run in the torch interpreter) re-creates the
official training step of LeapLabTHU/Uni-AdaFocus, folder "Uni-AdaFocus
with Experiments on ActivityNet, FCVID and Mini-Kinetics": ``main.py``'s
``train`` (the loss of both branches, ``zero_grad``, ``backward``,
``step``) and ``adjust_learning_rate`` with ``AdaFocus.get_optim_policies``'
groups, around ``models/uni_adafocus.py``'s ``AdaFocus.forward`` in
training mode (its docstring names each part). It takes a random model in
the official layout, one batch, every random draw given and recorded
(glance frames within their groups, the selection's uniform draws, the
random branch's positions, the Monte-Carlo removals), dropout off, one SGD
step at a given epoch of the cosine schedule, and saves the weights before
and after, every loss term and each group's gradient norm. Here the
"before" file is converted (the converter a user runs), one step of our
trainer is taken from it (``training.one_step``) with the same batch and
draws (``families/uni/loss.py``'s batch keys), the "after" file is
converted too, and the two are compared:

  * every loss term and the loss: ours are per-video means, weighted as
    the official ``(sum of both branches' terms) / 2``;
  * each variable group's gradient norm (policy = both policies, glance =
    glance net, its head and the auxiliary head, focus, classifier);
  * every weight after the step, batch-norm statistics included, and every
    variable's update (after - before), by model part.

In float64 on both sides the two steps are the same computation. In
float32 both sides round differently through deep random-weight networks
whose batch norms see a handful of frames, and the regions move with the
glance maps' rounding (``test_convert_uni.py``), so float32 is judged as
``test_train_parity.py`` judges it: ours must be about as close to the
float64 official step as PyTorch's own float32 step is
(``FLOAT32_FACTOR``).

N = 12 candidates, G = 6 glance frames (T1 = 2 Monte-Carlo rounds), K = 4
focus frames, 2 videos, real MobileNetV2 and ResNet-50 at 224, P = 128.
"""
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.families.uni import loss as uni_loss
from adafocus_tf.runs import checkpoints
from adafocus_tf.training import one_step

import keras_precision

pytestmark = pytest.mark.parity

PATCH = 128
EPOCH = 3
DATASET = "actnet"
SIZES = dict(segments=12, glance_segments=6, focus_segments=4, classes=5,
             mlp_width=64, spatial_hidden=32, temporal_hidden=16, batch=2,
             mc_samples=4)
OVERRIDES = ("data.num_classes=5", "data.num_frames=12", "model.dropout=0",
             "model.head_dropout=0")
# float64 on both sides (Keras' global policy and floatx float64 while the
# files are converted and the step taken), and float32.
DTYPES = {"f64": "float64", "f32": "float32"}
# What float64 must meet, relative (as ``test_train_parity.py``).
TOLERANCES = {"terms": 1e-5, "norms": 1e-4, "weights": 1e-5, "updates": 1e-4}
FLOAT32_FACTOR = 3.0
# Our terms (per-video means) and the official ones they equal.
TERMS = {"glance": "loss_global", "temporal": "loss_temporal",
         "spatial": "loss_spatial", "size": "loss_norm",
         "policy_steps": "loss_cat_1", "policy_focus": "loss_local_1",
         "random_steps": "loss_cat_2", "random_focus": "loss_local_2"}


def _spec(name):
  cfg = config_lib.get_preset(DATASET, "uni")
  s, base = cfg.stage1, cfg.stage1.backbone_lr
  policy = s.policy_lr / base
  return dict(case="uni_train_step", name=name, patch=PATCH,
              dtype=DTYPES[name], lr=base,
              ratios={"temporal": policy, "spatial": policy,
                      "glance": s.glance_lr / base,
                      "classifier": s.classifier_lr / base},
              epoch=EPOCH, epochs=s.schedule_epochs or s.epochs,
              momentum=s.momentum, weight_decay=s.weight_decay,
              norm_ratio=cfg.uni.norm_ratio, kl_ratio=cfg.uni.kl_ratio,
              **SIZES)


@pytest.fixture(scope="module")
def reference(torch_reference, tmp_path_factory):
  out = tmp_path_factory.mktemp("torch_train_uni")
  torch_reference("torch_train_uni.py", [_spec(name) for name in DTYPES],
                  out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def convert_stage_1(path, out, dataset, patch, overrides):
  """Converts an official file into the run ``out``.

  Args:
    path: the file.
    out: the run directory.
    dataset: ``--dataset``.
    patch: ``--patch_size``.
    overrides: ``--override`` values.

  Returns:
    The run's stage-1 checkpoint prefix.
  """
  run_writer.convert(dataset, patch, out, checkpoint=str(path),
                     overrides=overrides, log=lambda s: None)
  return checkpoints.latest_stage_checkpoint(out, 1)


def _convert(path, out):
  return convert_stage_1(path, out, DATASET, PATCH, OVERRIDES)


def _model_tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def _batch(ref, dtype):
  """The official batch and its draws, under our batch keys; the frames
  (float32 values) in the step's precision, as the official step's, so
  that a float64 model cuts its patches in float64."""
  return {"frames": ref["frames"].astype(dtype), "label": ref["labels"],
          uni_loss.RANDOM_POSITIONS: ref["random_positions"],
          uni_loss.GLANCE_DRAWS: ref["glance_draws"],
          uni_loss.FRAME_DRAWS: ref["frame_draws"],
          uni_loss.MC_REMOVED: ref["mc_removed"]}


def _load(path):
  with np.load(path) as d:
    return {k: d[k] for k in d.files}


@pytest.fixture(scope="module", params=list(DTYPES))
def stepped(request, reference, tmp_path_factory):
  """Ours: the before file converted, one step; theirs: the after file."""
  name = request.param
  root = tmp_path_factory.mktemp(f"steps_uni_{name}")
  with keras_precision.global_dtype(DTYPES[name]):
    before = _convert(reference / f"{name}_before.pth.tar",
                      str(root / "before"))
    after = _convert(reference / f"{name}_after.pth.tar", str(root / "after"))
    ref = _load(reference / f"{name}.npz")
    exact = None
    if name != "f64":
      # The same step in float64 (same seed, weights, batch and draws).
      exact = _load(reference / "f64.npz")
      exact["after"] = _model_tensors(_convert(
          reference / "f64_after.pth.tar", str(root / "exact")))
    result = one_step.train_one_step(str(root / "before"), 1,
                                     _batch(ref, DTYPES[name]),
                                     str(root / "ours"), epoch=EPOCH)
  return dict(name=name, ref=ref, exact=exact, result=result,
              before=_model_tensors(before), theirs=_model_tensors(after),
              ours=_model_tensors(result.checkpoint))


def _relative(a, b):
  return float(np.linalg.norm(np.subtract(a, b)) / np.linalg.norm(b))


def _check_all(stepped, what, items):
  """Compares every item of one kind (``test_train_parity._check_all``).

  float64: each within ``TOLERANCES[what]`` of the official value
  (relative). float32: each at most ``FLOAT32_FACTOR`` times as far from
  the float64 official value as the official float32 step's farthest item
  of this kind is, or within the float64 bound.

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


def _exact(stepped, key):
  return None if stepped["exact"] is None else stepped["exact"][key]


def test_the_loss_is_the_official_sum_of_terms(stepped):
  """``main.py``'s ``train``: (both branches' step, focus-head terms, and
  twice the shared glance, temporal and spatial terms) / 2 + norm_ratio x
  the size term (KL_ratio is 0 in every official command)."""
  result = stepped["result"]
  cfg = config_lib.get_preset(DATASET, "uni")
  assert set(result.terms) == set(TERMS)
  assert result.weights == {"glance": 1.0, "temporal": 1.0, "spatial": 1.0,
                            "size": cfg.uni.norm_ratio, "policy_steps": 0.5,
                            "policy_focus": 0.5, "random_steps": 0.5,
                            "random_focus": 0.5}
  assert cfg.uni.kl_ratio == 0.0


def test_loss_terms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  items = [(k, result.terms[k], ref[v], _exact(stepped, v))
           for k, v in TERMS.items()]
  items.append(("loss", result.loss, ref["loss"], _exact(stepped, "loss")))
  _check_all(stepped, "terms", items)


def test_group_gradient_norms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  exact = _exact(stepped, "norms")
  assert sorted(map(str, ref["norm_names"])) == sorted(result.gradient_norms)
  _check_all(stepped, "norms",
             [(str(name), result.gradient_norms[str(name)], ref["norms"][i],
               None if exact is None else exact[i])
              for i, name in enumerate(ref["norm_names"])])


def _by_group(tensors):
  """{part: all its variables' values, flattened}; a variable's part is
  the model attribute its name starts with (model/<part>/...)."""
  groups = {}
  for key in sorted(tensors):
    groups.setdefault(key.split("/")[1], []).append(
        np.ravel(tensors[key]).astype(np.float64))
  return {k: np.concatenate(v) for k, v in groups.items()}


def test_weights_after_the_step_equal_the_official_ones(stepped):
  assert set(stepped["ours"]) == set(stepped["theirs"])
  before, ours, theirs = (_by_group(stepped[k])
                          for k in ("before", "ours", "theirs"))
  assert set(theirs) == {"glance", "focus", "spatial_policy",
                         "temporal_policy", "aux_head", "classifier"}
  exact = (None if stepped["exact"] is None
           else _by_group(stepped["exact"]["after"]))
  _check_all(stepped, "weights",
             [(g, ours[g], theirs[g], None if exact is None else exact[g])
              for g in theirs])
  _check_all(stepped, "updates",
             [(g, ours[g] - before[g], theirs[g] - before[g],
               None if exact is None else exact[g] - before[g])
              for g in theirs])

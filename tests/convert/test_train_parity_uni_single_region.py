"""One training step of each single-region Uni-AdaFocus family against the
official one: Uni-AdaFocus-TSM and Uni-AdaFocus-X3D.

Each family's PyTorch re-creation (run in the torch interpreter)
re-creates the official training step of LeapLabTHU/Uni-AdaFocus @
8846488 in its folder:

  * TSM, ``torch_train_uni_tsm.py`` (folder "Uni-AdaFocus-TSM with
    Experiments on Sth-Sth V1&V2 and Jester"): ``main.py``'s ``train``
    and ``adjust_learning_rate`` with ``AdaFocus.get_optim_policies``'
    groups (temporal and spatial policy x 0.2, glance net and ``aux_fc`` x
    0.5, focus net x 1), around ``archs/uni_adafocus_tsm.py``'s
    ``AdaFocus.forward`` in training mode;
  * X3D, ``torch_train_uni_x3d.py`` (folder "Uni-AdaFocus-X3D with
    Experiments on Kinetics-400"): the same ``train`` and schedule with
    its groups (policies x 0.4; X3D-S, ``global_CNN_head`` and
    ``aux_head`` x 0.5; X3D-L and ``local_CNN_head`` x 1), around
    ``archs/uni_adafocus_X3D.py``'s ``AdaFocus.forward`` in training mode
    (the X3D nets' heads on detached maps, ``x3d_video_model_builder.py``
    ``get_featmap``).

Each re-creation's docstring names every part. It takes a random model in
the official layout, one batch, every random draw given and recorded (the
selection's uniform draws, the random branch's position, the Monte-Carlo
removals), dropout off, one SGD step at a given epoch of the cosine
schedule with gradient clipping (``CLIP``), and saves the weights before
and after, every loss term and each group's gradient norm. Here the
"before" file is converted (the converter a user runs), one step of our
trainer is taken from it (``training.one_step``) with the same batch and
draws (``families/uni/loss.py``'s batch keys, one random position per
video as ``families/uni_tsm/loss.py`` reads it; the X3D family's loss is
that one with its own glance and focus passes), the "after" file is
converted too, and the two are compared as ``test_train_parity_uni.py``
compares them (its ``_check_all``), in float64 on both sides (the same
computation; the TSM family's float32 judgement was measured once:
``DTYPE``):

  * every loss term and the loss (ours per-video means, weighted as the
    official ``(sum of both branches' terms) / 2 + norm_ratio x
    loss_norm``);
  * each variable group's gradient norm before clipping (policy = both
    policies; glance = glance net with its heads and the spatial
    auxiliary head; focus = focus net with its heads);
  * every weight after the step, batch-norm statistics included, and
    every update (after - before), by model part.

Measured, TSM: terms within 4e-10 (relative), gradient norms 9e-11,
weights 1.8e-10, updates 1.5e-8. X3D: terms within 3e-14, gradient norms
8e-15, weights 4.4e-10, updates 1.8e-7 (Keras keeps the optimizer's
rates and momentum as float32 numbers). Before the X3D glance clip was
resized in its own dtype (``models/bilinear_resize.py``) its frames were
rounded to float32 there, and the X3D terms were only within 2e-6.

The clipping bound is set below the step's gradient norm on both sides
(``CLIP``), so that ``clip_grad_norm_`` scales the step as the presets' 20
does in real training (these tiny random models' norms are below 20).

TSM: N = 6 candidates, G = 3 glance frames (T1 = 1 Monte-Carlo round),
K = 2 focus frames, 2 videos, real TSM-MobileNetV2 and TSM-ResNet-50 at
224, P = 96 (the README's smaller patch). X3D: N = 8, G = 4, K = 4, 2
videos, the tiny X3D (``x3d_tiny``) as both nets at the official sizes
(frames 224, glance 160, P = 128), as ``test_convert_uni_x3d.py``.
"""
import dataclasses
import shutil
from typing import Dict, Tuple

import adafocus_tf  # pylint: disable=unused-import
import pytest

from adafocus_tf import config as config_lib
from adafocus_tf.families.uni import loss as uni_loss
from adafocus_tf.families.uni_tsm import presets as tsm_presets
from adafocus_tf.families.uni_x3d import presets as x3d_presets
from adafocus_tf.training import one_step

import keras_precision
import test_convert_uni_x3d as convert_x3d
import test_train_parity_uni as uni_parity

pytestmark = pytest.mark.parity

EPOCH = 3
# Below the step's gradient norm, so that clipping acts (module doc).
CLIP = 1.0
# Both families' overrides: dropout off, the bound above.
COMMON_OVERRIDES = ("model.dropout=0", "model.head_dropout=0",
                    f"stage1.grad_clip_norm={CLIP}")
# float64 only (Keras' global policy and floatx float64 while the files
# are converted and the step taken): float32 takes as long again. Measured
# once in float32 (TSM, P = 128): ours at most 1.3 times as far from the
# float64 official step as the official float32 step's farthest item of
# each kind (terms, gradient norms, weights, updates); the converted
# models' float32 parity is test_convert_uni_tsm.py's and
# test_convert_uni_x3d.py's.
DTYPE = "float64"
# Our terms (per-video means) and the official ones they equal.
TERMS = {"glance": "loss_global", "temporal": "loss_temporal",
         "spatial": "loss_spatial", "size": "loss_norm",
         "random_prediction": "loss_target_1",
         "random_focus": "loss_local_1",
         "policy_prediction": "loss_target_2",
         "policy_focus": "loss_local_2"}


@dataclasses.dataclass(frozen=True)
class Family:
  """A family's case.

  Attributes:
    script: its re-creation of the official step.
    case: the script's case.
    dataset: the preset it converts into (``--dataset``).
    patch: P.
    sizes: the case's model and batch sizes.
    overrides: what the run needs beyond the file and ``COMMON_OVERRIDES``.
    presets: the family's presets module (``RATIOS``, ``GRAD_CLIP``).
    parts: our model's parts (``model/<part>/...``).
  """
  script: str
  case: str
  dataset: str
  patch: int
  sizes: Dict
  overrides: Tuple[str, ...]
  presets: object
  parts: Tuple[str, ...]


FAMILIES = {
    "uni_tsm": Family(
        "torch_train_uni_tsm.py", "uni_tsm_train_step", "sthv1", 96,
        dict(glance_segments=3, focus_segments=2, segments=6, classes=5,
             spatial_hidden=16, temporal_hidden=8, batch=2, mc_samples=4),
        ("data.num_classes=5", "data.glance_frames=3", "data.num_frames=3",
         "data.focus_frames=6", "uni.focus_frames=2"),
        tsm_presets,
        ("glance", "focus", "glance_aux_head", "focus_aux_head", "aux_head",
         "spatial_policy", "temporal_policy")),
    "uni_x3d": Family(
        "torch_train_uni_x3d.py", "uni_x3d_train_step", "kinetics",
        convert_x3d.PATCH,
        dict(convert_x3d.SPEC[0], mc_samples=4),
        tuple(convert_x3d.RUN_OVERRIDES), x3d_presets,
        ("glance", "focus", "glance_frame_head", "focus_frame_head",
         "aux_head", "spatial_policy", "temporal_policy")),
}


def _spec(family: Family):
  cfg = config_lib.get_preset(family.dataset, "uni")
  s, base = cfg.stage1, cfg.stage1.backbone_lr
  policy = s.policy_lr / base
  sizes = {k: v for k, v in family.sizes.items() if k not in ("case", "name")}
  return dict(sizes, case=family.case, name=DTYPE, patch=family.patch,
              dtype=DTYPE, lr=base,
              ratios={"temporal": policy, "spatial": policy,
                      "glance": s.glance_lr / base},
              epoch=EPOCH, epochs=s.schedule_epochs or s.epochs,
              momentum=s.momentum, weight_decay=s.weight_decay,
              norm_ratio=cfg.uni.norm_ratio, clip=CLIP)


def _batch(ref, dtype):
  """The official batch and its draws, under our batch keys; the frames
  in the step's precision, as the official step's."""
  return {"glance_frames": ref["glance_frames"].astype(dtype),
          "focus_frames": ref["focus_frames"].astype(dtype),
          "label": ref["labels"],
          uni_loss.RANDOM_POSITIONS: ref["random_positions"][:, None],
          uni_loss.FRAME_DRAWS: ref["frame_draws"],
          uni_loss.MC_REMOVED: ref["mc_removed"]}


@pytest.fixture(scope="module", params=list(FAMILIES))
def stepped(request, torch_reference, tmp_path_factory):
  """Ours: the before file converted, one step; theirs: the after file
  (``exact`` None: ``_check_all``'s float64 judgement)."""
  family = FAMILIES[request.param]
  out = tmp_path_factory.mktemp(f"torch_train_{request.param}")
  torch_reference(family.script, [_spec(family)], out)
  root = tmp_path_factory.mktemp(f"steps_{request.param}")
  overrides = family.overrides + COMMON_OVERRIDES

  def convert(path, run):
    return uni_parity.convert_stage_1(path, run, family.dataset,
                                      family.patch, overrides)

  with keras_precision.global_dtype(DTYPE):
    before = convert(out / f"{DTYPE}_before.pth.tar", str(root / "before"))
    after = convert(out / f"{DTYPE}_after.pth.tar", str(root / "after"))
    ref = uni_parity._load(out / f"{DTYPE}.npz")  # pylint: disable=protected-access
    result = one_step.train_one_step(str(root / "before"), 1,
                                     _batch(ref, DTYPE), str(root / "ours"),
                                     epoch=EPOCH)
  tensors = uni_parity._model_tensors  # pylint: disable=protected-access
  yield dict(family=family, ref=ref, exact=None, result=result,
             before=tensors(before), theirs=tensors(after),
             ours=tensors(result.checkpoint))
  shutil.rmtree(out, ignore_errors=True)


def test_the_loss_is_the_official_sum_of_terms(stepped):
  """``main.py``'s ``train``: (both branches' prediction and focus terms,
  and twice the shared glance, temporal and spatial terms) / 2 +
  norm_ratio x the size term; no KL term (``uni.kl_ratio`` 0); the
  preset's rates and clipping are the README commands'."""
  result, family = stepped["result"], stepped["family"]
  cfg = config_lib.get_preset(family.dataset, "uni")
  assert set(result.terms) == set(TERMS)
  assert result.weights == {
      "glance": 1.0, "temporal": 1.0, "spatial": 1.0,
      "size": cfg.uni.norm_ratio, "policy_prediction": 0.5,
      "policy_focus": 0.5, "random_prediction": 0.5, "random_focus": 0.5}
  assert cfg.uni.kl_ratio == 0.0
  s = cfg.stage1
  assert (s.policy_lr / s.backbone_lr, s.glance_lr / s.backbone_lr,
          s.grad_clip_norm) == (family.presets.RATIOS["policy"],
                                family.presets.RATIOS["glance"],
                                family.presets.GRAD_CLIP)
  # The step's gradient norm is above the bound: clipping acted.
  assert stepped["ref"]["total_norm"] > 2 * CLIP


def test_loss_terms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  items = [(k, result.terms[k], ref[v], None) for k, v in TERMS.items()]
  items.append(("loss", result.loss, ref["loss"], None))
  uni_parity._check_all(stepped, "terms", items)  # pylint: disable=protected-access


def test_group_gradient_norms_equal_the_official_step(stepped):
  ref, result = stepped["ref"], stepped["result"]
  assert sorted(map(str, ref["norm_names"])) == sorted(result.gradient_norms)
  uni_parity._check_all(  # pylint: disable=protected-access
      stepped, "norms",
      [(str(name), result.gradient_norms[str(name)], ref["norms"][i], None)
       for i, name in enumerate(ref["norm_names"])])


def test_weights_after_the_step_equal_the_official_ones(stepped):
  assert set(stepped["ours"]) == set(stepped["theirs"])
  by_group = uni_parity._by_group  # pylint: disable=protected-access
  before, ours, theirs = (by_group(stepped[k])
                          for k in ("before", "ours", "theirs"))
  assert set(theirs) == set(stepped["family"].parts)
  uni_parity._check_all(  # pylint: disable=protected-access
      stepped, "weights", [(g, ours[g], theirs[g], None) for g in theirs])
  uni_parity._check_all(  # pylint: disable=protected-access
      stepped, "updates", [(g, ours[g] - before[g], theirs[g] - before[g],
                            None) for g in theirs])

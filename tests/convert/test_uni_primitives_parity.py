"""Uni-AdaFocus's frame selection, deformable regions and Monte-Carlo
prediction against the official functions (docs/METHOD.md V2-11.2, V2-11.8).

``torch_reference_uni.py`` (run in the torch interpreter, ``conftest.py``),
case ``uni_primitives``, re-creates three functions of LeapLabTHU/
Uni-AdaFocus, folder "Uni-AdaFocus with Experiments on ActivityNet, FCVID
and Mini-Kinetics", ``models/uni_adafocus.py``, and runs them in float32
on random inputs chosen so that every branch of them acts:

  * ``policy_sample_indices`` (with ``cal_x``): stratified inverse-CDF
    frame selection, with the overlap fix and the cap; ours is
    ``models/uni/frame_selection.select``;
  * ``get_patch_grid_scalexy``: the deformable regions and their bilinear
    resampling, on frames and on glance maps, with gradients; ours are
    ``models/uni/deformable_regions.regions`` and ``resample``;
  * ``MCSampleFeature``: the Monte-Carlo prediction from removal masks
    (the official multinomial draws, recorded), with gradients; ours is
    ``models/uni/temporal_objective.mc_logits``.
"""
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models.uni import deformable_regions
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import temporal_objective

pytestmark = pytest.mark.parity

# The official region sides (``get_patch_grid_scalexy``: 96 to 224 pixels
# of the frame, for a patch of ``input_patch_size``).
REGION_MIN, REGION_MAX = 96, 224
# float32 on both sides: regions a few ulps of 224 apart; patches and
# gradients bilinear sums of values of order 1 (relative to their largest
# entry); the Monte-Carlo mean over S draws x T1 rows.
REGION_TOL_PX = 1e-4
SAMPLE_TOL = 1e-5
MC_TOL = 1e-5


@pytest.fixture(scope="module")
def prim(torch_reference, tmp_path_factory):
  """The official functions' inputs and outputs (one reference run)."""
  out = tmp_path_factory.mktemp("torch_reference_uni_primitives")
  torch_reference("torch_reference_uni.py",
                  [dict(case="uni_primitives", name="uni_primitives")], out)
  with np.load(out / "uni_primitives.npz") as d:
    arrays = {k: d[k] for k in d.files}
  shutil.rmtree(out, ignore_errors=True)
  return arrays


def _relative(ours, theirs):
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def test_frame_selection_equals_policy_sample_indices(prim):
  """``policy_sample_indices`` (training draws u and test u = 1/2) on
  random, uniform and peaked weights: the same K candidates."""
  n, _, k = (int(v) for v in prim["psi_sizes"])
  w = tf.constant(prim["psi_weights"])
  ours = frame_selection.select(w, n, k, tf.constant(prim["psi_u"])).numpy()
  np.testing.assert_array_equal(ours, prim["psi_indices"])
  test = frame_selection.select(w, n, k).numpy()
  np.testing.assert_array_equal(test, prim["psi_indices_test"])
  # The cases make the overlap fix and the cap act.
  floors = np.floor(prim["psi_positions"]).astype(np.int32)
  assert np.any(floors != prim["psi_indices"])
  assert np.any(prim["psi_indices"][:, -1] == n - 1)


def _regions_and_samples(prefix, prim, frame_size, out, scale):
  """Our regions and samples of the ``dp``/``dpm`` case, and the gradients
  of the samples dotted with the official cotangent (if it has one)."""
  source = "frames" if prefix == "dp" else "maps"
  images = tf.constant(prim[f"{prefix}_{source}"])
  actions = tf.constant(prim[f"{prefix}_actions"])
  with tf.GradientTape() as tape:
    tape.watch([images, actions])
    boxes = deformable_regions.regions(actions, float(frame_size), REGION_MIN,
                                       REGION_MAX, scale)
    samples = deformable_regions.resample(images, boxes, out)
    cot = prim.get(f"{prefix}_cotangent")
    dot = tf.reduce_sum(samples * (0.0 if cot is None else cot))
  grads = tape.gradient(dot, [images, actions]) if cot is not None else None
  return boxes.numpy(), samples.numpy(), grads


def test_deformable_patches_equal_get_patch_grid_scalexy_on_frames(prim):
  """``get_patch_grid_scalexy(frames, actions, P, 224, P)``: regions from
  96 to 224 pixels, at corners (zero padding counts), of side P, the whole
  frame, random."""
  patch, size, input_patch = (int(v) for v in prim["dp_sizes"])
  assert patch == input_patch
  boxes, samples, _ = _regions_and_samples("dp", prim, size, patch, 1.0)
  err = float(np.max(np.abs(boxes - prim["dp_regions"])))
  print(f"frame regions: {err:.2e} px")
  assert err <= REGION_TOL_PX
  err = _relative(samples, prim["dp_patches"])
  print(f"patches: {err:.2e}")
  assert err <= SAMPLE_TOL


def test_deformable_patches_equal_get_patch_grid_scalexy_on_maps(prim):
  """``get_patch_grid_scalexy(glance map, actions, P // 32, 7, P)`` (the
  spatial policy's auxiliary input) and its gradients with respect to the
  map and the actions."""
  grid, side, patch = (int(v) for v in prim["dpm_sizes"])
  assert grid == deformable_regions.map_grid(patch, 224, side)
  boxes, samples, (g_maps, g_actions) = _regions_and_samples(
      "dpm", prim, side, grid, grid / patch)
  err = float(np.max(np.abs(boxes - prim["dpm_regions"])))
  print(f"map regions: {err:.2e} cells")
  assert err <= REGION_TOL_PX
  for what, ours, theirs in (("samples", samples, prim["dpm_patches"]),
                             ("d/d map", g_maps.numpy(),
                              prim["dpm_grad_maps"]),
                             ("d/d actions", g_actions.numpy(),
                              prim["dpm_grad_actions"])):
    err = _relative(ours, theirs)
    print(f"{what}: {err:.2e}")
    assert err <= SAMPLE_TOL, what


def test_mc_logits_equal_mc_sample_feature(prim):
  """``MCSampleFeature`` with its draws given as masks, and its gradients
  with respect to the glance logits and the weights."""
  logits = tf.constant(prim["mc_glance_logits"])
  weights = tf.constant(prim["mc_weights"])
  with tf.GradientTape() as tape:
    tape.watch([logits, weights])
    mc = temporal_objective.mc_logits(logits, weights,
                                      tf.constant(prim["mc_removed"]))
    dot = tf.reduce_sum(mc * prim["mc_cotangent"])
  g_logits, g_weights = tape.gradient(dot, [logits, weights])
  for what, ours, theirs in (("logits", mc.numpy(), prim["mc_logits"]),
                             ("d/d glance logits", g_logits.numpy(),
                              prim["mc_grad_glance_logits"]),
                             ("d/d weights", g_weights.numpy(),
                              prim["mc_grad_weights"])):
    err = _relative(ours, theirs)
    print(f"mc {what}: {err:.2e}")
    assert err <= MC_TOL, what
  # Rows remove 0, 1, ..., T1 - 1 frames.
  np.testing.assert_array_equal(prim["mc_removed"].sum(-1)[0, 0],
                                np.arange(prim["mc_removed"].shape[2]))

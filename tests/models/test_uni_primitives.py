"""Uni-AdaFocus's building blocks (docs/METHOD.md V2-11.2, U-3) against numpy
transcriptions of the official functions of LeapLabTHU/Uni-AdaFocus @
8846488, "Uni-AdaFocus with Experiments on ActivityNet, FCVID and
Mini-Kinetics/models/uni_adafocus.py": ``policy_sample_indices`` (frame
selection), ``get_patch_grid_scalexy`` (affine_grid + grid_sample,
align_corners False, zero padding), ``F.interpolate(mode='linear')`` of the
actions, and ``MCSampleFeature`` with its draws given."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models.uni import deformable_regions as regions_lib
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import temporal_objective


def official_select(w, n, k, u):
  """``policy_sample_indices``, one video, in float32 like the official."""
  g = len(w)
  cdf = np.concatenate([[0.0], np.cumsum(w, dtype=np.float32)]).astype(
      np.float32)
  cdf[-1] = 1.0
  out = []
  for i in range(k):
    t = np.float32((i + u[i]) / k)
    first = int(np.argmax(cdf >= t))
    cur = min(max(first, 1), g) - 1
    x1, x2 = np.float32(cur / g), np.float32((cur + 1) / g)
    y1, y2 = cdf[cur], cdf[cur + 1]
    q = (x2 * (t - y1) - x1 * (t - y2)) / (y2 - y1)
    out.append(int(np.floor(np.float32(q) * n)))
  for i in range(1, k):
    if out[i] <= out[i - 1]:
      out[i] = out[i - 1] + 1
  return [min(v, n - k + i) for i, v in enumerate(out)]


def official_sample(image, box, out):
  """grid_sample of one [H, W, C] image over region (y, x, Ly, Lx)."""
  h, w, _ = image.shape
  y, x, ly, lx = box
  rows = y + (np.arange(out) + 0.5) * ly / out - 0.5
  cols = x + (np.arange(out) + 0.5) * lx / out - 0.5
  result = np.zeros((out, out, image.shape[2]))
  for i, r in enumerate(rows):
    for j, c in enumerate(cols):
      r0, c0 = int(np.floor(r)), int(np.floor(c))
      for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
        for cc, wc in ((c0, 1 - (c - c0)), (c0 + 1, c - c0)):
          if 0 <= rr < h and 0 <= cc < w:  # Zero padding.
            result[i, j] += wr * wc * image[rr, cc]
  return result


@pytest.mark.parametrize("n, g, k", [(48, 16, 16), (24, 8, 8), (36, 8, 12),
                                     (8, 4, 4)])
def test_frame_selection_is_the_official_inverse_cdf(n, g, k):
  rng = np.random.default_rng(n + k)
  logits = rng.normal(0, 2, (20, g))
  w = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  w = w.astype(np.float32)
  u = rng.uniform(0, 1, (20, k)).astype(np.float32)
  for draws in (u, None):
    got = frame_selection.select(tf.constant(w), n, k,
                                 None if draws is None else tf.constant(draws))
    got = got.numpy()
    for b in range(20):
      want = official_select(w[b], n, k, np.full(k, 0.5) if draws is None
                             else draws[b])
      assert got[b].tolist() == want
    assert np.all(np.diff(got, axis=1) > 0)
    assert got.min() >= 0 and got.max() <= n - 1


def test_uniform_weights_read_the_middle_of_each_group_at_test():
  w = tf.fill([1, 16], 1 / 16)
  idx = frame_selection.select(w, 48, 16).numpy()[0]
  assert idx.tolist() == list(range(1, 48, 3))
  glance = frame_selection.glance_indices(1, 48, 16).numpy()[0]
  assert glance.tolist() == list(range(1, 48, 3))


def test_all_weight_on_one_frame_crowds_the_selection_there_and_caps_it():
  w = np.full((1, 16), 1e-6, np.float32)
  w[0, 15] = 1.0
  w /= w.sum()
  idx = frame_selection.select(tf.constant(w), 48, 16).numpy()[0]
  # Every quantile falls in the last glance frame's third: forced
  # increasing and capped at 48 - 16 + i, they are the last 16 candidates.
  assert idx.tolist() == list(range(32, 48))


def test_actions_interpolate_in_time_as_torch_linear():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(2, 4, 3)).astype(np.float32)
  got = frame_selection.interpolate_in_time(tf.constant(x), 10).numpy()
  for j in range(10):
    src = max((j + 0.5) * 4 / 10 - 0.5, 0.0)
    lo = min(int(np.floor(src)), 3)
    hi = min(lo + 1, 3)
    want = x[:, lo] * (1 - (src - lo)) + x[:, hi] * (src - lo)
    np.testing.assert_allclose(got[:, j], want, rtol=1e-6)


@pytest.mark.parametrize("box", [(3.0, 5.0, 8.0, 8.0),      # L = P, whole px
                                 (0.0, 0.0, 6.0, 7.5),      # L < P at a corner
                                 (2.3, 1.7, 13.5, 9.25)])   # L > P
def test_regions_resample_like_grid_sample_with_zero_padding(box):
  rng = np.random.default_rng(1)
  image = rng.normal(size=(16, 16, 3)).astype(np.float32)
  got = regions_lib.resample(tf.constant(image[None]),
                             tf.constant([box], tf.float32), 8).numpy()[0]
  np.testing.assert_allclose(got, official_sample(image, box, 8), atol=1e-5)
  if box[2] == 8.0:
    # A P-sided region at whole pixels is the plain crop.
    np.testing.assert_allclose(got, image[3:11, 5:13], atol=1e-5)


def test_regions_follow_the_official_formula():
  # a = (0.5, 1), s = (0, 1): sides 96 and 224 of a 224 frame.
  a = tf.constant([[0.5, 1.0, 0.0, 1.0]])
  got = regions_lib.regions(a, 224.0, 96, 224).numpy()[0]
  np.testing.assert_allclose(got, [0.5 * 128, 0.0, 96, 224])
  # On the 7x7 glance map with P = 128: the grid is 4 cells, a region of
  # side L pixels spans L / 32 cells.
  grid = regions_lib.map_grid(128, 224, 7)
  assert grid == 4
  got = regions_lib.regions(a, 7.0, 96, 224, grid / 128).numpy()[0]
  np.testing.assert_allclose(got, [0.5 * (7 - 3), 0.0, 3, 7])


def test_region_sampling_is_differentiable_in_the_region():
  image = tf.random.stateless_normal([1, 16, 16, 3], [0, 1])
  box = tf.Variable([[2.3, 1.7, 9.0, 10.0]])
  with tf.GradientTape() as tape:
    out = tf.reduce_sum(regions_lib.resample(image, box, 8) ** 2)
  grad = tape.gradient(out, box).numpy()
  assert np.all(np.abs(grad) > 0)


def test_removal_masks_remove_i_frames_drawn_by_weight():
  w = tf.constant([[0.7, 0.1, 0.1, 0.1]])
  masks = temporal_objective.removal_masks(
      w, tf.constant([[3, 4]], tf.int64), 4000, 3).numpy()[0]
  assert masks.shape == (4000, 3, 4)
  np.testing.assert_array_equal(masks.sum(-1), np.tile([0, 1, 2], (4000, 1)))
  # The first removal follows w: frame 0 in about 70% of draws.
  assert 0.67 < masks[:, 1, 0].mean() < 0.73


def test_mc_prediction_is_the_renormalised_weighted_mean():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(1, 4, 3)).astype(np.float32)
  w = np.array([[0.4, 0.3, 0.2, 0.1]], np.float32)
  removed = np.zeros((1, 1, 2, 4), np.float32)
  removed[0, 0, 1, 0] = 1.0  # Size 1 removes frame 0.
  got = temporal_objective.mc_logits(tf.constant(logits), tf.constant(w),
                                     tf.constant(removed)).numpy()
  full = (w[0, :, None] * logits[0]).sum(0)
  rest = (w[0, 1:, None] * logits[0, 1:]).sum(0) / w[0, 1:].sum()
  np.testing.assert_allclose(got[0], (full + rest) / 2, rtol=1e-5)


def test_mc_prediction_trains_the_weights_but_not_through_the_normaliser():
  logits = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
  w = tf.Variable([[0.5, 0.5]])
  removed = tf.zeros([1, 1, 1, 2])
  with tf.GradientTape() as tape:
    out = temporal_objective.mc_logits(logits, w, removed)[0, 0]
  # d/dw of sum(w x) / stop(sum(w)): x / sum(w) = (1, 0) / 1.
  np.testing.assert_allclose(tape.gradient(out, w).numpy(), [[1.0, 0.0]])


def test_running_max():
  x = tf.constant([[3, 1, 4, 1, 5, 2]])
  assert frame_selection.running_max(x).numpy().tolist() == [[3, 3, 4, 4, 5,
                                                              5]]

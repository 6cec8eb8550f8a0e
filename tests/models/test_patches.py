"""Patch positions and batched patch extraction."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import patches


@pytest.mark.parametrize("size,patch", [(32, 8), (64, 16), (224, 128),
                                        (57, 20)])
def test_integer_offsets_equal_slicing(size, patch):
  rng = np.random.default_rng(size)
  frames = rng.normal(size=(3, 4, size, size, 3)).astype(np.float32)
  offsets = rng.integers(0, size - patch + 1, size=(3, 4, 2)).astype(np.int32)
  got = patches.extract_patches(tf.constant(frames), tf.constant(offsets),
                                patch).numpy()
  want = np.stack([frames[b, t, y:y + patch, x:x + patch]
                   for b in range(3) for t in range(4)
                   for y, x in [offsets[b, t]]])
  np.testing.assert_array_equal(got, want)


def test_gradients_reach_frames_inside_patch_only():
  frames = tf.Variable(tf.random.normal([1, 2, 16, 16, 3]))
  offsets = tf.constant([[[2, 3], [8, 0]]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(patches.extract_patches(frames, offsets, 4))
  grad = tape.gradient(loss, frames).numpy()
  assert np.allclose(grad[0, 0, 2:6, 3:7], 1.0, atol=1e-5)
  assert np.allclose(grad[0, 1, 8:12, 0:4], 1.0, atol=1e-5)
  assert grad.sum() == pytest.approx(2 * 4 * 4 * 3, rel=1e-4)


def test_fractional_offsets_interpolate():
  frames = tf.reshape(tf.range(16 * 16, dtype=tf.float32), [1, 1, 16, 16, 1])
  got = patches.extract_patches(frames, tf.constant([[[2.5, 3.0]]]), 4)
  # Half-way between rows 2 and 3 of a ramp with row step 16.
  np.testing.assert_allclose(got.numpy()[0, :, :, 0],
                             (np.arange(4)[:, None] + 2.5) * 16 +
                             np.arange(4)[None, :] + 3, rtol=1e-5)


def test_action_grid_positions_and_offsets():
  pos = patches.action_to_position(tf.constant([0, 6, 48]), 49).numpy()
  np.testing.assert_allclose(pos, [[0, 0], [0, 1], [1, 1]])
  pos = patches.action_to_position(tf.constant([8]), 49).numpy()
  np.testing.assert_allclose(pos, [[1 / 6, 1 / 6]])
  # floor(a * (224 - 128)) as in docs/METHOD.md: a = 1/6 -> 16.
  off = patches.position_to_offset(tf.constant(pos), 224, 128).numpy()
  np.testing.assert_array_equal(off, [[16, 16]])
  with pytest.raises(ValueError, match="square grid"):
    patches.grid_side(50)


def test_random_offsets_are_per_video_and_in_range():
  seeds = tf.constant([[1, 2], [3, 4], [1, 2]])
  off = patches.random_offsets(seeds, 16, 64, 16).numpy()
  # The official random_crop's range: S - P is never drawn.
  assert off.min() >= 0 and off.max() <= 47
  whole = patches.random_offsets(seeds, 4, 16, 16).numpy()
  np.testing.assert_array_equal(whole, np.zeros_like(whole))
  np.testing.assert_array_equal(off[0], off[2])  # same seed, same patches
  assert not np.array_equal(off[0], off[1])


def test_box_offsets_centre_on_box_and_clip():
  boxes = tf.constant([[0.25, 0.25, 0.5, 0.5], [0.9, 0.9, 1.0, 1.0]])
  off = patches.box_offsets(boxes, 64, 16).numpy()
  np.testing.assert_array_equal(off, [[16, 16], [48, 48]])


def test_bfloat16_frames_give_the_same_patches():
  frames = tf.random.normal([2, 3, 16, 16, 3])
  offsets = tf.constant([[[0, 0], [5, 7], [8, 8]]] * 2)
  half = patches.extract_patches(tf.cast(frames, tf.bfloat16), offsets, 8)
  assert half.dtype == tf.bfloat16
  full = patches.extract_patches(tf.cast(tf.cast(frames, tf.bfloat16),
                                         tf.float32), offsets, 8)
  np.testing.assert_array_equal(tf.cast(half, tf.float32).numpy(),
                                full.numpy())


def _exact_bilinear(frame, y, x, patch):
  """numpy: the frame sampled at rows y + i, columns x + j (bilinear)."""
  ys, xs = y + np.arange(patch), x + np.arange(patch)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  y1 = np.minimum(y0 + 1, frame.shape[0] - 1)
  x1 = np.minimum(x0 + 1, frame.shape[1] - 1)
  top = (1 - fx) * frame[y0][:, x0] + fx * frame[y0][:, x1]
  bottom = (1 - fx) * frame[y1][:, x0] + fx * frame[y1][:, x1]
  return (1 - fy) * top + fy * bottom


def test_float64_offsets_sample_exactly_and_as_crop_and_resize():
  rng = np.random.default_rng(3)
  frames = rng.normal(size=(3, 1, 32, 32, 2))
  offsets = np.array([[[3.25, 7.5]], [[0.0, 16.0]], [[15.999, 0.001]]])
  want = np.stack([_exact_bilinear(frames[i, 0], *offsets[i, 0], 16)
                   for i in range(3)])
  f64 = patches.extract_patches(tf.constant(frames), tf.constant(offsets), 16)
  assert f64.dtype == tf.float64
  np.testing.assert_allclose(f64.numpy(), want, atol=1e-12)
  # The float32 path (crop_and_resize) is the same sampling, to its
  # float32 coordinates.
  f32 = patches.extract_patches(tf.constant(frames, tf.float32),
                                tf.constant(offsets, tf.float32), 16)
  np.testing.assert_allclose(f32.numpy(), want, atol=1e-4)


def test_float64_offset_gradients_equal_the_bilinear_derivative():
  rng = np.random.default_rng(4)
  frames = rng.normal(size=(2, 1, 24, 24, 1))
  offsets = tf.Variable([[[2.3, 5.6]], [[7.75, 1.2]]], dtype=tf.float64)
  weights = rng.normal(size=(2, 8, 8, 1))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(patches.extract_patches(tf.constant(frames), offsets,
                                                 8) * weights)
  grad = tape.gradient(loss, offsets).numpy()
  eps = 1e-6
  for i in range(2):
    for axis in range(2):
      step = np.zeros(2)
      step[axis] = eps
      y, x = offsets.numpy()[i, 0]
      up = np.sum(_exact_bilinear(frames[i, 0], *((y, x) + step), 8)
                  * weights[i])
      down = np.sum(_exact_bilinear(frames[i, 0], *((y, x) - step), 8)
                    * weights[i])
      np.testing.assert_allclose(grad[i, 0, axis], (up - down) / (2 * eps),
                                 rtol=1e-6)

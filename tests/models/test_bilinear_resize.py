"""models/bilinear_resize.py: half-pixel bilinear resizing in the images'
dtype."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import bilinear_resize


def _images(dtype, shape=(2, 12, 10, 3)):
  return np.random.default_rng(0).uniform(size=shape).astype(dtype)


@pytest.mark.parametrize("size", [(8, 8), (5, 7), (16, 25)])
def test_float32_equals_tensorflows_bilinear_resize(size):
  """Down and up, each axis on its own: TensorFlow's kernel computes its
  source positions in float32, hence 1e-5 rather than rounding."""
  x = _images(np.float32)
  ours = bilinear_resize.resize(tf.constant(x), size)
  assert ours.dtype == tf.float32 and ours.shape == (2, *size, 3)
  np.testing.assert_allclose(ours, tf.image.resize(x, size, "bilinear"),
                             atol=3e-5)


def test_float64_stays_float64_and_exact():
  x = _images(np.float64)
  ours = bilinear_resize.resize(tf.constant(x), (8, 8)).numpy()
  assert ours.dtype == np.float64
  # 12 -> 8 rows: output row 1 reads source row (1.5 x 1.5 - 0.5) = 1.75.
  rows = bilinear_resize.resize(tf.constant(x), (8, 10)).numpy()
  np.testing.assert_allclose(rows[:, 1], 0.25 * x[:, 1] + 0.75 * x[:, 2],
                             rtol=1e-15)
  # The same as resizing the rows, then the columns.
  np.testing.assert_allclose(
      ours, bilinear_resize.resize(tf.constant(rows), (8, 8)).numpy(),
      rtol=1e-15)


def test_the_first_output_clamps_to_the_first_pixel_and_same_size_is_kept():
  x = _images(np.float64, (1, 4, 4, 1))
  up = bilinear_resize.resize(tf.constant(x), (8, 4)).numpy()
  # Output row 0 reads source -0.25: clamped to row 0.
  np.testing.assert_array_equal(up[:, 0], x[:, 0])
  np.testing.assert_array_equal(up[:, -1], x[:, -1])
  same = tf.constant(x)
  assert bilinear_resize.resize(same, (4, 4)) is same

"""Crop windows and the resize of decoded crops."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.data import augment


@pytest.mark.parametrize("shape,size", [
    ((3, 24, 24, 3), 24),   # already square at size: cast only
    ((24, 24, 3), 24),      # one image
    ((3, 37, 50, 3), 24),   # downscaled
    ((2, 17, 17, 3), 24),   # upscaled
    ((2, 24, 30, 3), 24),   # one side already at size
])
def test_resize_square_equals_the_antialiased_resize(shape, size):
  pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  want = tf.image.resize(pixels, [size, size], antialias=True).numpy()
  # In a graph with unknown sizes too, as the exported signature runs it.
  spec = tf.TensorSpec([None] * (len(shape) - 1) + [3], tf.uint8)
  fn = tf.function(lambda x: augment.resize_square(x, size),
                   input_signature=[spec], autograph=False)
  for got in (augment.resize_square(pixels, size), fn(pixels)):
    assert got.dtype == tf.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)

"""The hoisted inference GRU equals Keras' and tf-agents' GRU loops."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.keras_layers import dynamic_unroll_layer

from adafocus_tf.models import gru_inference


def _random_cell(units, dim, seed, **kwargs):
  cell = tf.keras.layers.GRUCell(units, **kwargs)
  cell.build([None, dim])
  rng = np.random.default_rng(seed)
  for v in cell.variables:  # the biases too (zero when built)
    v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
  return cell


def test_equals_keras_gru_layer_from_a_given_state():
  cell = _random_cell(6, 5, seed=0, reset_after=True)
  layer = tf.keras.layers.GRU(6, return_sequences=True, return_state=True,
                              reset_after=True)
  x = tf.random.stateless_normal([3, 4, 5], [1, 2])
  h0 = tf.random.stateless_normal([3, 6], [3, 4])
  layer(x, initial_state=h0)  # builds
  for mine, theirs in zip(layer.cell.variables, cell.variables):
    mine.assign(theirs)
  want, want_state = layer(x, initial_state=h0)
  got, state = gru_inference.gru_sequence(cell, x, h0)
  assert np.abs(want.numpy()).max() > 0.1
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(state, got[:, -1])


def test_equals_tf_agents_dynamic_unroll_with_resets():
  cell = _random_cell(6, 5, seed=1, reset_after=True)
  unroll = dynamic_unroll_layer.DynamicUnroll(cell)
  x = tf.random.stateless_normal([2, 5, 5], [5, 6])
  h0 = tf.random.stateless_normal([2, 6], [7, 8]) * 3.0
  reset = tf.constant([[True, False, False, True, False],
                       [False, False, True, False, False]])
  want, want_state = unroll(x, initial_state=h0, reset_mask=reset)
  got, state = gru_inference.gru_sequence(cell, x, h0, reset)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-5)
  # The resets matter: without them the outputs differ.
  free, _ = gru_inference.gru_sequence(cell, x, h0)
  assert np.abs(free[1, :2] - got[1, :2]).max() == 0
  assert np.abs(free[1, 2:] - got[1, 2:]).max() > 1e-3


def test_refuses_what_it_does_not_compute():
  x = tf.zeros([1, 3, 5])
  with pytest.raises(ValueError, match="reset_after"):
    gru_inference.gru_sequence(_random_cell(4, 5, 2, reset_after=False), x,
                               tf.zeros([1, 4]))
  fn = tf.function(lambda f: gru_inference.gru_sequence(
      _random_cell(4, 5, 3, reset_after=True), f, tf.zeros([1, 4])))
  with pytest.raises(ValueError, match="static number of steps"):
    fn.get_concrete_function(tf.TensorSpec([1, None, 5]))


def test_applies_at_inference_to_more_than_one_known_step():
  four = tf.zeros([2, 4, 5])
  assert gru_inference.applies(four, training=False)
  assert not gru_inference.applies(four, training=True)
  assert not gru_inference.applies(four[:, :1], training=False)
  unknown = tf.keras.Input([None, 5])
  assert not gru_inference.applies(unknown, training=False)

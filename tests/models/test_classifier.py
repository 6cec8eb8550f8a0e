"""The recurrent and linear classifiers: loss and prediction rules."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import gru_inference
from adafocus_tf.models import linear_classifier
from adafocus_tf.models import recurrent_classifier


def test_recurrent_loss_is_mean_step_cross_entropy():
  clf = recurrent_classifier.RecurrentClassifier(3, 4, dropout=0.0)
  logits = tf.constant([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
  targets = tf.constant([[1.0, 0.0, 0.0]])
  p0 = np.exp(2) / (np.exp(2) + 2)
  p1 = 1 / (np.e + 2)
  want = -(np.log(p0) + np.log(p1)) / 2
  assert float(clf.loss(logits, targets)[0]) == pytest.approx(want, rel=1e-5)
  # The prediction after each step is that step's softmax.
  probs = clf.step_probs(logits).numpy()
  assert probs[0, 0, 0] == pytest.approx(p0, rel=1e-5)
  assert probs[0, 1, 1] == pytest.approx(np.e / (np.e + 2), rel=1e-5)


def test_recurrent_step_matches_sequence_call():
  clf = recurrent_classifier.RecurrentClassifier(5, 6, dropout=0.5)
  x = tf.random.normal([2, 4, 7])
  seq = clf(x, training=False).numpy()
  state = clf.initial_state(2)
  for t in range(4):
    logits, state = clf.step(x[:, t], state)
    np.testing.assert_allclose(logits.numpy(), seq[:, t], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_recurrent_inference_equals_the_keras_gru(batch):
  clf = recurrent_classifier.RecurrentClassifier(5, 6, dropout=0.0)
  x = tf.random.stateless_normal([batch, 4, 7], [1, 2])
  clf(x, training=True)  # builds
  rng = np.random.default_rng(0)
  for v in clf.gru.variables:  # the biases too (zero when built)
    v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
  want = clf.fc(clf.gru(x)).numpy()
  got = clf(x, training=False).numpy()
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  assert np.abs(want).max() > 0.1
  # One step, or an unknown number of them, runs the Keras layer (whose
  # cell call the MAC counter counts).
  assert not gru_inference.applies(x[:, :1], training=False)
  unknown = tf.function(lambda f: clf(f, training=False), input_signature=[
      tf.TensorSpec([None, None, 7])])
  np.testing.assert_allclose(unknown(x).numpy(), want, rtol=0, atol=1e-5)


def test_linear_classifier_averages_softmax_and_uses_nll():
  clf = linear_classifier.LinearClassifier(2, dropout=0.0)
  logits = tf.constant([[[0.0, 0.0], [np.log(3.0), 0.0]]])
  probs = clf.step_probs(logits).numpy()
  np.testing.assert_allclose(probs[0, 0], [0.5, 0.5], atol=1e-6)
  # Mean of (0.5, 0.5) and (0.75, 0.25).
  np.testing.assert_allclose(probs[0, 1], [0.625, 0.375], atol=1e-6)
  loss = float(clf.loss(logits, tf.constant([[0.0, 1.0]]))[0])
  assert loss == pytest.approx(-np.log(0.375), rel=1e-5)


def test_linear_step_matches_running_mean():
  clf = linear_classifier.LinearClassifier(3, dropout=0.0)
  x = tf.random.normal([2, 3, 5])
  want = clf.step_probs(clf(x)).numpy()
  state = clf.initial_state(2)
  for t in range(3):
    logits, state = clf.step(x[:, t], state)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), want[:, t],
                               atol=1e-5)


def test_dropout_mask_depends_only_on_video_seed():
  x = tf.ones([3, 4, 100])
  seeds = tf.constant([[7, 1], [8, 1], [7, 1]])
  y = classifier_lib.per_video_dropout(x, 0.5, seeds).numpy()
  np.testing.assert_array_equal(y[0], y[2])
  assert not np.array_equal(y[0], y[1])
  assert set(np.unique(y)) <= {0.0, 2.0}
  assert 0.35 < (y == 0).mean() < 0.65
  # Videos seen by another replica in another batch get the same mask.
  alone = classifier_lib.per_video_dropout(x[1:2], 0.5, seeds[1:2]).numpy()
  np.testing.assert_array_equal(alone[0], y[1])

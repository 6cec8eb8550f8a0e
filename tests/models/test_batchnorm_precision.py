"""PreciseBatchNormalization: PyTorch's training-mode precision, else Keras'."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import backbones
from adafocus_tf.models import precise_batchnorm

_BN = tf.keras.layers.BatchNormalization
_PRECISE = precise_batchnorm.PreciseBatchNormalization
_TORCH = dict(epsilon=1e-5, momentum=0.9)
# Against float64 on the batch below the precise layer is about 2e-7 off (a
# few float32 roundings, as PyTorch's kernel with its double sums); Keras'
# layers, whose sums over a channel's 262144 values are float32, miss this
# by 6x (the fused kernel on 16 threads) to 80x (unfused).
_TOLERANCE = 1e-6


def _weights(channels, seed=0):
  """gamma, beta, moving mean, moving variance: random, float32."""
  rng = np.random.default_rng(seed)
  return [w.astype(np.float32) for w in (
      rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels),
      rng.normal(0, 0.5, channels), rng.uniform(0.5, 2, channels))]


def _layer(cls, shape, dtype="float32", **kwargs):
  """A built batch norm of ``cls`` with PyTorch's settings and ``_weights``."""
  layer = cls(dtype=dtype, **_TORCH, **kwargs)
  layer.build(shape)
  layer.set_weights(_weights(shape[-1]))
  return layer


def _hard_batch(shape, seed=0):
  """Channels whose mean is 10 to 20 standard deviations."""
  rng = np.random.default_rng(seed)
  c = shape[-1]
  return (rng.normal(1.0, 0.1, c) + rng.uniform(0.05, 0.1, c)
          * rng.standard_normal(shape)).astype(np.float32)


def _relative_error(got, want):
  """max|got - want| / max|want|."""
  return np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()


def _train_forward(layer, x, dy):
  """Training-mode output and input gradient (for output gradient dy)."""
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=True)
  return y.numpy(), tape.gradient(y, x, output_gradients=dy).numpy()


def test_training_mode_is_as_precise_as_float64_where_keras_is_not():
  shape = [4, 256, 256, 2]
  x = _hard_batch(shape)
  dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
  want_y, want_dx = _train_forward(_layer(_BN, shape, "float64"),
                                   x.astype(np.float64), dy.astype(np.float64))
  for fused in (None, False):  # the fused-kernel path and the other one
    layer = _layer(_PRECISE, shape, fused=fused)
    assert layer.fused is (fused is None)
    y, dx = _train_forward(layer, x, dy)
    assert _relative_error(y, want_y) < _TOLERANCE
    assert _relative_error(dx, want_dx) < _TOLERANCE
  for fused in (None, False):
    y, _ = _train_forward(_layer(_BN, shape, fused=fused), x, dy)
    assert _relative_error(y, want_y) > 5 * _TOLERANCE


def test_the_gpu_backward_form_gives_the_same_gradients(monkeypatch):
  # On a GPU the training-mode gradient kernel reads cuDNN's saved inverse
  # deviation, not our variance, so there the layer takes the
  # inference-mode gradient kernel plus the batch statistics' terms; that
  # form, run here on the CPU, must give the gradients of the other.
  shape = [4, 16, 16, 3]
  x = tf.constant(_hard_batch(shape))
  dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)

  def gradients():
    layer = _layer(_PRECISE, shape)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
    return tape.gradient(y, [x, layer.gamma, layer.beta],
                         output_gradients=dy)
  cpu = gradients()
  monkeypatch.setattr(precise_batchnorm, "_gradient_kernel_reads_variance",
                      lambda: False)
  for got, want in zip(gradients(), cpu):
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("shape", [[2, 3, 4, 3], [24, 3]])
def test_moving_statistics_are_updated_as_keras_fused_layer(shape):
  # Small integers: every float32 sum is exact, so the batch moments are
  # the same whoever computes them.
  x = np.arange(np.prod(shape)).reshape(shape) % 5
  layer = _layer(_PRECISE, shape)
  before = [w.numpy() for w in (layer.moving_mean, layer.moving_variance)]
  layer(tf.constant(x, tf.float32), training=True)
  flat = x.reshape(-1, shape[-1]).astype(np.float64)
  unbiased = flat.var(0) * len(flat) / (len(flat) - 1)
  for got, old, batch in zip((layer.moving_mean, layer.moving_variance),
                             before, (flat.mean(0), unbiased)):
    np.testing.assert_allclose(got, 0.9 * old + 0.1 * batch, rtol=1e-6)
  if len(shape) == 4:  # Keras' fused layer: the unbiased variance too
    keras = _layer(_BN, shape)
    keras(tf.constant(x, tf.float32), training=True)
    for got, want in zip(layer.weights, keras.weights):
      np.testing.assert_allclose(got, want, rtol=1e-6)


def _conv_bn_model(bn_class):
  """A convolution and a batch norm of ``bn_class``, named conv and bn."""
  inputs = tf.keras.Input([8, 8, 3])
  x = tf.keras.layers.Conv2D(4, 3, name="conv")(inputs)
  return tf.keras.Model(inputs, bn_class(name="bn", **_TORCH)(x))


def test_variables_and_checkpoints_are_keras_layers(tmp_path):
  keras, precise = _conv_bn_model(_BN), _conv_bn_model(_PRECISE)
  assert ([(w.name, w.shape, w.trainable) for w in precise.weights]
          == [(w.name, w.shape, w.trainable) for w in keras.weights])
  keras.get_layer("bn").set_weights(_weights(4))
  for path in (str(tmp_path / "ckpt"), str(tmp_path / "weights.h5")):
    keras.save_weights(path)
    precise.load_weights(path)
    for got, want in zip(precise.weights, keras.weights):
      np.testing.assert_array_equal(got, want)
  # Object-based checkpoints: the same keys.
  keys = []
  for model in (keras, precise):
    prefix = tf.train.Checkpoint(model=model).write(
        str(tmp_path / model.layers[-1].__class__.__name__))
    keys.append(sorted(name for name, _ in tf.train.list_variables(prefix)))
  assert keys[0] == keys[1]


@pytest.mark.parametrize("shape,fused", [([2, 5, 5, 3], None),
                                         ([2, 5, 5, 3], False),
                                         ([6, 3], None)])
def test_inference_is_keras_layers_computation(shape, fused):
  x = tf.constant(_hard_batch(shape))
  precise = _layer(_PRECISE, shape, fused=fused)
  keras = _layer(_BN, shape, fused=fused)
  np.testing.assert_array_equal(precise(x, training=False),
                                keras(x, training=False))
  # A frozen layer normalises with its moving statistics and keeps them.
  precise.trainable = keras.trainable = False
  np.testing.assert_array_equal(precise(x, training=True),
                                keras(x, training=False))
  for got, want in zip(precise.weights, _weights(shape[-1])):
    np.testing.assert_array_equal(got, want)


def test_keras_applications_backbones_are_rebuilt_with_precise_layers():
  model = backbones.build_backbone("mobilenet_v2", 32)
  keras = tf.keras.applications.MobileNetV2(
      input_shape=(32, 32, 3), include_top=False, weights=None)
  norms = [l for l in model.layers if isinstance(l, _BN)]
  assert norms and all(isinstance(l, _PRECISE) for l in norms)
  # Every other layer as Keras builds it (the inputs' names are numbered).
  assert ([(l.name, type(l).__name__) for l in model.layers[1:]
           if not isinstance(l, _BN)] ==
          [(l.name, type(l).__name__) for l in keras.layers[1:]
           if not isinstance(l, _BN)])
  assert ([(w.name, w.shape) for w in model.weights] ==
          [(w.name, w.shape) for w in keras.weights])
  assert [l.epsilon for l in norms] == [
      l.epsilon for l in keras.layers if isinstance(l, _BN)]


def test_mixed_precision_normalises_in_float32():
  shape = [2, 4, 4, 3]
  x = _hard_batch(shape)
  want = _layer(_PRECISE, shape)(x, training=True)
  layer = _layer(_PRECISE, shape, "mixed_float16")
  got = layer(tf.constant(x, tf.float16), training=True)
  assert got.dtype == tf.float16 and layer.moving_mean.dtype == tf.float32
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-2)

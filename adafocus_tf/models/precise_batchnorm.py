"""Batch norm whose training-mode moments are as precise as PyTorch's.

Keras' ``BatchNormalization`` sums a channel's N*H*W values in float32 in
training mode (fused kernel or ``tf.nn.moments``), so a batch's mean and
variance carry a relative error of up to 1e-4 at the paper's shapes, more
the fewer threads share the sum; the normalisation amplifies it where a
channel's mean is large next to its standard deviation, and it grows layer
by layer to 1e-4 to 1e-2 at the last layer of a float32 training forward
(issue 24; docs/BENCHMARKS.md). PyTorch's CPU kernel accumulates in double,
in two passes (the mean, then the squared deviations from it).
``PreciseBatchNormalization`` makes the same two passes, summing at most
``_FLOAT32_VALUES`` values in float32 (the image rows, or whole images when
they are that small) and the partial sums in float64. Then:

  * fused layers (Keras' choice for 4-D inputs): TensorFlow's fused kernel
    normalises with these moments (in inference mode, one pass), and its
    training-mode gradient kernel, given the same moments, is the backward
    pass (its two sums stay float32, as in Keras' layer); where a GPU is
    visible, whose cuDNN kernel cannot be given them, the inference-mode
    gradient kernel plus the statistics' terms, one pass more;
  * other layers (the dense layers' batch norms, ``fused=False``,
    float64): ``x * scale + offset``, and PyTorch's backward formula with
    its two sums accumulated as the moments are.

Everything else is Keras' layer: the arguments, the variables and their
names (so checkpoints and converted weights load unchanged), the
moving-average update and inference, which runs the parent's code on the
moving statistics. The moving variance is updated with the unbiased batch
variance (times n / (n - 1)), as by PyTorch and by Keras' fused layer (every
convolution's batch norm here was one); Keras' unfused layer (the dense
layers' batch norms) used the biased one.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

_HALF = (tf.float16, tf.bfloat16)
# PyTorch's batch-norm defaults (eps 1e-5, running-average momentum 0.1, so
# Keras' 0.9), which converted official weights were trained with.
TORCH_DEFAULTS = dict(epsilon=1e-5, momentum=0.9)
# Values summed in float32 before the float64 sums, at most (or one image
# row, if longer): short sums, whose float32 rounding is a few ulps.
_FLOAT32_VALUES = 256


def _channel_sums(x):
  """Float64 sums of ``x`` over every axis but the last (the channels).

  The innermost reduced axis (an image row), with the one before it when
  both hold at most ``_FLOAT32_VALUES`` values and are known, is summed in
  ``x``'s dtype, the rest in float64: one pass over ``x`` in its own dtype,
  and the float64 pass reads a row's or an image's share of it.
  """
  rank = x.shape.rank
  if rank > 2:
    rows, cols = x.shape[-3:-1]
    small = rank > 3 and rows and cols and rows * cols <= _FLOAT32_VALUES
    x = tf.reduce_sum(x, axis=[rank - 3, rank - 2] if small else rank - 2)
  return tf.reduce_sum(tf.cast(x, tf.float64), axis=list(range(
      x.shape.rank - 1)))


def _moments(x, count):
  """Batch mean and biased variance of ``x`` [..., C], in two passes.

  Args:
    x: the batch.
    count: float64, the values per channel.

  Returns:
    (mean rounded to ``x``'s dtype, as PyTorch's kernel rounds it before
    the second pass; float64 variance).
  """
  mean = tf.cast(_channel_sums(x) / count, x.dtype)
  return mean, _channel_sums(tf.math.squared_difference(x, mean)) / count


def _gradient_kernel_reads_variance() -> bool:
  """Whether the training-mode gradient kernel will read our variance.

  TensorFlow's CPU kernels (oneDNN's and Eigen's) save and read the batch
  variance; cuDNN's saves and reads the inverse deviation, so where a GPU
  takes the ops the kernel cannot be handed our moments.
  """
  return not tf.config.list_logical_devices("GPU")


def _fused_normalize(x, gamma, beta, mean, variance, epsilon, count):
  """The fused kernel normalising ``x`` [..., C] with given batch moments.

  Args:
    x: the batch.
    gamma: [C] float32 scale.
    beta: [C] float32 offset.
    mean: [C] float32 batch mean, no gradient.
    variance: [C] float32 biased batch variance, no gradient.
    epsilon: added to the variance.
    count: float64, the values per channel.

  Returns:
    The normalised batch; its gradient flows to ``x`` through the batch
    statistics too.
  """
  def kernel(x, scale, offset):
    """(x - mean) * scale / sqrt(variance + epsilon) + offset, one pass."""
    return tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=mean, variance=variance,
        epsilon=epsilon, is_training=False)

  def gradient(dy, x, gamma, reserve, training):
    """dx, dgamma, dbeta: the statistics' terms in dx only if training."""
    return tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=dy, x=x, scale=gamma, reserve_space_1=mean,
        reserve_space_2=variance, reserve_space_3=reserve, epsilon=epsilon,
        is_training=training)[:3]

  @tf.custom_gradient
  def forward(x, gamma, beta):
    y, _, _, _, _, reserve = kernel(x, gamma, beta)

    def backward(dy):
      if _gradient_kernel_reads_variance():
        return gradient(dy, x, gamma, reserve, training=True)
      # The gradient with the statistics held fixed (its inputs mean the
      # same on every device), plus the statistics' own terms,
      # -gamma / std * (dbeta + x_hat * dgamma) / n, by the forward kernel:
      # one more pass.
      dx, dgamma, dbeta = gradient(dy, x, gamma, reserve, training=False)
      k = -gamma * tf.math.rsqrt(variance + epsilon) / tf.cast(count,
                                                             tf.float32)
      return dx + kernel(x, k * dgamma, k * dbeta)[0], dgamma, dbeta
    return y, backward
  shape = tf.shape(x)
  y = forward(tf.reshape(x, [-1, 1, 1, x.shape[-1]]), gamma, beta)
  return tf.reshape(y, shape)


def _normalize(x, gamma, beta, mean, inv_std, count):
  """``(x - mean) * inv_std * gamma + beta`` with PyTorch's training backward.

  Args:
    x: [..., C] the batch.
    gamma: [C] scale.
    beta: [C] offset.
    mean: [C] the batch mean (``x``'s dtype), no gradient.
    inv_std: [C] 1 / sqrt(batch variance + epsilon), no gradient.
    count: float64, the values per channel.

  Returns:
    The normalised batch; its gradient flows to ``x`` through the batch
    statistics, with the backward pass's sums accumulated in float64.
  """
  @tf.custom_gradient
  def forward(x, gamma, beta):
    scale = gamma * inv_std
    y = x * scale + (beta - mean * scale)

    def backward(dy):
      centred = x - mean
      sum_dy = _channel_sums(dy)
      sum_dy_centred = _channel_sums(dy * centred)
      mean_dy = tf.cast(sum_dy / count, x.dtype)
      k = tf.cast(sum_dy_centred / count, x.dtype) * inv_std * inv_std
      dx = (dy - mean_dy - centred * k) * scale
      return (dx, tf.cast(sum_dy_centred, x.dtype) * inv_std,
              tf.cast(sum_dy, x.dtype))
    return y, backward
  return forward(x, gamma, beta)


class PreciseBatchNormalization(tf.keras.layers.BatchNormalization):
  """``BatchNormalization`` with float64-accumulated training-mode moments.

  Takes ``BatchNormalization``'s arguments, over the last axis only, without
  renorm, virtual batches, an adjustment or synchronisation. In training
  mode the batch is normalised with its biased variance and the moving
  averages are updated as Keras' fused layer updates them (the mean, and
  the unbiased variance, by ``momentum``); inference (``training=False``,
  or a layer that is not trainable) is Keras' layer. 16-bit inputs are
  normalised in float32 arithmetic, as Keras does.

  Raises:
    ValueError: an unsupported option, or an axis other than the last.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    if (self.renorm or self.virtual_batch_size is not None or
        self.adjustment is not None or self.synchronized):
      raise ValueError("PreciseBatchNormalization supports none of renorm, "
                       "virtual_batch_size, adjustment, synchronized")

  def build(self, input_shape):
    super().build(input_shape)
    if self.axis != [len(input_shape) - 1]:
      raise ValueError(f"{self.name}: PreciseBatchNormalization normalises "
                       f"the last axis only, not {self.axis}")

  def call(self, inputs, training=None):
    """Normalised ``inputs``: batch statistics when training, else moving.

    Args:
      inputs: [..., C].
      training: Keras' training flag (``None``: the learning phase).
    """
    return tf.__internal__.smart_cond.smart_cond(
        self._get_training_value(training), lambda: self._train(inputs),
        lambda: super(PreciseBatchNormalization, self).call(inputs,
                                                            training=False))

  def _train(self, inputs):
    """The training-mode output; queues the moving-average updates."""
    inputs = tf.cast(inputs, self.compute_dtype)
    x = tf.cast(inputs, tf.float32) if inputs.dtype in _HALF else inputs
    channels = x.shape[-1:]
    gamma = (tf.convert_to_tensor(self.gamma) if self.scale
             else tf.ones(channels, self._param_dtype))
    beta = (tf.convert_to_tensor(self.beta) if self.center
            else tf.zeros(channels, self._param_dtype))
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float64)
    mean, variance = _moments(x, count)
    if self.fused:
      # The kernel takes the 16-bit batch itself, with float32 parameters.
      outputs = _fused_normalize(inputs, gamma, beta, tf.cast(mean, tf.float32),
                                 tf.cast(variance, tf.float32), self.epsilon,
                                 count)
    else:
      inv_std = tf.cast(tf.math.rsqrt(variance + self.epsilon), x.dtype)
      outputs = tf.cast(_normalize(x, tf.cast(gamma, x.dtype),
                                   tf.cast(beta, x.dtype), mean, inv_std,
                                   count), inputs.dtype)
    # Keras' own update, guarded against empty batches as Keras guards it;
    # n / (n - 1) with n - 1 at least 1, as TensorFlow's fused kernel.
    size = tf.shape(inputs)[0] if self._support_zero_size_input() else None
    unbiased = variance * count / tf.maximum(count - 1, 1)
    self.add_update(lambda: self._assign_moving_average(
        self.moving_mean, mean, self.momentum, size))
    self.add_update(lambda: self._assign_moving_average(
        self.moving_variance, unbiased, self.momentum, size))
    return outputs


def replace_batch_norms(model: tf.keras.Model,
                        make_layer: Callable[[dict], tf.keras.layers.Layer]
                        ) -> tf.keras.Model:
  """A copy of a functional model with other batch-norm layers, same weights.

  Args:
    model: a functional ``tf.keras.Model`` (a ``keras.applications`` one).
    make_layer: builds the new layer from a ``BatchNormalization``'s config
      (``PreciseBatchNormalization.from_config``).

  Returns:
    The copy: every layer rebuilt from its config (names kept), each batch
    norm by ``make_layer``, the weights of ``model`` assigned.
  """
  def clone(layer):
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      return make_layer(layer.get_config())
    return layer.__class__.from_config(layer.get_config())
  copy = tf.keras.models.clone_model(model, clone_function=clone)
  copy.set_weights(model.get_weights())
  return copy

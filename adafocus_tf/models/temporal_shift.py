"""Temporal shift (TSM, Lin et al. 2019; docs/METHOD.md section 3).

A 2-D CNN applied frame by frame sees no time; TSM lets it exchange
information between neighbouring frames at no cost in multiply-accumulates
by moving a fraction of the channels one frame along the time axis inside
the network. With ``fold = C // shift_div`` and a clip x[0..T-1]:

  * channels ``[0, fold)`` are shifted "left": ``out[t] = x[t + 1]`` (each
    frame sees the next frame's values), ``out[T-1] = 0``;
  * channels ``[fold, 2 fold)`` are shifted "right": ``out[t] = x[t - 1]``
    (each frame sees the previous frame's values), ``out[0] = 0``;
  * channels ``[2 fold, C)`` are unchanged.

This is the convention of TSM's reference code (``ops/temporal_shift.py``,
used unchanged by the AdaFocus reference): ``out[:, :-1, :fold] =
x[:, 1:, :fold]``, ``out[:, 1:, fold:2fold] = x[:, :-1, fold:2fold]``, zeros
where no neighbour exists (the clip's ends). When ``C < shift_div`` the fold
is empty and the layer is the identity.

The layer works on the folded batch a per-frame CNN sees: [B*T, H, W, C]
with the T frames of each video consecutive ("video-major", as
``tf.reshape([B, T, ...], [B*T, ...])`` lays them out), so it can sit
anywhere inside an ordinary 2-D backbone. It has no weights.
"""
from __future__ import annotations

import tensorflow as tf


# Registered so that Keras can rebuild a saved TSM model from its config.
@tf.keras.utils.register_keras_serializable(package="adafocus_tf")
class TemporalShift(tf.keras.layers.Layer):
  """Shifts 1/``shift_div`` of the channels one frame forward and as many back.

  Args:
    num_frames: T, frames per video in the folded batch; the batch size
      must be a multiple of it.
    shift_div: the shifted fraction's denominator: ``C // shift_div``
      channels go each way (8 in TSM and AdaFocus).
    **kwargs: Keras layer arguments (``name``, ``dtype``).

  Call args:
    inputs: [B*T, H, W, C] (any rank >= 2 with channels last: the time
      axis is split off the batch axis, every other axis is kept).

  Returns:
    A tensor of the input's shape and dtype.
  """

  def __init__(self, num_frames: int, shift_div: int = 8, **kwargs):
    super().__init__(**kwargs)
    if num_frames < 1:
      raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if shift_div < 1:
      raise ValueError(f"shift_div must be >= 1, got {shift_div}")
    self.num_frames = int(num_frames)
    self.shift_div = int(shift_div)

  def call(self, inputs):
    channels = inputs.shape[-1]
    if channels is None:
      raise ValueError("TemporalShift needs a known channel count")
    fold = channels // self.shift_div
    if fold == 0:
      return inputs
    shape = tf.shape(inputs)
    # [B*T, ...] -> [B, T, ...]: frames of one video are consecutive.
    x = tf.reshape(inputs, tf.concat([[-1, self.num_frames], shape[1:]], 0))
    rank = len(inputs.shape) + 1
    # Pads one zero frame at the end (left shift) or the start (right
    # shift) of the time axis.
    at_end = [[0, 0], [0, 1]] + [[0, 0]] * (rank - 2)
    at_start = [[0, 0], [1, 0]] + [[0, 0]] * (rank - 2)
    left = tf.pad(x[:, 1:, ..., :fold], at_end)                # x[t + 1]
    right = tf.pad(x[:, :-1, ..., fold:2 * fold], at_start)    # x[t - 1]
    out = tf.concat([left, right, x[..., 2 * fold:]], axis=-1)
    return tf.reshape(out, shape)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(num_frames=self.num_frames, shift_div=self.shift_div)
    return config

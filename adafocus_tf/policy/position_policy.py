"""AdaFocusV2's patch policies: deterministic, trained by backpropagation.

Unlike V1's stochastic PPO actor (``networks.py``), a V2 policy outputs a
patch position a = (a_y, a_x) in [0, 1]^2 directly (docs/METHOD.md V2-3,
V2-6); the patch is cut at the continuous offset a (S - P) by bilinear
sampling, so the classification losses train the policy through the crop.
Both read the glance feature maps with the gradient stopped: the policy
never trains the glance net.

  * ``RecurrentPositionPolicy`` (``model.variant = v2``): a position per
    frame. 1x1 conv + batch norm + tanh, flatten, dense + batch norm +
    tanh, a GRU over the frames, dense 2 + sigmoid.
  * ``VideoPositionPolicy`` (``v2_tsm``): one position per video, from the
    glance maps of all glance frames stacked on channels. 1x1 conv + batch
    norm + tanh, flatten, dense layers each + batch norm + tanh, dense 2 +
    sigmoid.

Batch norms use PyTorch's epsilon and momentum, so converted official
weights give the official outputs.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision
from adafocus_tf.policy import greedy

# PyTorch's batch-norm defaults (eps 1e-5, running-average momentum 0.1).
_TORCH_BN = dict(epsilon=1e-5, momentum=0.9)
# Row, column of a position.
POSITION_DIMS = 2


def _bn(name, **kwargs):
  return precise_batchnorm.PreciseBatchNormalization(name=name, **_TORCH_BN,
                                                     **kwargs)


class _Encoder(tf.keras.layers.Layer):
  """1x1 conv + BN + tanh, flatten (NHWC order), [dense + BN + tanh]..."""

  def __init__(self, conv_channels: int, widths: Sequence[int], name: str):
    super().__init__(name=name)
    self.conv = tf.keras.layers.Conv2D(conv_channels, 1, use_bias=False,
                                       name="conv")
    # Not the fused kernel: in inference mode oneDNN's graph rewrite fuses
    # FusedBatchNorm with the tanh after it and has no kernel for that
    # ("Fusion is not implemented: [FusedBatchNorm,Tanh]").
    self.conv_bn = _bn("conv_bn", fused=False)
    self.flatten = tf.keras.layers.Flatten()
    self.dense = [tf.keras.layers.Dense(w, name=f"dense_{i}")
                  for i, w in enumerate(widths)]
    self.dense_bn = [_bn(f"dense_{i}_bn") for i in range(len(widths))]

  def call(self, maps, training=False):
    x = tf.tanh(self.conv_bn(self.conv(maps), training=training))
    x = self.flatten(x)
    for dense, bn in zip(self.dense, self.dense_bn):
      x = tf.tanh(bn(dense(x), training=training))
    return x


class RecurrentPositionPolicy(tf.keras.Model):
  """A patch position per frame from that frame's and earlier glance maps.

  Args:
    conv_channels: channels of the 1x1 convolution (64 in the paper).
    hidden: width of the dense layer and of the GRU (2048).
    name: model name.
  """

  def __init__(self, conv_channels: int, hidden: int, name: str = "policy"):
    super().__init__(name=name)
    self.hidden = hidden
    self.encoder = _Encoder(conv_channels, [hidden], "encoder")
    # reset_after=True is PyTorch's GRU formulation.
    self.gru = tf.keras.layers.GRU(hidden, return_sequences=True,
                                   reset_after=True, name="gru")
    self.out = tf.keras.layers.Dense(POSITION_DIMS, dtype=precision.output_dtype(),
                                     name="out")

  def call(self, maps, training=False):
    """Positions [B, T, 2] in [0, 1] from glance maps [B, T, h, w, C].

    The maps' gradient is stopped; batch norm normalises over all B * T
    frames in training.
    """
    maps = tf.stop_gradient(maps)
    shape = tf.shape(maps)
    flat = tf.reshape(maps, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    x = self.encoder(flat, training=training)
    x = tf.reshape(x, [shape[0], shape[1], self.hidden])
    return tf.sigmoid(self.out(self.gru(x)))

  def initial_state(self, n):
    """The GRU state [n, hidden] before a video's first frame."""
    return tf.zeros([n, self.hidden], self.gru.cell.compute_dtype)

  def step(self, maps, state):
    """One frame: maps [n, h, w, C] and state -> (positions [n, 2], state)."""
    x = self.encoder(tf.stop_gradient(maps), training=False)
    h, _ = self.gru.cell(x, [state])
    return tf.sigmoid(self.out(h)), h


class VideoPositionPolicy(tf.keras.Model):
  """One patch position per video from all its glance frames' maps.

  Args:
    conv_channels: channels of the 1x1 convolution (64).
    widths: widths of the dense layers (1024, 512).
    name: model name.
  """

  def __init__(self, conv_channels: int, widths: Sequence[int],
               name: str = "policy"):
    super().__init__(name=name)
    self.encoder = _Encoder(conv_channels, list(widths), "encoder")
    self.out = tf.keras.layers.Dense(POSITION_DIMS, dtype=precision.output_dtype(),
                                     name="out")

  def call(self, maps, training=False):
    """Positions [B, 1, 2] in [0, 1] from glance maps [B, Tg, h, w, C].

    The frames' maps are stacked on channels (frame t's at t * C), the
    gradient stopped.
    """
    stacked = greedy.stack_frames(tf.stop_gradient(maps))[:, 0]
    return tf.sigmoid(self.out(self.encoder(stacked, training=training)))[
        :, None]

"""AdaFocusV2's patch policy (``model.variant = v2``): a position per frame.

1x1 conv + batch norm + tanh, flatten, dense + batch norm + tanh, a GRU
over the frames, dense 2 + sigmoid (docs/METHOD.md V2-3). What the V2
policies share is in ``position_policy.py``.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.models import gru_inference
from adafocus_tf.models import patches
from adafocus_tf.models import precision
from adafocus_tf.policy import position_policy


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
    self.encoder = position_policy.PositionEncoder(conv_channels, [hidden],
                                            "encoder")
    # reset_after=True is PyTorch's GRU formulation.
    self.gru = tf.keras.layers.GRU(hidden, return_sequences=True,
                                   reset_after=True, name="gru")
    self.out = tf.keras.layers.Dense(patches.POSITION_DIMS,
                                     dtype=precision.output_dtype(),
                                     name="out")

  def call(self, maps, training=False):
    """Positions [B, T, 2] in [0, 1] from glance maps [B, T, h, w, C].

    The maps' gradient is stopped; batch norm normalises over all B * T
    frames in training. At inference over a known T the GRU's input
    product runs once for all frames (``gru_inference``: at batch 1 each
    frame's step otherwise reads the [2048, 6144] input kernel again, as
    well as the recurrent one).
    """
    maps = tf.stop_gradient(maps)
    shape = tf.shape(maps)
    flat = tf.reshape(maps, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    x = self.encoder(flat, training=training)
    x = tf.reshape(x, [shape[0], shape[1], self.hidden])
    if gru_inference.applies(x, training):  # the same GRU, faster
      if not self.gru.built:
        self.gru.build(x.shape)
      h, _ = gru_inference.gru_sequence(self.gru.cell, x,
                                        self.initial_state(shape[0]))
    else:
      h = self.gru(x)
    return tf.sigmoid(self.out(h))

  def initial_state(self, n):
    """The GRU state [n, hidden] before a video's first frame."""
    return tf.zeros([n, self.hidden], self.gru.cell.compute_dtype)

  def step(self, maps, state):
    """One frame: maps [n, h, w, C] and state -> (positions [n, 2], state)."""
    x = self.encoder(tf.stop_gradient(maps), training=False)
    h, _ = self.gru.cell(x, [state])
    return tf.sigmoid(self.out(h)), h

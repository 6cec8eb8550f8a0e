"""AdaFocusV2's patch policy for ``v2_tsm``: one position per video.

From the glance maps of all glance frames stacked on channels: 1x1 conv +
batch norm + tanh, flatten, dense layers each + batch norm + tanh, dense 2
+ sigmoid (docs/METHOD.md V2-6). What the V2 policies share is in
``position_policy.py``.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from adafocus_tf.models import patches
from adafocus_tf.models import precision
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import position_policy


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
    self.encoder = position_policy.PositionEncoder(conv_channels, list(widths),
                                            "encoder")
    self.out = tf.keras.layers.Dense(patches.POSITION_DIMS,
                                     dtype=precision.output_dtype(),
                                     name="out")

  def call(self, maps, training=False):
    """Positions [B, 1, 2] in [0, 1] from glance maps [B, Tg, h, w, C].

    The frames' maps are stacked on channels (frame t's at t * C), the
    gradient stopped.
    """
    stacked = frame_stack.stack_frames(tf.stop_gradient(maps))[:, 0]
    return tf.sigmoid(self.out(self.encoder(stacked, training=training)))[
        :, None]

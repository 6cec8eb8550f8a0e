"""What AdaFocusV2's two patch policies share: the glance-map encoder.

Unlike V1's stochastic PPO actor (``actor_network.py``), a V2 policy outputs
a patch position a = (a_y, a_x) in [0, 1]^2 directly (docs/METHOD.md V2-3,
V2-6); the patch is cut at the continuous offset a (S - P) by bilinear
sampling, so the classification losses train the policy through the crop.
Both read the glance feature maps with the gradient stopped: the policy
never trains the glance net.

  * ``recurrent_position_policy.RecurrentPositionPolicy``
    (``model.variant = v2``): a position per frame.
  * ``video_position_policy.VideoPositionPolicy`` (``v2_tsm``): one
    position per video.

Both start with ``PositionEncoder`` (this module): 1x1 conv + batch norm + tanh, flatten, then
dense layers each + batch norm + tanh. Batch norms use PyTorch's epsilon
and momentum, so converted official weights give the official outputs.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from adafocus_tf.models import precise_batchnorm

def _bn(name, **kwargs):
  return precise_batchnorm.PreciseBatchNormalization(
      name=name, **precise_batchnorm.TORCH_DEFAULTS, **kwargs)


class PositionEncoder(tf.keras.layers.Layer):
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

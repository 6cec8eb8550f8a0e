"""The X3D network (docs/METHOD.md V2-11.4; official
``archs/x3d_video_model_builder.py`` ``X3D``), channels-last."""
from __future__ import annotations

from typing import Union

import tensorflow as tf

from adafocus_tf.models.x3d import head as head_lib
from adafocus_tf.models.x3d import settings as settings_lib
from adafocus_tf.models.x3d import stage as stage_lib
from adafocus_tf.models.x3d import stem as stem_lib

# The head's dropout in every official config (``MODEL.DROPOUT_RATE``).
DROPOUT = 0.5


class X3D(tf.keras.Model):
  """Clips [B, T, H, W, 3] -> logits [B, C] (``call``), feature maps
  [B, T, H/32, W/32, F] (``features``) and per-frame features [B, T, F]
  (``frame_features``); T is kept (no temporal stride), H and W must be
  multiples of 32 for the maps to tile the frame as the official's.

  Layers follow the official module tree: ``s1`` (stem), ``s2`` to ``s5``
  (stages of ``pathway0_res<i>`` blocks), ``head``.

  Args:
    settings: an ``X3DSettings`` or a preset's name (xs, s, m, l).
    num_classes: classes of the head's ``projection``.
    dropout: the head's dropout rate.
    input_size: the frame side the net reads (``map_shape``'s; default
      the preset's training crop, as the official head's pool size).
    name: model name.
  """

  def __init__(self, settings: Union[str, settings_lib.X3DSettings],
               num_classes: int, dropout: float = DROPOUT,
               input_size: int = 0, name: str = "x3d"):
    super().__init__(name=name)
    if isinstance(settings, str):
      settings = settings_lib.preset(settings)
    self.settings = settings
    self.input_size = input_size or settings.crop_size
    self.stem = stem_lib.X3DStem(settings.stem_width,
                                 settings_lib.STEM_TEMPORAL_KERNEL, name="s1")
    self.stages = []
    in_width = settings.stem_width
    for i, (width, inner, depth) in enumerate(zip(
        settings.stage_widths(), settings.stage_inner_widths(),
        settings.stage_depths())):
      self.stages.append(stage_lib.X3DStage(
          in_width, width, inner, depth, settings_lib.STAGE_STRIDE,
          settings_lib.BLOCK_TEMPORAL_KERNEL, name=f"s{i + 2}"))
      in_width = width
    self.head = head_lib.X3DHead(settings.feature_dim, settings.dim_c5,
                                 num_classes, dropout)

  @property
  def feature_dim(self) -> int:
    """F, the feature map's channels."""
    return self.settings.feature_dim

  @property
  def map_shape(self):
    """(h, w, F) of the feature map of ``input_size`` frames (each stride-2
    convolution rounds up)."""
    side = -(-self.input_size // settings_lib.SPATIAL_STRIDE)
    return (side, side, self.feature_dim)

  def features(self, clip, training=False):
    """Feature maps [B, T, H/32, W/32, F] of clips [B, T, H, W, 3]."""
    x = self.stem(clip, training=training)
    for stage in self.stages:
      x = stage(x, training=training)
    return self.head.feature_map(x, training=training)

  @staticmethod
  def frame_features(maps):
    """Per-frame features [B, T, F]: a map's mean over space."""
    return tf.reduce_mean(maps, axis=[2, 3])

  def call(self, clip, training=False):
    return self.head.classify(self.features(clip, training), training)

"""The glance network: a cheap CNN over each whole frame."""
import tensorflow as tf

from adafocus_tf.models import backbones
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import precision


class GlanceNet(tf.keras.Model):
  """Looks at whole frames: feature map for the policy, vector for the classifier.

  Args:
    backbone: backbone name (see ``backbones.build_backbone``).
    glance_size: side the frame is resized to first (box-averaged when it
      shrinks, so detail finer than the glance resolution is gone).
    width: backbone width multiplier.
    num_classes: classes of the stage-0 head.
    weights: optional local backbone weights file.
    name: model name.
    temporal_shift_frames: T > 0 makes the backbone a TSM one (see
      ``backbones.build_backbone``): every call must then get whole videos,
      [B*T, S, S, 3] with each video's T frames consecutive. 0: no shift.
    shift_div: TSM's fold denominator.
    resize: ``area`` (box-average a larger frame) or ``bilinear_corners``
      (bilinear with aligned corners, as the official V2 ResNet glance).
  """

  def __init__(self, backbone: str, glance_size: int, width: float,
               num_classes: int, weights: str = "", name: str = "glance",
               temporal_shift_frames: int = 0, shift_div: int = 8,
               resize: str = "area"):
    super().__init__(name=name)
    self.glance_size = glance_size
    self.resize_method = resize
    # The resize in ``call`` is per frame, so it can precede the shift.
    self.backbone = backbones.build_backbone(
        backbone, glance_size, width, weights,
        temporal_shift_frames=temporal_shift_frames, shift_div=shift_div)
    self.backbone_runner = batchnorm_folding.BackboneRunner(self.backbone)
    self.pool = tf.keras.layers.GlobalAveragePooling2D()
    # Per-frame logits: stage 0's fine-tuning of the backbone alone, and the
    # glance half of the ``logit_mean`` prediction (Something-Something).
    self.head = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(),
                                      name="glance_head")

  @property
  def feature_dim(self) -> int:
    return self.backbone.output_shape[-1]

  @property
  def map_shape(self):
    """(h, w, C) of the feature map."""
    return tuple(self.backbone.output_shape[1:])

  def resize(self, images):
    if images.shape[1] == self.glance_size and images.shape[2] == self.glance_size:
      return images
    size = [self.glance_size] * 2
    if self.resize_method == "bilinear_corners":
      return tf.cast(tf.compat.v1.image.resize_bilinear(
          images, size, align_corners=True), images.dtype)
    method = "area" if images.shape[1] > self.glance_size else "bilinear"
    return tf.cast(tf.image.resize(images, size, method), images.dtype)

  def call(self, images, training=False):
    """Maps [N, S, S, 3] frames to (feature map [N, h, w, C], pooled [N, C])."""
    fmap = self.backbone_runner(self.resize(images), training)
    return fmap, self.pool(fmap)

  def logits(self, pooled):
    return self.head(pooled)


def from_config(cfg) -> GlanceNet:
  """The glance net of an ``ExperimentConfig`` (a TSM one for two streams).

  Args:
    cfg: the experiment config (``model`` and ``data`` sections).
  """
  m, d = cfg.model, cfg.data
  shift_frames = d.glance_frames if m.temporal_shift else 0
  return GlanceNet(m.glance_backbone, m.glance_size, m.glance_width,
                   d.num_classes, m.glance_weights,
                   temporal_shift_frames=shift_frames, shift_div=m.shift_div,
                   resize=m.glance_resize)

"""The focus network: an expensive CNN that sees only the patch."""
import tensorflow as tf

from adafocus_tf.models import backbones
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import precision


class FocusNet(tf.keras.Model):
  """Maps patches (or, in stage 0, whole frames) to a pooled feature vector.

  The backbone accepts any input size, so the same weights serve the
  stage-0 fine-tuning on whole frames and the P x P patches afterwards.

  Args:
    backbone: backbone name (see ``backbones.build_backbone``).
    num_classes: classes of the stage-0 head.
    weights: optional local backbone weights file.
    name: model name.
    temporal_shift_frames: T > 0 makes the backbone a TSM one (see
      ``backbones.build_backbone``): every call must then get whole videos,
      [B*T, P, P, 3] with each video's T patches consecutive. 0: no shift.
    shift_div: TSM's fold denominator.
  """

  def __init__(self, backbone: str, num_classes: int, weights: str = "",
               name: str = "focus", temporal_shift_frames: int = 0,
               shift_div: int = 8):
    super().__init__(name=name)
    self.backbone = backbones.build_backbone(
        backbone, None, 1.0, weights,
        temporal_shift_frames=temporal_shift_frames, shift_div=shift_div)
    self.backbone_runner = batchnorm_folding.BackboneRunner(self.backbone)
    self.pool = tf.keras.layers.GlobalAveragePooling2D()
    self.head = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(),
                                      name="focus_head")

  @property
  def feature_dim(self) -> int:
    return self.backbone.output_shape[-1]

  def call(self, images, training=False):
    """Maps [N, P, P, 3] images to [N, D] features."""
    return self.pool(self.backbone_runner(images, training))

  def logits(self, pooled):
    return self.head(pooled)

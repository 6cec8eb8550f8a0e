"""Presets of the two-stream Something-Something family (docs/METHOD.md
section 3): ``sthv1``, ``sthv2``, ``jester``. TSM backbones, 8 glance and
12 focus frames sampled independently, one patch per video (P = 144) from
a continuous policy, logits = mean focus logits + mean glance logits, no
flip.
"""
from adafocus_tf.config import (DataConfig, ExperimentConfig, ModelConfig,
                                PPOConfig, StageConfig)

# Classes of the Something-Something-style datasets (their official lists).
CLASSES = {"sthv1": 174, "sthv2": 174, "jester": 27}


def something(dataset: str) -> ExperimentConfig:
  """Something-Something V1/V2 or Jester: TSM, two streams."""
  return ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=CLASSES[dataset],
                      num_frames=8, glance_frames=8, focus_frames=12,
                      # Labels depend on direction ("left to right").
                      flip=False),
      model=ModelConfig(
          variant="two_stream",
          glance_backbone="mobilenet_v2_torch", focus_backbone="resnet50",
          temporal_shift=True, patch_size=144, patch_per_video=True,
          policy="continuous", policy_batchnorm=True,
          # The focus head's dropout of the official stage 1
          # (train_stage1.sh; its stage 3 has none).
          policy_conv_channels=64, classifier="logit_mean", dropout=0.5),
      stage1=StageConfig(epochs=10, backbone_lr=1e-5, classifier_lr=0.01),
      stage2=PPOConfig(epochs=50),
      stage3=StageConfig(epochs=10, backbone_lr=5e-4, classifier_lr=5e-4))


PRESETS = {name: (lambda name=name: something(name)) for name in CLASSES}

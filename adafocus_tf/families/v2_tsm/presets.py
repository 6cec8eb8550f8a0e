"""Presets of V2-TSM, AdaFocusV2's two-stream family (docs/METHOD.md V2-6):
``sthv1``, ``sthv2``, ``jester``."""
from adafocus_tf.config import ExperimentConfig, ModelConfig
from adafocus_tf.families.two_stream import presets as two_stream_presets
from adafocus_tf.families.v2 import presets as v2_presets

# Learning-rate multipliers of the groups (docs/METHOD.md V2-5): no
# classifier of its own.
RATIOS = {"policy": 0.01, "glance": 0.5, "focus": 1.0}


def something(dataset: str) -> ExperimentConfig:
  """V2-TSM on Something-Something V1/V2 and Jester."""
  cfg = two_stream_presets.something(dataset)
  cfg.model = ModelConfig(
      variant="v2_tsm", glance_backbone="mobilenet_v2_torch",
      focus_backbone="resnet50", temporal_shift=True,
      patch_size=128 if dataset == "jester" else 144, patch_per_video=True,
      policy="continuous", policy_batchnorm=True, policy_conv_channels=64,
      policy_mlp=(1024, 512), classifier="logit_mean", dropout=0.5,
      head_dropout=0.5)
  cfg.stage1 = v2_presets.end_to_end_stage(0.01, 32, RATIOS, 50, 50, 5e-4,
                                           grad_clip_norm=20.0)
  return v2_presets.without_policy_stages(cfg)


PRESETS = {name: (lambda name=name: something(name))
           for name in two_stream_presets.CLASSES}

"""Presets of the AdaFocusV2 family (docs/METHOD.md V2-3 to V2-5): one
end-to-end stage, the deterministic recurrent policy, the FrameExit-style
classifier, the coarse-to-fine frame order.

  * ``actnet``, ``fcvid``, ``minik``: the paper's settings (MobileNetV2
    glance, ResNet-50 focus, P = 128).
  * ``synthetic``, ``synthetic_objects``: the V1 CPU presets' data and
    backbones, trained as V2.
"""
from adafocus_tf.config import (DataConfig, ExperimentConfig, ModelConfig,
                                StageConfig)
from adafocus_tf.families.one_stream import presets as one_stream_presets

# Learning-rate multipliers of the V2 groups relative to the base rate
# (docs/METHOD.md V2-5).
RATIOS = {"policy": 0.1, "glance": 0.5, "focus": 1.0, "classifier": 5.0}
# The cosine period of V2's schedule; it trains one epoch more, at rate 0.
_SCHEDULE_EPOCHS = 50
# Epochs of the synthetic V2 stage: a V2 step costs about twice a V1 stage-1
# step (two focus branches, the glance trained), so 3 epochs take about half
# of V1's stages 1-3 on the same CPU (docs/SYNTHETIC.md, docs/BENCHMARKS.md).
_SYNTHETIC_EPOCHS = 3
# On the objects data: 3 epochs leave V2's focus net short of reading the
# target (oracle row 90-93%), 4 reach V1's accuracy at 56% of V1's
# training wall-clock (docs/BENCHMARKS.md "V1 vs V2 on the objects dataset").
_OBJECTS_EPOCHS = 4


def end_to_end_stage(base_lr: float, batch_size: int, ratios, epochs: int,
                     schedule_epochs: int, weight_decay: float,
                     grad_clip_norm: float = 0.0) -> StageConfig:
  """V2's end-to-end stage: each group's rate is ``base_lr`` x its ratio.

  Args:
    base_lr: the base learning rate.
    batch_size: global batch size.
    ratios: group -> multiplier (``policy``, ``glance``, ``focus`` and
      optionally ``classifier``, else the focus one).
    epochs: epochs trained.
    schedule_epochs: the cosine schedule's period.
    weight_decay: L2 weight decay.
    grad_clip_norm: global gradient-norm clip (0: none).
  """
  return StageConfig(
      epochs=epochs, batch_size=batch_size, momentum=0.9,
      weight_decay=weight_decay, schedule_epochs=schedule_epochs,
      grad_clip_norm=grad_clip_norm, backbones="glance,focus",
      # Rounded: 0.003 x 0.1 is 0.00030000000000000003 in binary.
      policy_lr=round(base_lr * ratios["policy"], 12),
      glance_lr=round(base_lr * ratios["glance"], 12),
      backbone_lr=round(base_lr * ratios["focus"], 12),
      # V2-TSM has no classifier of its own: its heads train with their nets.
      classifier_lr=round(base_lr * ratios.get("classifier", ratios["focus"]),
                          12))


def without_policy_stages(cfg: ExperimentConfig) -> ExperimentConfig:
  """``cfg`` with V1's PPO and policy-patch stages at 0 epochs (V2 trains
  its policy end to end)."""
  cfg.stage2.epochs = 0
  cfg.stage3.epochs = 0
  return cfg


def paper(dataset: str, num_classes: int, base_lr: float, batch_size: int,
          multi_label: bool = False) -> ExperimentConfig:
  """AdaFocusV2 on ActivityNet / FCVID / Mini-Kinetics (MobileNetV2
  glance)."""
  return without_policy_stages(ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=num_classes,
                      multi_label=multi_label),
      model=ModelConfig(
          variant="v2", glance_backbone="mobilenet_v2_torch",
          focus_backbone="resnet50", patch_size=128, classifier="frame_exit",
          classifier_hidden=4096, dropout=0.2, head_dropout=0.2,
          policy_conv_channels=64, policy_hidden=2048, policy_batchnorm=True,
          policy="continuous", frame_order="coarse_to_fine"),
      stage1=end_to_end_stage(base_lr, batch_size, RATIOS,
                              _SCHEDULE_EPOCHS + 1, _SCHEDULE_EPOCHS, 1e-4)))


def synthetic() -> ExperimentConfig:
  """The tiny CPU preset, trained as V2 (same data and backbones as V1's)."""
  cfg = one_stream_presets.synthetic()
  m = cfg.model
  m.variant, m.classifier, m.head_dropout = "v2", "frame_exit", 0.2
  m.policy, m.policy_batchnorm, m.frame_order = (
      "continuous", True, "coarse_to_fine")
  cfg.stage1 = end_to_end_stage(0.05, 32, RATIOS, _SYNTHETIC_EPOCHS,
                                _SYNTHETIC_EPOCHS, 1e-4)
  return without_policy_stages(cfg)


def synthetic_objects() -> ExperimentConfig:
  """The V2 CPU preset on the objects dataset, one more epoch."""
  cfg = one_stream_presets.on_objects(synthetic())
  cfg.stage1.epochs = cfg.stage1.schedule_epochs = _OBJECTS_EPOCHS
  return cfg


PRESETS = {
    "actnet": lambda: paper("actnet", 200, 0.002, 32),
    "fcvid": lambda: paper("fcvid", 239, 0.002, 32, multi_label=True),
    "minik": lambda: paper("minik", 200, 0.003, 48),
    "synthetic": synthetic,
    "synthetic_objects": synthetic_objects,
}

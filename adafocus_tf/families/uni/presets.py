"""Presets of Uni-AdaFocus's ActivityNet family (docs/METHOD.md V2-11.2, U-4):
one end-to-end stage after the backbones' stage 0.

  * ``actnet``, ``fcvid``, ``minik``: the paper's settings (48 candidates,
    16 glance and 16 focus frames, MobileNetV2 glance, ResNet-50 focus,
    P = 128); ``fcvid`` and ``minik`` with the backbones in float16, as
    the official commands (``main_semiAMP.py``), ``actnet`` in float32
    (``main.py``). On a host without a GPU ``launch/train.py`` trains a
    preset's float16 in float32 (docs/METHOD.md V2-11.4).
  * ``synthetic``, ``synthetic_objects``: the V1 CPU presets' data and
    backbones, trained as Uni-AdaFocus: all 8 stored frames are
    candidates, the glance reads 4, the focus 4; regions span the same
    fraction of the patch as the paper's 96-224 around P = 128.
"""
from adafocus_tf.config import DataConfig, ExperimentConfig, ModelConfig
from adafocus_tf.config import UniConfig
from adafocus_tf.families.one_stream import presets as one_stream_presets
from adafocus_tf.families.v2 import presets as v2_presets

# Learning-rate multipliers of the groups (docs/METHOD.md V2-11.4): both
# policies 0.2, the glance net with its heads 0.5, the classifier 20.
RATIOS = {"policy": 0.2, "glance": 0.5, "focus": 1.0, "classifier": 20.0}
# The cosine period; the official loop trains epochs 0..49.
_SCHEDULE_EPOCHS = 50
# The paper's candidates, glance and focus frames.
_CANDIDATES, _GLANCE, _FOCUS = 48, 16, 16
# The official FCVID and Mini-Kinetics commands' mixed precision
# (``main_semiAMP.py``: the backbones under autocast, the rest float32,
# ``models/uni/uni_adafocus.py``).
_SEMI_AMP = "mixed_float16"
# The synthetic presets' (every stored frame a candidate).
_SYNTHETIC_GLANCE = _SYNTHETIC_FOCUS = 4
# Region sides of the synthetic presets: the paper's 96 / 128 and 224 / 128
# of the patch, rounded.
_SYNTHETIC_REGION = (0.75, 1.75)
# Epochs of the synthetic stage (docs/BENCHMARKS.md, issue 26).
_SYNTHETIC_EPOCHS = 3
_OBJECTS_EPOCHS = 4


def paper(dataset: str, num_classes: int, base_lr: float, batch_size: int,
          weight_decay: float, norm_ratio: float = 1.0,
          head_dropout: float = 0.2, multi_label: bool = False,
          mixed_precision: str = "") -> ExperimentConfig:
  """Uni-AdaFocus on ActivityNet / FCVID / Mini-Kinetics.

  Args:
    dataset: the dataset's name.
    num_classes: C.
    base_lr: the focus net's learning rate (the other groups' ``RATIOS``).
    batch_size: videos per step.
    weight_decay: SGD's weight decay.
    norm_ratio: the size regulariser's weight.
    head_dropout: the glance and focus heads' dropout.
    multi_label: multi-label targets (FCVID).
    mixed_precision: ``ExperimentConfig.mixed_precision``.
  """
  cfg = ExperimentConfig(
      mixed_precision=mixed_precision,
      data=DataConfig(dataset=dataset, num_classes=num_classes,
                      num_frames=_CANDIDATES, multi_label=multi_label),
      model=ModelConfig(
          variant="uni", glance_backbone="mobilenet_v2_torch",
          focus_backbone="resnet50", patch_size=128, classifier="pooling",
          classifier_hidden=4096, dropout=0.2, head_dropout=head_dropout,
          policy="continuous"),
      uni=UniConfig(glance_frames=_GLANCE, focus_frames=_FOCUS,
                    norm_ratio=norm_ratio),
      stage1=v2_presets.end_to_end_stage(base_lr, batch_size, RATIOS,
                                         _SCHEDULE_EPOCHS, _SCHEDULE_EPOCHS,
                                         weight_decay))
  return v2_presets.without_policy_stages(cfg)


def synthetic() -> ExperimentConfig:
  """The tiny CPU preset, trained as Uni-AdaFocus."""
  cfg = one_stream_presets.synthetic()
  return _as_uni(cfg, _SYNTHETIC_EPOCHS)


def synthetic_objects() -> ExperimentConfig:
  """The Uni-AdaFocus CPU preset on the objects dataset."""
  cfg = one_stream_presets.on_objects(one_stream_presets.synthetic())
  return _as_uni(cfg, _OBJECTS_EPOCHS)


def _as_uni(cfg: ExperimentConfig, epochs: int) -> ExperimentConfig:
  m, u = cfg.model, cfg.uni
  m.variant, m.classifier, m.head_dropout = "uni", "pooling", 0.2
  m.policy = "continuous"
  u.glance_frames, u.focus_frames = _SYNTHETIC_GLANCE, _SYNTHETIC_FOCUS
  u.min_region = round(_SYNTHETIC_REGION[0] * m.patch_size)
  u.max_region = round(_SYNTHETIC_REGION[1] * m.patch_size)
  u.spatial_hidden, u.temporal_hidden, u.mc_draws = 32, 16, 32
  # The V2 CPU preset's rates: a 20x classifier rate diverges at its base.
  cfg.stage1 = v2_presets.end_to_end_stage(0.05, 32, v2_presets.RATIOS,
                                           epochs, epochs, 1e-4)
  return v2_presets.without_policy_stages(cfg)


PRESETS = {
    "actnet": lambda: paper("actnet", 200, 0.002, 32, 2e-4),
    "fcvid": lambda: paper("fcvid", 239, 0.004, 64, 1e-4, multi_label=True,
                           mixed_precision=_SEMI_AMP),
    "minik": lambda: paper("minik", 200, 0.003, 48, 1e-4, norm_ratio=0.75,
                           head_dropout=0.1, mixed_precision=_SEMI_AMP),
    "synthetic": synthetic,
    "synthetic_objects": synthetic_objects,
}

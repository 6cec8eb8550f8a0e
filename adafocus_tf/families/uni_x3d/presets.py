"""Presets of Uni-AdaFocus's X3D family (docs/METHOD.md V2-11.4 and the
official README command of "Uni-AdaFocus-X3D with Experiments on
Kinetics-400"): ``kinetics``, and ``synthetic_x3d`` for the embedded data.

``kinetics``: X3D-S glance on 16 frames at 160 pixels, X3D-L focus on 32
patches of P = 128 chosen among 96 candidates (8.8 GFLOPs); lr 0.005 with
batch 64, weight decay 5e-5, the policies' rates x 0.4 and the glance
net's x 0.5, gradient clipping 20, dropout 0.5, ``norm_ratio`` 0.5, 50
epochs of a cosine schedule; the backbones in mixed precision (the
official ``autocast`` around both X3D nets in training). The X3D nets
start from Kinetics-trained weights, SlowFast's ``x3d_s.pyth`` and
``x3d_l.pyth`` given as ``model.glance_weights`` / ``focus_weights``
(read by ``convert/x3d.py``): no stage 0.

``synthetic_x3d``: the embedded synthetic clips (64-pixel frames) with
the ``x3d_tiny`` net as glance and focus: 4 glance frames at 32 pixels, 4
patches of 32 pixels from the 8 frames; regions span the same fraction
of the patch as the paper's 96-224 around P = 128.
"""
from adafocus_tf.config import DataConfig, ExperimentConfig, ModelConfig
from adafocus_tf.config import StageConfig, UniConfig
from adafocus_tf.data import synthetic_spec
from adafocus_tf.families.one_stream import presets as one_stream_presets
from adafocus_tf.families.v2 import presets as v2_presets

# Learning-rate multipliers of the groups (docs/METHOD.md V2-11.4): both
# policies 0.4, the glance net with its heads 0.5; no classifier of its own.
RATIOS = {"policy": 0.4, "glance": 0.5, "focus": 1.0}
BASE_LR, BATCH_SIZE, WEIGHT_DECAY, GRAD_CLIP = 0.005, 64, 5e-5, 20.0
# The cosine period; the official loop trains epochs 0..49.
EPOCHS = 50
KINETICS_CLASSES = 400
# G glance frames at the glance size, K focus frames of N candidates, P.
GLANCE, GLANCE_SIZE, FOCUS, CANDIDATES, PATCH = 16, 160, 32, 96, 128
DROPOUT, NORM_RATIO = 0.5, 0.5
# The official backbones' autocast (the policies stay float32).
MIXED_PRECISION = "mixed_float16"

# The synthetic preset: its frames and glance/focus counts, the patch,
# region sides (the paper's 96 / 128 and 224 / 128 of the patch), policy
# widths, Monte-Carlo draws, epochs, rate and weight decay.
_SYNTHETIC_GLANCE, _SYNTHETIC_FOCUS = 4, 4
_SYNTHETIC_GLANCE_SIZE = _SYNTHETIC_PATCH = 32
_SYNTHETIC_REGION = (0.75, 1.75)
_SYNTHETIC_HIDDEN, _SYNTHETIC_MC_DRAWS = 8, 8
_SYNTHETIC_EPOCHS, _SYNTHETIC_LR, _SYNTHETIC_WEIGHT_DECAY = 3, 0.05, 1e-4


def kinetics() -> ExperimentConfig:
  """Uni-AdaFocus-X3D on Kinetics-400 (module doc)."""
  cfg = ExperimentConfig(
      data=DataConfig(dataset="kinetics", num_classes=KINETICS_CLASSES,
                      num_frames=GLANCE, glance_frames=GLANCE,
                      focus_frames=CANDIDATES),
      model=ModelConfig(
          variant="uni_x3d", glance_backbone="x3d_s", focus_backbone="x3d_l",
          glance_size=GLANCE_SIZE, patch_size=PATCH, patch_per_video=True,
          policy="continuous", classifier="logit_mean", dropout=DROPOUT,
          head_dropout=DROPOUT),
      uni=UniConfig(focus_frames=FOCUS, norm_ratio=NORM_RATIO),
      stage0=StageConfig(epochs=0),
      stage1=v2_presets.end_to_end_stage(BASE_LR, BATCH_SIZE, RATIOS, EPOCHS,
                                         EPOCHS, WEIGHT_DECAY,
                                         grad_clip_norm=GRAD_CLIP),
      mixed_precision=MIXED_PRECISION)
  return v2_presets.without_policy_stages(cfg)


def synthetic_x3d() -> ExperimentConfig:
  """The embedded synthetic data with the tiny X3D (module doc)."""
  cfg = one_stream_presets.synthetic()
  d, m = cfg.data, cfg.model
  d.glance_frames, d.focus_frames = _SYNTHETIC_GLANCE, synthetic_spec.NUM_FRAMES
  d.num_frames = _SYNTHETIC_GLANCE
  m.variant, m.classifier, m.policy = "uni_x3d", "logit_mean", "continuous"
  m.glance_backbone = m.focus_backbone = "x3d_tiny"
  m.glance_size, m.patch_size = _SYNTHETIC_GLANCE_SIZE, _SYNTHETIC_PATCH
  m.patch_per_video, m.dropout, m.head_dropout = True, DROPOUT, DROPOUT
  cfg.uni = UniConfig(
      focus_frames=_SYNTHETIC_FOCUS,
      min_region=round(_SYNTHETIC_REGION[0] * _SYNTHETIC_PATCH),
      max_region=round(_SYNTHETIC_REGION[1] * _SYNTHETIC_PATCH),
      spatial_hidden=_SYNTHETIC_HIDDEN, temporal_hidden=_SYNTHETIC_HIDDEN,
      mc_draws=_SYNTHETIC_MC_DRAWS, norm_ratio=NORM_RATIO)
  cfg.stage0 = StageConfig(epochs=0)
  cfg.stage1 = v2_presets.end_to_end_stage(
      _SYNTHETIC_LR, cfg.stage1.batch_size, RATIOS,
      _SYNTHETIC_EPOCHS, _SYNTHETIC_EPOCHS, _SYNTHETIC_WEIGHT_DECAY,
      grad_clip_norm=GRAD_CLIP)
  return v2_presets.without_policy_stages(cfg)


PRESETS = {"kinetics": kinetics, "synthetic_x3d": synthetic_x3d}

"""Presets of Uni-AdaFocus's TSM family (docs/METHOD.md V2-11.4 and the official
README commands): ``sthv1``, ``sthv2``, ``jester``.

Each is the setting all three datasets were published with, P = 128 and
8 glance + 12 focus frames of 36 candidates (18.8 GFLOPs): TSM-MobileNetV2
glance, TSM-ResNet-50 focus, lr 0.02 with batch 64, weight decay 1e-3
(Something-Something V1, Jester) or 5e-4 (V2), gradient clipping 20,
dropout 0.5, ``norm_ratio`` 0.5 (Jester 0.25), 50 epochs of a cosine
schedule, mixed float16 (the official ``main.py``'s autocast; the policies
float32, ``models/uni/uni_tsm.py``; on a host without a GPU
``launch/train.py`` trains in float32, docs/METHOD.md V2-11.4). The
README's other Something-Something settings are overrides:

  * P = 96, 8 + 8 frames:  ``model.patch_size=96 uni.focus_frames=8
    data.focus_frames=24`` (8.8 GFLOPs);
  * P = 96, 8 + 12 frames: ``model.patch_size=96`` (11.8 GFLOPs);
  * P = 128, 8 + 16 frames: ``uni.focus_frames=16 data.focus_frames=48``
    (24.2 GFLOPs).

The candidates are always 3 x K, as the README's commands have them.
"""
from adafocus_tf.config import DataConfig, ExperimentConfig, ModelConfig
from adafocus_tf.config import UniConfig
from adafocus_tf.families.two_stream import presets as two_stream_presets
from adafocus_tf.families.v2 import presets as v2_presets

# Learning-rate multipliers of the groups (docs/METHOD.md V2-11.4): the
# spatial and temporal policies 0.2, the glance net with its heads and the
# spatial auxiliary head 0.5; no classifier of its own.
RATIOS = {"policy": 0.2, "glance": 0.5, "focus": 1.0}
BASE_LR, BATCH_SIZE, GRAD_CLIP = 0.02, 64, 20.0
# The cosine period; the official loop trains epochs 0..49.
EPOCHS = 50
# Weight decay and the size regulariser's weight per dataset.
WEIGHT_DECAY = {"sthv1": 1e-3, "sthv2": 5e-4, "jester": 1e-3}
NORM_RATIO = {"sthv1": 0.5, "sthv2": 0.5, "jester": 0.25}
# The published setting of every dataset: G glance frames, K focus frames
# of 3 K candidates, P.
GLANCE, FOCUS, PATCH = 8, 12, 128
CANDIDATES_PER_FOCUS = 3
# The official training step's mixed precision (the whole forward under
# autocast).
MIXED_PRECISION = "mixed_float16"


def something(dataset: str) -> ExperimentConfig:
  """Uni-AdaFocus-TSM on Something-Something V1/V2 or Jester."""
  cfg = ExperimentConfig(
      mixed_precision=MIXED_PRECISION,
      data=DataConfig(dataset=dataset,
                      num_classes=two_stream_presets.CLASSES[dataset],
                      num_frames=GLANCE, glance_frames=GLANCE,
                      focus_frames=CANDIDATES_PER_FOCUS * FOCUS,
                      # Labels depend on direction ("left to right").
                      flip=False),
      model=ModelConfig(
          variant="uni_tsm", glance_backbone="mobilenet_v2_torch",
          focus_backbone="resnet50", temporal_shift=True, patch_size=PATCH,
          patch_per_video=True, policy="continuous", classifier="logit_mean",
          dropout=0.5, head_dropout=0.5),
      uni=UniConfig(focus_frames=FOCUS, norm_ratio=NORM_RATIO[dataset]),
      stage1=v2_presets.end_to_end_stage(BASE_LR, BATCH_SIZE, RATIOS, EPOCHS,
                                         EPOCHS, WEIGHT_DECAY[dataset],
                                         grad_clip_norm=GRAD_CLIP))
  return v2_presets.without_policy_stages(cfg)


PRESETS = {name: (lambda name=name: something(name))
           for name in two_stream_presets.CLASSES}

"""Presets of the V1 one-stream family (docs/METHOD.md sections 2 and 6).

  * ``actnet``, ``fcvid``, ``minik``: the paper's settings (T=16 frames of
    224x224, MobileNetV2 glance, ResNet-50 focus, 49 actions, GRU
    classifier).
  * ``synthetic``: the tiny CPU preset of the quickstart and the tests:
    64x64 frames, 8 per video; the glance net sees the frame
    box-downsampled to 16x16 (so it can find the target but not read its
    texture); small residual CNNs instead of MobileNetV2/ResNet-50; 16x16
    patches.
  * ``synthetic_objects``: the same networks and stages on the embedded
    objects dataset (96x96 frames, the glance at 8x8; docs/SYNTHETIC.md).
"""
from adafocus_tf.config import (DataConfig, ExperimentConfig, ModelConfig,
                                PPOConfig, StageConfig)
from adafocus_tf.data import synthetic_objects_spec
from adafocus_tf.data import synthetic_spec


def paper(dataset: str, num_classes: int,
          multi_label: bool = False) -> ExperimentConfig:
  """The paper's V1 setting on ActivityNet / FCVID / Mini-Kinetics."""
  # head_dropout: the official stage-0 glance head's dropout (torchvision's
  # MobileNetV2 classifier).
  return ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=num_classes,
                      multi_label=multi_label),
      model=ModelConfig(head_dropout=0.2))


def synthetic() -> ExperimentConfig:
  """The tiny CPU preset (docs/SYNTHETIC.md says why each number is what it
  is)."""
  # Sized so that the whole quickstart (stages 1-3) trains on 2 CPU cores in
  # about 15 minutes.
  return ExperimentConfig(
      data=DataConfig(
          dataset="synthetic", num_classes=synthetic_spec.NUM_CLASSES,
          num_frames=synthetic_spec.NUM_FRAMES,
          frame_size=synthetic_spec.FRAME_SIZE,
          eval_resize=synthetic_spec.FRAME_SIZE,
          # Rescaling or mirroring would change the class textures.
          train_scales=(1.0,), flip=False, shuffle_buffer=512),
      model=ModelConfig(
          glance_backbone="tiny_cnn", glance_size=synthetic_spec.GLANCE_SIZE,
          focus_backbone="tiny_resnet", patch_size=synthetic_spec.PATCH_SIZE,
          num_actions=49, classifier_hidden=128, dropout=0.2,
          policy_conv_channels=16, policy_hidden=128),
      # Stage 0 trains the glance net alone here: the "glance only" row of
      # the results table (the focus net learns from patches in stage 1).
      stage0=StageConfig(epochs=1, batch_size=32, backbone_lr=0.01,
                         classifier_lr=0.01, backbones="glance"),
      stage1=StageConfig(epochs=6, batch_size=32, backbone_lr=0.05,
                         classifier_lr=0.05),
      stage2=PPOConfig(epochs=6, batch_size=32, learning_rate=1e-3),
      stage3=StageConfig(epochs=3, batch_size=32, backbone_lr=0.01,
                         classifier_lr=0.01, train_focus=True),
      eval_batch_size=64)


def on_objects(cfg: ExperimentConfig) -> ExperimentConfig:
  """A ``synthetic`` preset moved to the objects dataset (docs/SYNTHETIC.md).

  The same networks, stages and schedules; the frames, classes, glance
  resolution and patch of ``synthetic_objects_spec``. No flip or rescaling:
  a mirror swaps the diagonal classes, a rescale changes the pattern period
  the glance blindness rests on.

  Args:
    cfg: a ``synthetic`` preset, changed in place and returned.
  """
  d, m = cfg.data, cfg.model
  d.dataset = "synthetic_objects"
  d.num_classes = synthetic_objects_spec.NUM_CLASSES
  d.num_frames = synthetic_objects_spec.NUM_FRAMES
  d.frame_size = d.eval_resize = synthetic_objects_spec.FRAME_SIZE
  m.glance_size = synthetic_objects_spec.GLANCE_SIZE
  m.patch_size = synthetic_objects_spec.PATCH_SIZE
  return cfg


PRESETS = {
    "actnet": lambda: paper("actnet", 200),
    "fcvid": lambda: paper("fcvid", 239, multi_label=True),
    "minik": lambda: paper("minik", 200),
    "synthetic": synthetic,
    "synthetic_objects": lambda: on_objects(synthetic()),
}

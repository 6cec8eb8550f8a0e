"""Typed experiment configuration: dataclasses, presets per dataset, overrides.

Every number of the method lives here (docs/METHOD.md sections 2, 3 and 6); code
elsewhere reads it from a config object. A run writes its resolved config as
``config.json`` beside its checkpoints (see ``WORKSPACE.md``).

Presets, per dataset and method (``get_preset(name, method)``):
  * ``actnet``, ``fcvid``, ``minik``: the paper's V1 settings (T=16 frames of
    224x224, MobileNetV2 glance, ResNet-50 focus, 49 actions, GRU classifier);
    with ``method="v2"`` AdaFocusV2's (docs/METHOD.md sections V2-3 and V2-5:
    one end-to-end stage, the deterministic recurrent policy, the
    FrameExit-style classifier, the coarse-to-fine frame order).
  * ``sthv1``, ``sthv2``: Something-Something (docs/METHOD.md section 3): TSM
    backbones, 8 glance and 12 focus frames sampled independently, one
    patch per video (P = 144) from a continuous policy, logits = mean focus
    logits + mean glance logits, no flip.
  * ``synthetic``: the tiny CPU preset used by the quickstart and the tests.
    64x64 frames, 8 per video; the glance net sees the frame box-downsampled
    to 16x16 (so it can find the target but not read its texture); small
    residual CNNs instead of MobileNetV2/ResNet-50; 16x16 patches.
  * ``synthetic_objects``: the same networks and stages on the embedded
    objects dataset (96x96 frames, the glance at 8x8; docs/SYNTHETIC.md).

Sources of values (``adafocus-train``: the preset or the resumed run's
config, then ``--config_file``, the simple flags, ``--override``): each
value is checked against its field's type as it is set (``override``,
``apply_dict``, and ``ExperimentConfig.from_dict`` for a run's
``config.json``; the rules are ``config_checks``'s: an int field takes a
float only if it is whole, a float field takes an int, a bool field only a
bool). A value refused raises ``ConfigError`` naming the field, the value,
the type and the source.

Fields a model family does not use (``UNUSED_FIELDS``, e.g. V1's PPO stage
in a V2 config): a config holds every field, so presets and a run's
``config.json`` carry them at some value. A source may set such a field to
the value the config held before the sources were applied (a run's whole
``config.json`` can be given back as a config file) but not change it:
``check_family_fields``, once the whole config is resolved (the family
itself may come from the same source), refuses the change, naming the
field, the family and the source.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing
from typing import Any, Dict, Optional, Tuple

from adafocus_tf import config_checks
from adafocus_tf.data import synthetic_objects_spec
from adafocus_tf.data import synthetic_spec

ConfigError = config_checks.ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Model families (``model.variant``): the V1 model (one frame stream, a
# patch per frame, a prediction after every frame) and the
# Something-Something two-stream model (docs/METHOD.md section 3).
ONE_STREAM = "one_stream"
TWO_STREAM = "two_stream"
# AdaFocusV2 (docs/METHOD.md V2-1 to V2-7): the one-stream model trained end
# to end (``v2``) and V2-TSM, its two-stream Something-Something model.
V2 = "v2"
V2_TSM = "v2_tsm"
VARIANTS = (ONE_STREAM, TWO_STREAM, V2, V2_TSM)
TWO_STREAM_VARIANTS = (TWO_STREAM, V2_TSM)
V2_VARIANTS = (V2, V2_TSM)
# Training methods (``--method``): V1's stages 0-3 with PPO, V2's stage 0
# then one end-to-end stage (stage 1).
METHODS = ("v1", "v2")
# How the glance net shrinks a frame to ``model.glance_size``: box averaging
# (detail finer than the glance resolution is gone), or bilinear with the
# corners aligned (the official V2 ResNet-50 glance at 96).
GLANCE_RESIZES = ("area", "bilinear_corners")
# The order the frames of a clip are fed in (docs/METHOD.md V2-3):
# chronological, or the official V2 coarse-to-fine order.
FRAME_ORDERS = ("chronological", "coarse_to_fine")
BACKBONES = ("mobilenet_v2", "mobilenet_v2_torch", "resnet50",
             "resnet50_keras", "tiny_cnn", "tiny_resnet")
CLASSIFIERS = {ONE_STREAM: ("gru", "fc"), TWO_STREAM: ("logit_mean",),
               V2: ("frame_exit",), V2_TSM: ("logit_mean",)}
POLICIES = ("discrete", "continuous")
REWARDS = ("random", "prev", "conf")
MIXED_PRECISION = ("", "mixed_float16", "mixed_bfloat16")
STAGE0_BACKBONES = ("glance", "focus")


@dataclasses.dataclass
class DataConfig:
  """What the input pipeline reads and how it samples and augments.

  Attributes:
    dataset: preset name, also recorded in the run.
    data_dir: prepared dataset root (local path or ``s3://``); empty means the
      embedded synthetic dataset under the workspace.
    num_classes: number of classes.
    multi_label: videos may carry several labels (FCVID); mAP uses them all.
    num_frames: T, frames sampled per video (TSN segments).
    glance_frames: frames for the glance stream when sampled independently
      (Something-Something); 0 means the glance and focus share ``num_frames``.
    focus_frames: frames for the focus stream when sampled independently.
    frame_size: side of the square network input (224 in the paper).
    eval_resize: short side the evaluation resize goes to before the centre
      crop of ``frame_size`` (256 in the paper).
    train_scales: multi-scale crop scales, fractions of the short side.
    flip: random horizontal flip in training (off for Something-Something).
    dense_sampling: sample T consecutive frames at a random start instead of
      TSN segments.
    mean: per-channel normalisation mean (ImageNet).
    std: per-channel normalisation standard deviation (ImageNet).
    shuffle_buffer: videos held for shuffling in training.
    train_split: name of the training split directory.
    eval_split: name of the evaluation split directory.
    skip_bad_records: a video with a frame that does not decode, or a
      corrupt or truncated TFRecord record, is skipped with a warning
      naming it and its shard (corrupt records listed at the end of each
      epoch, the rest of the shard read); off, it stops the input pipeline
      with an error naming them (``data/record_integrity.py``).
  """
  dataset: str = "synthetic"
  data_dir: str = ""
  num_classes: int = 200
  multi_label: bool = False
  num_frames: int = 16
  glance_frames: int = 0
  focus_frames: int = 0
  frame_size: int = 224
  eval_resize: int = 256
  train_scales: Tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
  flip: bool = True
  dense_sampling: bool = False
  mean: Tuple[float, ...] = IMAGENET_MEAN
  std: Tuple[float, ...] = IMAGENET_STD
  shuffle_buffer: int = 256
  train_split: str = "train"
  eval_split: str = "val"
  skip_bad_records: bool = False


@dataclasses.dataclass
class ModelConfig:
  """The AdaFocus network.

  Attributes:
    variant: the model family: ``one_stream`` (V1), ``two_stream``
      (Something-Something: ``data.glance_frames``/``focus_frames``, one
      patch per video, the ``logit_mean`` classifier), ``v2`` (AdaFocusV2:
      patches at continuous positions from a deterministic recurrent
      policy trained end to end, the ``frame_exit`` classifier) or
      ``v2_tsm`` (V2-TSM: two streams, one continuous patch per video).
    glance_backbone: ``mobilenet_v2`` (paper) or ``tiny_cnn``.
    glance_size: side the whole frame is resized to for the glance net (the
      paper's glance sees the 224 frame itself).
    glance_width: width multiplier of the glance backbone (MobileNetV2 alpha).
    glance_resize: how a larger frame is shrunk to ``glance_size``: ``area``
      or ``bilinear_corners`` (V2's ResNet-50 glance at 96).
    focus_backbone: ``resnet50`` (paper) or ``tiny_resnet``.
    patch_size: P, side of the focus patch in frame pixels.
    num_actions: size of the discrete patch-position grid (a square number).
    classifier: ``gru`` (recurrent, default), ``fc`` (per-frame linear),
      ``logit_mean`` (Something-Something: the mean of the focus net's
      per-frame logits plus the mean of the glance net's) or ``frame_exit``
      (V2: a per-frame MLP, a running max over steps, a head per step).
    classifier_hidden: GRU units of the recurrent classifier; the MLP width
      of ``frame_exit``.
    dropout: dropout before the classifier's output layer(s).
    head_dropout: V2: dropout before the glance and focus nets' own linear
      heads (their per-frame auxiliary logits) in training. ``one_stream``:
      before the glance net's head in stage 0 (the official V1 glance head
      is torchvision's MobileNetV2 one, dropout 0.2 then linear; its
      ResNet-50 focus head has none).
    policy_conv_channels: 1x1 conv channels of the policy encoder.
    policy_hidden: dense and GRU units of the policy.
    policy_mlp: ``v2_tsm``: widths of the policy's dense layers after the
      encoder's convolution (before its 2-unit output).
    frame_order: ``chronological``, or ``coarse_to_fine`` (V2: the middle,
      first and last frames, then midpoints of ever finer halvings; the
      recurrent policy, the classifier's steps and early exit follow it).
    glance_weights: optional local weights file for the glance backbone.
    focus_weights: optional local weights file for the focus backbone.
    train_batchnorm: update batch-norm statistics in trained backbones (for
      V2, every batch norm: backbones, policy and classifier); off makes
      per-replica batch statistics irrelevant (exact replica equivalence)
      at the cost of frozen normalisation.
    temporal_shift: TSM backbones (docs/METHOD.md section 3): 1/``shift_div`` of
      the channels shifted one frame forward and as many one frame back
      inside every residual branch.
    shift_div: the shifted fraction's denominator (8 in the paper).
    policy: ``discrete`` (a categorical over ``num_actions`` grid positions)
      or ``continuous`` (a Gaussian over (ay, ax) in [0, 1]^2).
    policy_std: standard deviation of the continuous policy (fixed).
    policy_batchnorm: batch norm after the policy encoder's convolution
      and dense layer (the Something-Something encoder).
    patch_per_video: one patch location per video, chosen from the glance
      maps of all glance frames stacked on channels and applied to every
      focus frame (Something-Something), instead of one per frame.
  """
  variant: str = ONE_STREAM
  glance_backbone: str = "mobilenet_v2"
  glance_size: int = 224
  glance_width: float = 1.0
  glance_resize: str = "area"
  focus_backbone: str = "resnet50"
  patch_size: int = 128
  num_actions: int = 49
  classifier: str = "gru"
  classifier_hidden: int = 1024
  dropout: float = 0.8
  head_dropout: float = 0.0
  policy_conv_channels: int = 32
  policy_hidden: int = 1024
  policy_mlp: Tuple[int, ...] = (1024, 512)
  frame_order: str = "chronological"
  glance_weights: str = ""
  focus_weights: str = ""
  train_batchnorm: bool = True
  temporal_shift: bool = False
  shift_div: int = 8
  policy: str = "discrete"
  policy_std: float = 0.25
  policy_batchnorm: bool = False
  patch_per_video: bool = False


@dataclasses.dataclass
class StageConfig:
  """One supervised training stage (0, 1 or 3; V2's end-to-end stage is 1).

  Attributes:
    epochs: passes over the training split.
    batch_size: global batch size in videos (split across replicas).
    backbone_lr: initial learning rate of trained backbone weights (V2: the
      focus net and its head).
    classifier_lr: initial learning rate of the classifier.
    glance_lr: V2 stage 1: the glance net and its head.
    policy_lr: V2 stage 1: the patch policy.
    grad_clip_norm: clip the global gradient norm to this (0: no clipping).
    schedule_epochs: the cosine schedule's period in epochs (0: ``epochs``).
      V2 trains 51 epochs on a period of 50, the last at rate 0.
    momentum: SGD momentum.
    weight_decay: L2 weight decay added to the gradients (PyTorch style).
    train_focus: stage 3 only: fine-tune the focus net too (V2 paper) rather
      than the classifier alone (V1 reference code).
    steps_per_epoch: cap on steps per epoch (0: the whole split).
    backbones: stage 0 only: which backbones it fine-tunes on whole frames
      (``glance``, ``focus`` or ``glance,focus``).
  """
  epochs: int = 50
  batch_size: int = 64
  backbone_lr: float = 5e-4
  classifier_lr: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 1e-4
  train_focus: bool = False
  steps_per_epoch: int = 0
  backbones: str = "glance,focus"
  glance_lr: float = 0.0
  policy_lr: float = 0.0
  grad_clip_norm: float = 0.0
  schedule_epochs: int = 0


@dataclasses.dataclass
class PPOConfig:
  """Stage 2: the patch policy trained with PPO (docs/METHOD.md section 2).

  Attributes:
    epochs: passes over the training split.
    batch_size: global batch size in videos (one episode per video).
    learning_rate: Adam learning rate.
    beta_1: Adam beta 1.
    beta_2: Adam beta 2.
    discount: discount of the per-step rewards.
    clip: PPO ratio clip.
    update_epochs: optimisation epochs per collected batch.
    entropy_coef: entropy bonus weight.
    value_coef: value loss weight.
    reward: ``random`` (default), ``prev`` or ``conf``.
    steps_per_epoch: cap on steps per epoch (0: the whole split).
  """
  epochs: int = 50
  batch_size: int = 64
  learning_rate: float = 3e-4
  beta_1: float = 0.9
  beta_2: float = 0.999
  discount: float = 0.7
  clip: float = 0.2
  update_epochs: int = 1
  entropy_coef: float = 0.01
  value_coef: float = 0.5
  reward: str = "random"
  steps_per_epoch: int = 0


@dataclasses.dataclass
class ExperimentConfig:
  """Everything a run needs; written to ``config.json`` in the run directory.

  Attributes:
    data: input pipeline settings.
    model: network settings.
    stage0: backbone fine-tuning on full frames.
    stage1: focus net and classifier with random patches.
    stage2: the patch policy (PPO).
    stage3: classifier (and optionally focus net) with policy patches.
    seed: seed of data order, augmentation, random patches, dropout and
      each stage's initial weights.
    mixed_precision: ``""`` (float32), ``mixed_float16`` or ``mixed_bfloat16``.
    eval_batch_size: global batch size for evaluation.
  """
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  stage0: StageConfig = dataclasses.field(default_factory=lambda: StageConfig(
      epochs=15, batch_size=64, backbone_lr=0.01, classifier_lr=0.01,
      weight_decay=1e-4))
  stage1: StageConfig = dataclasses.field(default_factory=StageConfig)
  stage2: PPOConfig = dataclasses.field(default_factory=PPOConfig)
  stage3: StageConfig = dataclasses.field(default_factory=lambda: StageConfig(
      epochs=10, backbone_lr=5e-4, classifier_lr=0.005))
  seed: int = 0
  mixed_precision: str = ""
  eval_batch_size: int = 64

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Dict[str, Any],
                source: str = "config.json") -> "ExperimentConfig":
    """The config a dict of ``to_dict`` describes (a run's ``config.json``).

    Args:
      d: nested ``{section: {field: value}}``; fields left out keep their
        defaults.
      source: where ``d`` comes from, named in errors (the file's path).

    Raises:
      ConfigError: an unknown field or a value of the wrong type (named,
        with the source).
    """
    if not isinstance(d, dict):
      raise ConfigError(f"{source}: a config is a mapping of sections and "
                        f"fields, not {d!r}")
    d = dict(d)
    model = d.get("model")
    if isinstance(model, dict) and "variant" not in model:
      # Configs written before the family was a field: it followed from
      # the frame streams.
      data = d.get("data") or {}
      two = bool(data.get("glance_frames")) and bool(data.get("focus_frames"))
      d["model"] = dict(model, variant=TWO_STREAM if two else ONE_STREAM)
    return _from_dict(cls, d, source)

  def validate(self) -> "ExperimentConfig":
    """Checks every field's value and the fields' agreement; returns self.

    Raises:
      ValueError: naming the first bad field, its value and what it must
        be.
    """
    _validate(self)
    return self

  @classmethod
  def from_json(cls, text: str,
                source: str = "config.json") -> "ExperimentConfig":
    """``from_dict`` of a JSON text (``to_json``'s); ``source`` as there."""
    return cls.from_dict(json.loads(text), source)


def _from_dict(cls, d, source: str, prefix: str = ""):
  """An instance of the dataclass ``cls`` from a dict of its fields.

  Args:
    cls: the (section) dataclass.
    d: field -> value; a section's value is a dict of its own fields.
    source: where ``d`` comes from, named in errors.
    prefix: the dotted path of ``cls`` in the config (``model.``).

  Raises:
    ConfigError: an unknown field or a value of the wrong type.
  """
  hints = typing.get_type_hints(cls)
  unknown = set(d) - set(hints)
  if unknown:
    raise ConfigError(f"unknown {cls.__name__} fields in {source}: "
                      f"{sorted(unknown)}")
  kwargs = {}
  for name, value in d.items():
    hint = hints[name]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
      kwargs[name] = _from_dict(hint, value, source, f"{prefix}{name}.")
    else:
      kwargs[name] = config_checks.typed(hint, value, prefix + name, source)
  return cls(**kwargs)


def _paper_v1(dataset: str, num_classes: int, multi_label: bool = False):
  # head_dropout: the official stage-0 glance head's dropout (torchvision's
  # MobileNetV2 classifier).
  return ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=num_classes,
                      multi_label=multi_label),
      model=ModelConfig(head_dropout=0.2))


# Classes of the Something-Something-style datasets (their official lists).
_SOMETHING_CLASSES = {"sthv1": 174, "sthv2": 174, "jester": 27}


def _something(dataset: str) -> ExperimentConfig:
  """Something-Something V1/V2, Jester (docs/METHOD.md section 3): TSM, two
  streams."""
  return ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=_SOMETHING_CLASSES[dataset],
                      num_frames=8, glance_frames=8, focus_frames=12,
                      # Labels depend on direction ("left to right").
                      flip=False),
      model=ModelConfig(
          variant=TWO_STREAM,
          glance_backbone="mobilenet_v2_torch", focus_backbone="resnet50",
          temporal_shift=True, patch_size=144, patch_per_video=True,
          policy="continuous", policy_batchnorm=True,
          # The focus head's dropout of the official stage 1
          # (train_stage1.sh; its stage 3 has none).
          policy_conv_channels=64, classifier="logit_mean", dropout=0.5),
      stage1=StageConfig(epochs=10, backbone_lr=1e-5, classifier_lr=0.01),
      stage2=PPOConfig(epochs=50),
      stage3=StageConfig(epochs=10, backbone_lr=5e-4, classifier_lr=5e-4))


def _synthetic() -> ExperimentConfig:
  # Sized so that the whole quickstart (stages 1-3) trains on 2 CPU cores in
  # about 15 minutes; see docs/SYNTHETIC.md for why each number is what it is.
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


# -- AdaFocusV2 (docs/METHOD.md V2-3 to V2-6) ---------------------------------
# Learning-rate multipliers of the V2 groups relative to the base rate
# (docs/METHOD.md V2-5).
_V2_RATIOS = {"policy": 0.1, "glance": 0.5, "focus": 1.0, "classifier": 5.0}
_V2_TSM_RATIOS = {"policy": 0.01, "glance": 0.5, "focus": 1.0}
# The cosine period of V2's schedule; it trains one epoch more, at rate 0.
_V2_SCHEDULE_EPOCHS = 50


def _v2_stage(base_lr: float, batch_size: int, ratios, epochs: int,
              schedule_epochs: int, weight_decay: float,
              grad_clip_norm: float = 0.0) -> StageConfig:
  """V2's end-to-end stage: each group's rate is ``base_lr`` x its ratio."""
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


def _no_v1_policy_stages(cfg: ExperimentConfig) -> ExperimentConfig:
  cfg.stage2.epochs = 0
  cfg.stage3.epochs = 0
  return cfg


def _paper_v2(dataset: str, num_classes: int, base_lr: float,
              batch_size: int, multi_label: bool = False):
  """AdaFocusV2 on ActivityNet / FCVID / Mini-Kinetics (MobileNetV2 glance)."""
  return _no_v1_policy_stages(ExperimentConfig(
      data=DataConfig(dataset=dataset, num_classes=num_classes,
                      multi_label=multi_label),
      model=ModelConfig(
          variant=V2, glance_backbone="mobilenet_v2_torch",
          focus_backbone="resnet50", patch_size=128, classifier="frame_exit",
          classifier_hidden=4096, dropout=0.2, head_dropout=0.2,
          policy_conv_channels=64, policy_hidden=2048, policy_batchnorm=True,
          policy="continuous", frame_order="coarse_to_fine"),
      stage1=_v2_stage(base_lr, batch_size, _V2_RATIOS,
                       _V2_SCHEDULE_EPOCHS + 1, _V2_SCHEDULE_EPOCHS, 1e-4)))


def _something_v2(dataset: str) -> ExperimentConfig:
  """V2-TSM on Something-Something V1/V2 and Jester."""
  cfg = _something(dataset)
  cfg.model = ModelConfig(
      variant=V2_TSM, glance_backbone="mobilenet_v2_torch",
      focus_backbone="resnet50", temporal_shift=True,
      patch_size=128 if dataset == "jester" else 144, patch_per_video=True,
      policy="continuous", policy_batchnorm=True, policy_conv_channels=64,
      policy_mlp=(1024, 512), classifier="logit_mean", dropout=0.5,
      head_dropout=0.5)
  cfg.stage1 = _v2_stage(0.01, 32, _V2_TSM_RATIOS, 50, 50, 5e-4,
                         grad_clip_norm=20.0)
  return _no_v1_policy_stages(cfg)


# Epochs of the synthetic V2 stage: a V2 step costs about twice a V1 stage-1
# step (two focus branches, the glance trained), so 3 epochs take about half
# of V1's stages 1-3 on the same CPU (docs/SYNTHETIC.md, docs/BENCHMARKS.md).
_SYNTHETIC_V2_EPOCHS = 3
# On the objects data: 3 epochs leave V2's focus net short of reading the
# target (oracle row 90-93%), 4 reach V1's accuracy at 56% of V1's
# training wall-clock (docs/BENCHMARKS.md "V1 vs V2 on the objects dataset").
_OBJECTS_V2_EPOCHS = 4


def _synthetic_v2() -> ExperimentConfig:
  """The tiny CPU preset, trained as V2 (same data and backbones as V1's)."""
  cfg = _synthetic()
  m = cfg.model
  m.variant, m.classifier, m.head_dropout = V2, "frame_exit", 0.2
  m.policy, m.policy_batchnorm, m.frame_order = (
      "continuous", True, "coarse_to_fine")
  cfg.stage1 = _v2_stage(0.05, 32, _V2_RATIOS, _SYNTHETIC_V2_EPOCHS,
                         _SYNTHETIC_V2_EPOCHS, 1e-4)
  return _no_v1_policy_stages(cfg)


def _on_objects(cfg: ExperimentConfig) -> ExperimentConfig:
  """A ``synthetic`` preset moved to the objects dataset (docs/SYNTHETIC.md).

  The same networks, stages and schedules; the frames, classes, glance
  resolution and patch of ``synthetic_objects_spec``. No flip or rescaling:
  a mirror swaps the diagonal classes, a rescale changes the pattern period
  the glance blindness rests on.
  """
  d, m = cfg.data, cfg.model
  d.dataset = "synthetic_objects"
  d.num_classes = synthetic_objects_spec.NUM_CLASSES
  d.num_frames = synthetic_objects_spec.NUM_FRAMES
  d.frame_size = d.eval_resize = synthetic_objects_spec.FRAME_SIZE
  m.glance_size = synthetic_objects_spec.GLANCE_SIZE
  m.patch_size = synthetic_objects_spec.PATCH_SIZE
  return cfg


def _synthetic_objects_v2() -> ExperimentConfig:
  """The V2 CPU preset on the objects dataset, one more epoch."""
  cfg = _on_objects(_synthetic_v2())
  cfg.stage1.epochs = cfg.stage1.schedule_epochs = _OBJECTS_V2_EPOCHS
  return cfg


PRESETS = {
    "v1": {
        "actnet": lambda: _paper_v1("actnet", 200),
        "fcvid": lambda: _paper_v1("fcvid", 239, multi_label=True),
        "minik": lambda: _paper_v1("minik", 200),
        "sthv1": lambda: _something("sthv1"),
        "sthv2": lambda: _something("sthv2"),
        "jester": lambda: _something("jester"),
        "synthetic": _synthetic,
        "synthetic_objects": lambda: _on_objects(_synthetic()),
    },
    "v2": {
        "actnet": lambda: _paper_v2("actnet", 200, 0.002, 32),
        "fcvid": lambda: _paper_v2("fcvid", 239, 0.002, 32,
                                   multi_label=True),
        "minik": lambda: _paper_v2("minik", 200, 0.003, 48),
        "sthv1": lambda: _something_v2("sthv1"),
        "sthv2": lambda: _something_v2("sthv2"),
        "jester": lambda: _something_v2("jester"),
        "synthetic": _synthetic_v2,
        "synthetic_objects": _synthetic_objects_v2,
    },
}


# Dataset preset names (each has a V1 and a V2 preset).
DATASETS = tuple(sorted(PRESETS["v1"]))


def method_of(cfg: ExperimentConfig) -> str:
  """``v2`` for the AdaFocusV2 families, else ``v1``."""
  return "v2" if cfg.model.variant in V2_VARIANTS else "v1"


def get_preset(name: str, method: str = "v1") -> ExperimentConfig:
  """Returns a fresh config for the preset ``name`` of a training method.

  Args:
    name: the dataset preset (``actnet``, ``minik``, ..., ``synthetic``).
    method: ``v1`` (stages 0-3, PPO policy) or ``v2`` (AdaFocusV2).

  Raises:
    ValueError: an unknown method or preset, named.
  """
  if method not in PRESETS:
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
  if name not in PRESETS[method]:
    raise ValueError(
        f"unknown dataset preset {name!r}; choose one of "
        f"{sorted(PRESETS[method])}")
  return PRESETS[method][name]()


# -- The fields each model family reads ---------------------------------------
def _section_fields(section: str, cls, but: Tuple[str, ...] = ()):
  """``<section>.<field>`` of each field of a section.

  Args:
    section: the section's name in ``ExperimentConfig`` (``stage2``).
    cls: its dataclass.
    but: the fields left out.
  """
  return tuple(f"{section}.{f.name}" for f in dataclasses.fields(cls)
               if f.name not in but)


def _v2_rates(*stages: int) -> Tuple[str, ...]:
  """The glance and policy rates of ``stages``: only V2's end-to-end stage
  reads them (``training/end_to_end.py``); a supervised stage (V1's 0, 1
  and 3, V2's 0) has one rate per net.

  Args:
    *stages: stage numbers.
  """
  return tuple(f"stage{s}.{name}" for s in stages
               for name in ("glance_lr", "policy_lr"))


# V1's patch policy (``policy/action_space.py``, ``policy/networks.py``):
# its kind, grid and spread; V2's position policies are deterministic.
_V1_POLICY = ("model.policy", "model.num_actions", "model.policy_std")
# V1's stages 2 (PPO) and 3 (policy patches), which V2 does not run; their
# epochs are read (``validate``: 0 for V2).
_V1_STAGES = (_section_fields("stage2", PPOConfig, but=("epochs",)) +
              _section_fields("stage3", StageConfig, but=("epochs",)))

# The fields each model family (``model.variant``) never reads (see the
# module docstring for what a source may do with them). A field whose value
# ``validate`` fixes for a family (V2's stage2.epochs, the one-stream
# model's data.glance_frames, ...) is not listed: validate names it.
UNUSED_FIELDS: Dict[str, Tuple[str, ...]] = {
    # policy_mlp: V2-TSM's policy; shift_div: the TSM backbones of the
    # two-stream families.
    ONE_STREAM: ("model.policy_mlp", "model.shift_div") + _v2_rates(0, 1, 3),
    # The logit_mean classifier has no hidden layer; head_dropout is read
    # by the V2 models' heads and the one-stream stage-0 glance head only.
    TWO_STREAM: ("model.classifier_hidden", "model.head_dropout",
                 "model.policy_mlp") + _v2_rates(0, 1, 3),
    V2: _V1_POLICY + ("model.policy_mlp", "model.shift_div") + _v2_rates(0)
        + _V1_STAGES,
    # Its policy is an MLP (policy_mlp, no GRU); it has no classifier of its
    # own, only the nets' heads (their dropout is head_dropout).
    V2_TSM: _V1_POLICY + ("model.policy_hidden", "model.classifier_hidden",
                          "model.dropout") + _v2_rates(0) + _V1_STAGES,
}

# What the sources changed (``override``, ``apply_dict``): dotted field ->
# (the source that changed it last, the value it held before the first).
Changes = Dict[str, Tuple[str, Any]]


def check_family_fields(cfg: ExperimentConfig, changed: Changes) -> None:
  """Refuses a change to a field that the config's model family does not
  use (``UNUSED_FIELDS``); run it once every source is applied.

  A config holds every field, so a source may repeat the value an unused
  field held before the sources (a run's whole ``config.json`` given back);
  only a change is refused.

  Args:
    cfg: the resolved config (its family is ``model.variant``).
    changed: what the sources changed (``override``'s and ``apply_dict``'s
      record).

  Raises:
    ConfigError: the first such field, with its value, the family, the
      source and the value it may keep.
  """
  # An unknown family is validate's to name.
  unused = UNUSED_FIELDS.get(cfg.model.variant, ())
  for dotted, (source, held) in changed.items():
    if dotted not in unused:
      continue
    value = functools.reduce(getattr, dotted.split("."), cfg)
    if value != held:
      raise ConfigError(
          f"config field {dotted}={value!r} from {source}: the "
          f"{cfg.model.variant} model family does not use it; a source may "
          f"only repeat the value the config holds, {held!r}")


def _field(cfg: ExperimentConfig, dotted: str, source: str):
  """(section object, field name, type hint) of a field.

  Args:
    cfg: the config.
    dotted: the field's path (``model.patch_size``).
    source: what names it, for the error.

  Raises:
    ConfigError: the path names no field.
  """
  *parents, leaf = dotted.split(".")
  obj = cfg
  for p in parents:
    if not dataclasses.is_dataclass(obj) or not hasattr(obj, p):
      raise ConfigError(f"config has no section {p!r} (in {dotted!r} from "
                        f"{source})")
    obj = getattr(obj, p)
  hints = typing.get_type_hints(type(obj))
  if leaf not in hints:
    raise ConfigError(f"config has no field {dotted!r} (from {source})")
  return obj, leaf, hints[leaf]


def _assign(cfg: ExperimentConfig, dotted: str, value: Any, source: str,
            changed: Optional[Changes], text: bool) -> None:
  """Sets a field to a value checked against its type.

  Args:
    cfg: the config to change.
    dotted: the field's path.
    value: the value.
    source: where it comes from, for errors and ``changed``.
    changed: if given, a change is recorded in it.
    text: a string is the value written as text
      (``config_checks.from_text``), as ``--override`` gives it.

  Raises:
    ConfigError: no such field, or a value of the wrong type.
  """
  section, leaf, hint = _field(cfg, dotted, source)
  if text and isinstance(value, str):
    value = config_checks.from_text(hint, value)
  value = config_checks.typed(hint, value, dotted, source)
  held = getattr(section, leaf)
  if changed is not None and value != held:
    first_held = changed[dotted][1] if dotted in changed else held
    changed[dotted] = (source, first_held)
  setattr(section, leaf, value)


def override(cfg: ExperimentConfig, dotted: str, value: Any,
             source: str = "--override",
             changed: Optional[Changes] = None) -> None:
  """Sets ``cfg.<dotted>`` (e.g. ``model.patch_size``), checking name and type.

  Args:
    cfg: config to change in place.
    dotted: attribute path such as ``stage1.epochs``.
    value: new value, of the field's type (``config_checks``); a string for
      a field that is not a string is the value written as text (``true``,
      ``1e-3``, tuples ``a:b:c``).
    source: where the value comes from, named in errors (``--override``, a
      flag).
    changed: if given, a change is recorded in it for
      ``check_family_fields``.

  Raises:
    ConfigError: the path names no field, or the value is not of its type
      (a ValueError).
  """
  _assign(cfg, dotted, value, source, changed, text=True)


def apply_overrides(cfg: ExperimentConfig, items,
                    changed: Optional[Changes] = None) -> ExperimentConfig:
  """Applies ``key=value`` strings (as given to ``--override``) in order.

  Args:
    cfg: config to change in place.
    items: the ``key=value`` strings.
    changed: if given, the changes are recorded in it (``override``).

  Raises:
    ValueError: an item that is not ``key=value``, or ``override``'s.
  """
  for item in items or ():
    if "=" not in item:
      raise ValueError(f"override {item!r} is not of the form key=value")
    key, value = item.split("=", 1)
    override(cfg, key.strip(), value.strip(), "--override", changed)
  return cfg


def _yaml_load(text: str):
  """YAML's data, with ``1e-3`` read as a number (YAML 1.2), not as the
  string YAML 1.1 (PyYAML's ``safe_load``) makes of an exponent without a
  dot and sign.

  Args:
    text: the YAML document.
  """
  import yaml  # pylint: disable=g-import-not-at-top

  class Loader(yaml.SafeLoader):
    pass
  Loader.add_implicit_resolver(
      "tag:yaml.org,2002:float",
      re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)"
                 r"[eE][-+]?[0-9]+$"), list("-+0123456789."))
  return yaml.load(text, Loader=Loader)


def load_file(path: str) -> Dict[str, Any]:
  """A config file's contents: JSON (``.json``) or YAML (``.yaml``/``.yml``).

  The file holds a whole config or any part of one (nested sections), e.g.
  ``{"model": {"patch_size": 96}, "stage1": {"epochs": 5}}``. In YAML,
  ``1e-3`` is a number (as in JSON and YAML 1.2).

  Raises:
    ValueError: an unknown extension, or a file that does not parse (the
      message names the file).
  """
  # io_utils imports TensorFlow, which reading a config should not need.
  from adafocus_tf import io_utils  # pylint: disable=g-import-not-at-top
  text = io_utils.read_text(path)
  if path.endswith(".json"):
    try:
      return json.loads(text)
    except ValueError as e:
      raise ValueError(f"{path}: not valid JSON: {e}") from None
  if path.endswith((".yaml", ".yml")):
    import yaml  # pylint: disable=g-import-not-at-top
    try:
      return _yaml_load(text) or {}
    except yaml.YAMLError as e:
      raise ValueError(f"{path}: not valid YAML: {e}") from None
  raise ValueError(f"{path}: a config file ends in .json, .yaml or .yml")


def apply_dict(cfg: ExperimentConfig, values: Dict[str, Any],
               prefix: str = "", source: str = "config file",
               changed: Optional[Changes] = None) -> ExperimentConfig:
  """Sets every field named in a nested dict (``load_file``'s), in place.

  Values are taken as they are (a string is a string: ``"true"`` is not a
  bool here, unlike ``override``'s text).

  Args:
    cfg: the config to change.
    values: nested ``{section: {field: value}}`` or ``{field: value}``.
    prefix: the dotted path of ``values`` inside the config.
    source: where ``values`` come from, named in errors (the file's path).
    changed: if given, the changes are recorded in it (for
      ``check_family_fields``).

  Raises:
    ConfigError: a name that is no field, or a value of the wrong type (a
      ValueError).
  """
  if not isinstance(values, dict):
    raise ConfigError(f"{source}: {prefix or 'a config'} must be a mapping "
                      f"of fields, not {values!r}")
  for key, value in values.items():
    dotted = f"{prefix}{key}"
    if isinstance(value, dict) and dataclasses.is_dataclass(
        _field(cfg, dotted, source)[2]):
      apply_dict(cfg, value, dotted + ".", source, changed)
    else:
      _assign(cfg, dotted, value, source, changed, text=False)
  return cfg


def _require(ok: bool, field: str, value, must: str) -> None:
  if not ok:
    raise ValueError(f"config field {field}={value!r}: {must}")


def _validate(cfg: ExperimentConfig) -> None:
  d, m = cfg.data, cfg.model
  _require(m.variant in VARIANTS, "model.variant", m.variant,
           f"must be one of {VARIANTS}")
  _require(d.num_classes >= 2, "data.num_classes", d.num_classes,
           "must be at least 2")
  _require(d.num_frames >= 1, "data.num_frames", d.num_frames,
           "must be at least 1")
  _require(d.frame_size >= 1, "data.frame_size", d.frame_size,
           "must be positive")
  two = m.variant in TWO_STREAM_VARIANTS
  for name in ("glance_frames", "focus_frames"):
    value = getattr(d, name)
    _require(value >= 1 if two else value == 0, f"data.{name}", value,
             "must be at least 1 for the two_stream model" if two else
             "must be 0 for the one_stream model (it reads data.num_frames)")
  _require(m.patch_per_video == two, "model.patch_per_video",
           m.patch_per_video, f"must be {two} for the {m.variant} model")
  _require(m.glance_resize in GLANCE_RESIZES, "model.glance_resize",
           m.glance_resize, f"must be one of {GLANCE_RESIZES}")
  _require(m.frame_order in FRAME_ORDERS, "model.frame_order", m.frame_order,
           f"must be one of {FRAME_ORDERS}")
  _require(m.frame_order == "chronological" or not two, "model.frame_order",
           m.frame_order, "must be chronological for two-stream models (they "
           "make one prediction per video)")
  _require(0 <= m.head_dropout < 1, "model.head_dropout", m.head_dropout,
           "must be in [0, 1)")
  if m.variant in V2_VARIANTS:
    _require(m.policy_batchnorm, "model.policy_batchnorm", m.policy_batchnorm,
             "must be true for V2 (its policy encoder has batch norm)")
    _require(m.glance_backbone not in ("mobilenet_v2", "resnet50_keras")
             or m.variant != V2_TSM, "model.glance_backbone",
             m.glance_backbone, "V2-TSM needs a backbone that takes a "
             "temporal shift (mobilenet_v2_torch)")
    _require(all(w >= 1 for w in m.policy_mlp) and m.policy_mlp,
             "model.policy_mlp", m.policy_mlp,
             "must be one or more positive widths")
  else:
    _require(m.frame_order == "chronological", "model.frame_order",
             m.frame_order, "the coarse-to-fine order belongs to V2 "
             "(model.variant v2)")
  _require(not m.temporal_shift or two, "model.temporal_shift",
           m.temporal_shift, "needs the two_stream model: the one_stream "
           "model predicts after every frame, which a shift reading the "
           "next frame would contradict")
  _require(m.classifier in CLASSIFIERS[m.variant], "model.classifier",
           m.classifier, f"must be one of {CLASSIFIERS[m.variant]} for the "
           f"{m.variant} model")
  for name in ("glance_backbone", "focus_backbone"):
    _require(getattr(m, name) in BACKBONES, f"model.{name}",
             getattr(m, name), f"must be one of {BACKBONES}")
  _require(1 <= m.patch_size <= d.frame_size, "model.patch_size",
           m.patch_size, f"must be between 1 and data.frame_size "
           f"({d.frame_size})")
  _require(m.policy in POLICIES, "model.policy", m.policy,
           f"must be one of {POLICIES}")
  side = int(round(m.num_actions ** 0.5))
  _require(m.policy != "discrete" or (side * side == m.num_actions and
                                      side >= 2),
           "model.num_actions", m.num_actions,
           "must be a square number of grid positions (16, 25, 36, 49, 64, "
           "...)")
  _require(m.policy_std > 0, "model.policy_std", m.policy_std,
           "must be positive")
  _require(0 <= m.dropout < 1, "model.dropout", m.dropout,
           "must be in [0, 1)")
  _require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision",
           cfg.mixed_precision, f"must be one of {MIXED_PRECISION}")
  _require(cfg.stage2.reward in REWARDS, "stage2.reward", cfg.stage2.reward,
           f"must be one of {REWARDS}")
  backbones = [b for b in cfg.stage0.backbones.split(",") if b]
  _require(backbones and set(backbones) <= set(STAGE0_BACKBONES),
           "stage0.backbones", cfg.stage0.backbones,
           f"must be a comma list of {STAGE0_BACKBONES}")
  _require(cfg.eval_batch_size >= 1, "eval_batch_size", cfg.eval_batch_size,
           "must be at least 1")
  for stage in ("stage0", "stage1", "stage2", "stage3"):
    section = getattr(cfg, stage)
    _require(section.epochs >= 0, f"{stage}.epochs", section.epochs,
             "must be 0 or more")
    _require(section.batch_size >= 1, f"{stage}.batch_size",
             section.batch_size, "must be at least 1")
    _require(section.steps_per_epoch >= 0, f"{stage}.steps_per_epoch",
             section.steps_per_epoch, "must be 0 (the whole split) or more")
    for lr in ("backbone_lr", "classifier_lr", "learning_rate"):
      if hasattr(section, lr):
        _require(getattr(section, lr) > 0, f"{stage}.{lr}",
                 getattr(section, lr), "must be positive")
    for name in ("glance_lr", "policy_lr", "grad_clip_norm",
                 "schedule_epochs"):
      if hasattr(section, name):
        _require(getattr(section, name) >= 0, f"{stage}.{name}",
                 getattr(section, name), "must be 0 or more")
  if m.variant in V2_VARIANTS:
    _require(cfg.stage1.policy_lr > 0 and cfg.stage1.glance_lr > 0,
             "stage1.policy_lr", cfg.stage1.policy_lr,
             "V2's end-to-end stage 1 needs positive stage1.policy_lr and "
             "stage1.glance_lr")
    for stage in ("stage2", "stage3"):
      _require(getattr(cfg, stage).epochs == 0, f"{stage}.epochs",
               getattr(cfg, stage).epochs, "must be 0 for V2: it trains in "
               "stages 0 and 1 (stage 1 end to end, no PPO stage)")

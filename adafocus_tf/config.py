"""Typed experiment configuration: dataclasses, presets per dataset, overrides.

Every number of the method lives here (docs/METHOD.md sections 2, 3 and 6); code
elsewhere reads it from a config object. A run writes its resolved config as
``config.json`` beside its checkpoints (see ``WORKSPACE.md``).

Presets, per dataset and training method (``get_preset(name, method)``),
belong to the model families (``adafocus_tf/families/<family>/presets.py``):
``actnet``, ``fcvid``, ``minik`` (the one-stream families), ``sthv1``,
``sthv2``, ``jester`` (the two-stream families), and the embedded CPU
datasets ``synthetic`` and ``synthetic_objects``; ``method`` ``v1`` (the
paper's stages 0-3) or ``v2`` (AdaFocusV2), or a registered family's own.

Sources of values (``adafocus-train``: the preset or the resumed run's
config, then ``--config_file``, the simple flags, ``--override``): each
value is checked against its field's type as it is set (``override``,
``apply_dict``, and ``ExperimentConfig.from_dict`` for a run's
``config.json``; the rules are ``config_checks``'s: an int field takes a
float only if it is whole, a float field takes an int, a bool field only a
bool). A value refused raises ``ConfigError`` naming the field, the value,
the type and the source.

Fields a model family does not use (``ModelFamily.unused``, e.g. V1's PPO
stage in a V2 config): a config holds every field, so presets and a run's
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
from adafocus_tf.families import registry

ConfigError = config_checks.ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The stages a run has (``runs/run_dir.py``); a family's plan trains some.
NUM_STAGES = 4
# How the glance net shrinks a frame to ``model.glance_size``: box averaging
# (detail finer than the glance resolution is gone), or bilinear with the
# corners aligned (the official V2 ResNet-50 glance at 96).
GLANCE_RESIZES = ("area", "bilinear_corners")
# The order the frames of a clip are fed in (docs/METHOD.md V2-3):
# chronological, or the official V2 coarse-to-fine order.
FRAME_ORDERS = ("chronological", "coarse_to_fine")
BACKBONES = ("mobilenet_v2", "mobilenet_v2_torch", "resnet50",
             "resnet50_keras", "tiny_cnn", "tiny_resnet",
             # X3D clip networks (models/x3d), of the uni_x3d family only.
             "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "x3d_tiny")
POLICIES = ("discrete", "continuous")
REWARDS = ("random", "prev", "conf")
MIXED_PRECISION = ("", "mixed_float16", "mixed_bfloat16")
# Evaluation views per video (``DataConfig.test_crops``).
TEST_CROPS = (1, 3)
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
    test_crops: views evaluation reads of each video, their logits
      averaged: 1 (the centre crop) or 3 (the centre, left and right
      crops, vertically centred: the official ``--test_crops 3`` of
      Uni-AdaFocus-X3D's three-view Kinetics results). Prediction on
      video files and early-exit evaluation read one view.
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
  test_crops: int = 1
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
  variant: str = "one_stream"
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
class UniConfig:
  """Uni-AdaFocus's own settings (docs/METHOD.md V2-11.2 to V2-11.4); the other
  families leave them alone.

  Attributes:
    glance_frames: G, candidates the glance net reads (one per group of
      ``data.num_frames`` / G; the ActivityNet family). The TSM family's
      glance reads its own stream, ``data.glance_frames``.
    focus_frames: K, candidates the temporal policy picks for the focus net.
    min_region: smallest side of a deformable region, in frame pixels.
    max_region: largest side of a deformable region, in frame pixels.
    spatial_hidden: channels of the spatial policy's convolutions.
    temporal_hidden: channels of the temporal policy's convolutions.
    mc_draws: Monte-Carlo draws of the temporal policy's auxiliary
      prediction.
    norm_ratio: weight of the size regulariser mean((s - 1)^2).
    kl_ratio: weight of KL(w || uniform) on the temporal weights.
  """
  glance_frames: int = 16
  focus_frames: int = 16
  min_region: int = 96
  max_region: int = 224
  spatial_hidden: int = 128
  temporal_hidden: int = 64
  mc_draws: int = 128
  norm_ratio: float = 1.0
  kl_ratio: float = 0.0


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
    uni: Uni-AdaFocus's section (``UniConfig``).
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
  uni: UniConfig = dataclasses.field(default_factory=UniConfig)

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
      d["model"] = dict(model, variant="two_stream" if two else "one_stream")
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


def methods() -> Tuple[str, ...]:
  """The training methods (``--method``) the registered families serve."""
  return registry.methods()


def datasets(method: Optional[str] = None) -> Tuple[str, ...]:
  """The dataset presets of a method (default: of every method), sorted."""
  names = set()
  for name in registry.names():
    family = registry.get(name)
    if method in (None, family.method):
      names.update(family.presets())
  return tuple(sorted(names))


def method_of(cfg: ExperimentConfig) -> str:
  """The training method of the config's model family."""
  return registry.of(cfg).method


# The method a preset is of unless one is named.
DEFAULT_METHOD = "v1"


def get_preset(name: str, method: str = DEFAULT_METHOD) -> ExperimentConfig:
  """Returns a fresh config for the preset ``name`` of a training method.

  Args:
    name: the dataset preset (``actnet``, ``minik``, ..., ``synthetic``).
    method: ``v1`` (stages 0-3, PPO policy), ``v2`` (AdaFocusV2), or the
      method of another registered family.

  Raises:
    ValueError: an unknown method or preset, named.
  """
  if method not in methods():
    raise ValueError(f"unknown method {method!r}; choose one of {methods()}")
  family = registry.preset_family(name, method)
  if family is None:
    elsewhere = [m for m in methods()
                 if registry.preset_family(name, m) is not None]
    hint = (f" ({name} is a preset of --method={', '.join(elsewhere)})"
            if elsewhere else "")
    raise ValueError(
        f"unknown dataset preset {name!r} for method {method}; choose one "
        f"of {list(datasets(method))}{hint}")
  return family.presets()[name]()


# -- The fields each model family reads ---------------------------------------
# Sections of one family's own settings (``ModelFamily.sections``).
FAMILY_SECTIONS = ("uni",)


def section_fields(section: str) -> Tuple[str, ...]:
  """``<section>.<field>`` of each field of a top-level section."""
  cls = typing.get_type_hints(ExperimentConfig)[section]
  return tuple(f"{section}.{f.name}" for f in dataclasses.fields(cls))


def stage_fields(stage: int, but: Tuple[str, ...] = ()) -> Tuple[str, ...]:
  """``stage<N>.<field>`` of each field of a stage's section.

  Args:
    stage: the stage number.
    but: the fields left out.
  """
  section = f"stage{stage}"
  cls = typing.get_type_hints(ExperimentConfig)[section]
  return tuple(f"{section}.{f.name}" for f in dataclasses.fields(cls)
               if f.name not in but)


# What the sources changed (``override``, ``apply_dict``): dotted field ->
# (the source that changed it last, the value it held before the first).
Changes = Dict[str, Tuple[str, Any]]


def check_family_fields(cfg: ExperimentConfig, changed: Changes) -> None:
  """Refuses a change to a field that the config's model family does not
  use (``ModelFamily.unused``); run it once every source is applied.

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
  if cfg.model.variant not in registry.names():
    return
  unused = registry.of(cfg).unused()
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


_require = config_checks.require


def _validate(cfg: ExperimentConfig) -> None:
  """The checks every family shares, then the family's own
  (``ModelFamily.validate``)."""
  d, m = cfg.data, cfg.model
  families = registry.names()
  _require(m.variant in families, "model.variant", m.variant,
           f"must be one of the registered model families {families}")
  family = registry.get(m.variant)
  _require(d.num_classes >= 2, "data.num_classes", d.num_classes,
           "must be at least 2")
  _require(d.num_frames >= 1, "data.num_frames", d.num_frames,
           "must be at least 1")
  _require(d.frame_size >= 1, "data.frame_size", d.frame_size,
           "must be positive")
  _require(d.test_crops in TEST_CROPS, "data.test_crops", d.test_crops,
           f"must be one of {TEST_CROPS}")
  _require(m.glance_resize in GLANCE_RESIZES, "model.glance_resize",
           m.glance_resize, f"must be one of {GLANCE_RESIZES}")
  _require(m.frame_order in FRAME_ORDERS, "model.frame_order", m.frame_order,
           f"must be one of {FRAME_ORDERS}")
  _require(0 <= m.head_dropout < 1, "model.head_dropout", m.head_dropout,
           "must be in [0, 1)")
  _require(m.classifier in family.classifiers, "model.classifier",
           m.classifier, f"must be one of {family.classifiers} for the "
           f"{m.variant} model")
  for name in ("glance_backbone", "focus_backbone"):
    _require(getattr(m, name) in BACKBONES, f"model.{name}",
             getattr(m, name), f"must be one of {BACKBONES}")
  _require(1 <= m.patch_size <= d.frame_size, "model.patch_size",
           m.patch_size, f"must be between 1 and data.frame_size "
           f"({d.frame_size})")
  _require(m.policy in POLICIES, "model.policy", m.policy,
           f"must be one of {POLICIES}")
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
  plan = sorted(family.stage_plan())
  for number in range(NUM_STAGES):
    stage = f"stage{number}"
    section = getattr(cfg, stage)
    _require(section.epochs >= 0, f"{stage}.epochs", section.epochs,
             "must be 0 or more")
    _require(number in plan or section.epochs == 0, f"{stage}.epochs",
             section.epochs, f"must be 0 for {family.title}: it trains "
             f"stages {family.stages_text()}")
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
  family.validate(cfg)

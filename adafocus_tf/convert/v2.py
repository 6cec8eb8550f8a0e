"""AdaFocusV2 checkpoints: the architecture their tensors imply, and filling.

An official V2 file (docs/METHOD.md section V2-8) is ``{"state_dict":
{...}}`` of a ``DataParallel`` model; ``reference.parse`` strips the
``module.`` prefix. Its modules, and where they go:

| official module (V2, ActivityNet family)  | ours (``AdaFocusV2``)             |
| ----------------------------------------- | --------------------------------- |
| ``global_CNN`` (tonylins' MobileNetV2, or | ``glance.backbone``               |
|   a torchvision ResNet-50: "-RN")         |                                   |
| ``global_CNN_fc.1``                       | ``glance.head``                   |
| ``local_CNN`` (torchvision ResNet-50)     | ``focus.backbone``                |
| ``local_CNN_fc.1``                        | ``focus.head``                    |
| ``policy_stn.encoder.{0,1,4,5}``          | ``policy.encoder`` conv, conv_bn, |
|                                           |   dense_0 (flatten permuted),     |
|                                           |   dense_0_bn                      |
| ``policy_stn.gru``, ``policy_stn.fc.0``   | ``policy.gru``, ``policy.out``    |
| ``classifier.mlp.layers.{0,1}``           | ``classifier.mlp``, ``mlp_bn``    |
| ``classifier.classifiers.{t}.1``          | ``classifier.heads[t]``           |

| official module (V2-TSM)                  | ours (``TwoStreamAdaFocusV2``)    |
| ----------------------------------------- | --------------------------------- |
| ``global_CNN.base_model`` (TSM tonylins)  | ``glance.backbone``               |
| ``global_CNN.new_fc``, ``.new_new_fc``    | ``glance.head``, ``glance_aux_head``|
| ``local_CNN.base_model`` (TSM ResNet-50)  | ``focus.backbone``                |
| ``local_CNN.new_fc``, ``.new_new_fc``     | ``focus.head``, ``focus_aux_head`` |
| ``policy_stn.{0,1,4,5,7,8,10}``           | ``policy.encoder`` conv, conv_bn, |
|                                           |   dense_0, dense_0_bn, dense_1,   |
|                                           |   dense_1_bn; ``policy.out``      |

The backbones' ImageNet heads (``global_CNN.classifier`` or
``global_CNN.fc``, ``local_CNN.fc``) are in the file but not in the
model: they are read and dropped. Everything else must find its Keras
variable, and every variable its tensor.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Dict, Tuple

from adafocus_tf.convert import cnn
from adafocus_tf.convert import errors
from adafocus_tf.convert import recurrent
from adafocus_tf.convert import reference
from adafocus_tf.convert.state import Filler, TensorSource

# Glance backbones of V2 files, by what their keys show.
MOBILENET = "mobilenet_v2_torch"
RESNET = "resnet50"
# The "-RN" glance sees the frame resized to 96 x 96 (docs/METHOD.md V2-3).
RESNET_GLANCE_SIZE = 96
# Every backbone here downsamples by 32 (stride-2 stages).
BACKBONE_STRIDE = 32
# The focus net's pooled feature (ResNet-50).
FOCUS_DIM = 2048

# Official module paths (after ``module.``).
_GLANCE, _FOCUS = "global_CNN.", "local_CNN."
_V2_POLICY = dict(conv="policy_stn.encoder.0", conv_bn="policy_stn.encoder.1",
                  dense="policy_stn.encoder.4",
                  dense_bn="policy_stn.encoder.5", gru="policy_stn.gru",
                  out="policy_stn.fc.0")
_V2_HEADS = dict(glance="global_CNN_fc.1", focus="local_CNN_fc.1")
_MLP, _MLP_BN = "classifier.mlp.layers.0", "classifier.mlp.layers.1"
_STEP_HEAD = re.compile(r"^classifier\.classifiers\.(\d+)\.1\.weight$")
# V2-TSM's Sequential policy: (dense, batch norm) pairs after the conv, and
# the output Linear.
_TSM_CONV, _TSM_CONV_BN = "policy_stn.0", "policy_stn.1"
_TSM_DENSE = (("policy_stn.4", "policy_stn.5"), ("policy_stn.7",
                                                  "policy_stn.8"))
_TSM_OUT = "policy_stn.10"
# The backbones' own ImageNet classifiers: in the file, not in our model.
_IMAGENET_HEADS = ("global_CNN.classifier", "global_CNN.fc", "local_CNN.fc")


@dataclasses.dataclass
class Architecture:
  """What a V2 file's tensors fix (the config must agree).

  Attributes:
    family: ``v2`` or ``v2_tsm`` (``config.V2``, ``config.V2_TSM``).
    num_classes: C.
    glance_backbone: ``mobilenet_v2_torch`` or ``resnet50``.
    glance_dim: channels of the glance map.
    map_side: side of the glance map the policy flattens.
    policy_conv_channels: the policy's 1x1 convolution's channels.
    policy_hidden: ``v2``: the policy's dense and GRU width.
    policy_mlp: ``v2_tsm``: the policy's dense widths.
    classifier_hidden: ``v2``: the classifier MLP's width.
    num_steps: ``v2``: step heads, one per frame (T).
    glance_frames: ``v2_tsm``: glance frames stacked into the policy.
  """
  family: str
  num_classes: int
  glance_backbone: str
  glance_dim: int
  map_side: int
  policy_conv_channels: int
  policy_hidden: int = 0
  policy_mlp: Tuple[int, ...] = ()
  classifier_hidden: int = 0
  num_steps: int = 0
  glance_frames: int = 0

  def config_fields(self) -> Dict[str, object]:
    """Dotted model fields -> values; data fields are checked, not set."""
    out: Dict[str, object] = {
        "model.variant": self.family,
        "model.glance_backbone": self.glance_backbone,
        "model.glance_width": 1.0, "model.focus_backbone": RESNET,
        "model.policy_conv_channels": self.policy_conv_channels}
    if self.glance_backbone == RESNET:
      out["model.glance_size"] = RESNET_GLANCE_SIZE
      out["model.glance_resize"] = "bilinear_corners"
    if self.family == reference.V2:
      out.update({"model.policy_hidden": self.policy_hidden,
                  "model.classifier_hidden": self.classifier_hidden})
    else:
      out["model.policy_mlp"] = tuple(self.policy_mlp)
    return out

  def data_fields(self) -> Dict[str, int]:
    """Dotted data fields the config must already have (name -> value)."""
    out = {"data.num_classes": self.num_classes}
    if self.family == reference.V2:
      out["data.num_frames"] = self.num_steps
    else:
      out["data.glance_frames"] = self.glance_frames
    return out


def _shape(sd, key, origin) -> Tuple[int, ...]:
  if key not in sd:
    raise errors.MissingKeyError(f"{origin}[{key!r}] is missing: not a "
                                 "complete AdaFocusV2 checkpoint")
  return tuple(sd[key].shape)


def _glance_backbone(sd, origin, prefix) -> str:
  """The glance backbone from its key names.

  Raises:
    ArchitectureError: a torchvision-layout MobileNetV2 (V1's), or neither.
  """
  if f"{prefix}layer1.0.conv1.weight" in sd or (
      f"{prefix}layer1.0.conv1.net.weight" in sd):
    return RESNET
  if f"{prefix}features.1.conv.0.0.weight" in sd:
    raise errors.ArchitectureError(
        f"{origin}: {prefix}features.* is torchvision's MobileNetV2 layout "
        "(conv.0.0...), not tonylins' flat one of the official V2 code")
  if f"{prefix}features.0.0.weight" in sd:
    return MOBILENET
  raise errors.ArchitectureError(
      f"{origin} has no {prefix}features.0.0 (MobileNetV2) or "
      f"{prefix}layer1.0.conv1 (ResNet-50): not an AdaFocusV2 glance net")


def _map_side(flat: int, channels: int, key: str, origin: str) -> int:
  side = math.isqrt(flat // channels) if flat % channels == 0 else 0
  if side * side * channels != flat:
    raise errors.ArchitectureError(
        f"{origin}[{key!r}] reads {flat} inputs, not {channels} channels of "
        "a square map")
  return side


def architecture(ckpt: reference.Checkpoint) -> Architecture:
  """The architecture a V2 file's tensors imply.

  Raises:
    ConversionError: a tensor needed to tell is missing, or the shapes do
      not form a V2 model (subclasses say which).
  """
  sd = ckpt.entries["state_dict"]
  origin = ckpt.origin("state_dict")
  if ckpt.family == reference.V2_TSM:
    return _tsm_architecture(sd, origin)
  glance = _glance_backbone(sd, origin, _GLANCE)
  classes = _shape(sd, f"{_V2_HEADS['glance']}.weight", origin)[0]
  conv, glance_dim = _shape(sd, f"{_V2_POLICY['conv']}.weight", origin)[:2]
  flat = _shape(sd, f"{_V2_POLICY['dense']}.weight", origin)[1]
  width, fused = _shape(sd, f"{_MLP}.weight", origin)
  if fused != glance_dim + FOCUS_DIM:
    raise errors.ShapeMismatchError(
        f"{origin}['{_MLP}.weight'] reads {fused} features, but the glance "
        f"({glance_dim}) and focus ({FOCUS_DIM}) features are "
        f"{glance_dim + FOCUS_DIM}")
  steps = sorted(int(m.group(1)) for m in map(_STEP_HEAD.match, sd) if m)
  if not steps or steps != list(range(len(steps))):
    raise errors.MissingKeyError(
        f"{origin}: the step heads classifier.classifiers.<t>.1 are not "
        f"numbered 0..T-1 (found {steps[:20]})")
  return Architecture(
      family=reference.V2, num_classes=classes, glance_backbone=glance,
      glance_dim=glance_dim,
      map_side=_map_side(flat, conv, f"{_V2_POLICY['dense']}.weight",
                         origin),
      policy_conv_channels=conv,
      policy_hidden=_shape(sd, f"{_V2_POLICY['gru']}.weight_hh_l0",
                           origin)[1],
      classifier_hidden=width, num_steps=len(steps))


def _tsm_architecture(sd, origin) -> Architecture:
  glance = _glance_backbone(sd, origin, f"{_GLANCE}base_model.")
  classes = _shape(sd, f"{_GLANCE}new_fc.weight", origin)[0]
  conv, stacked = _shape(sd, f"{_TSM_CONV}.weight", origin)[:2]
  glance_dim = _shape(sd, f"{_GLANCE}new_fc.weight", origin)[1]
  if stacked % glance_dim:
    raise errors.ShapeMismatchError(
        f"{origin}['{_TSM_CONV}.weight'] reads {stacked} channels, not a "
        f"multiple of the glance net's {glance_dim}")
  widths, flat = [], None
  for dense, _ in _TSM_DENSE:
    out, inputs = _shape(sd, f"{dense}.weight", origin)
    flat = inputs if flat is None else flat
    widths.append(out)
  return Architecture(
      family=reference.V2_TSM, num_classes=classes, glance_backbone=glance,
      glance_dim=glance_dim,
      map_side=_map_side(flat, conv, f"{_TSM_DENSE[0][0]}.weight", origin),
      policy_conv_channels=conv, policy_mlp=tuple(widths),
      glance_frames=stacked // glance_dim)


def _skip_imagenet_heads(source: TensorSource) -> None:
  """Marks the backbones' ImageNet classifiers read (they have no home)."""
  for key in list(source.keys()):
    if key.rsplit(".", 1)[0] in _IMAGENET_HEADS:
      source.skip(key)


def _dialect(glance_backbone: str) -> str:
  # The tonylins MobileNetV2 is TSM's layout (flat ``conv``); without shift
  # layers in the Keras model no ``.net`` level is expected.
  return cnn.TSM if glance_backbone == MOBILENET else cnn.TORCHVISION


def fill_model(model, source: TensorSource, arch: Architecture,
               filler: Filler) -> None:
  """A built ``AdaFocusV2`` or ``TwoStreamAdaFocusV2`` from a V2 file.

  Args:
    model: the Keras model (``build_all()`` done).
    source: the file's ``state_dict`` (``module.`` stripped).
    arch: ``architecture`` of the file.
    filler: records what was filled.
  """
  _skip_imagenet_heads(source)
  if arch.family == reference.V2_TSM:
    _fill_tsm(model, source, arch, filler)
    return
  cnn.fill_backbone(model.glance.backbone, source, _GLANCE,
                    _dialect(arch.glance_backbone), filler)
  cnn.fill_dense(model.glance.head, source, _V2_HEADS["glance"], filler)
  cnn.fill_backbone(model.focus.backbone, source, _FOCUS, cnn.TORCHVISION,
                    filler)
  cnn.fill_dense(model.focus.head, source, _V2_HEADS["focus"], filler)
  policy, keys = model.policy, _V2_POLICY
  encoder = policy.encoder
  cnn.fill_conv(encoder.conv, source, keys["conv"], filler)
  cnn.fill_batch_norm(encoder.conv_bn, source, keys["conv_bn"], filler)
  cnn.fill_flattened_dense(encoder.dense[0], source, keys["dense"],
                           _policy_chw(arch), filler)
  cnn.fill_batch_norm(encoder.dense_bn[0], source, keys["dense_bn"], filler)
  recurrent.fill_gru(policy.gru.cell, source, keys["gru"], filler)
  cnn.fill_dense(policy.out, source, keys["out"], filler)
  clf = model.classifier
  cnn.fill_dense(clf.mlp, source, _MLP, filler)
  cnn.fill_batch_norm(clf.mlp_bn, source, _MLP_BN, filler)
  for t, head in enumerate(clf.heads):
    cnn.fill_dense(head, source, f"classifier.classifiers.{t}.1", filler)


def _policy_chw(arch: Architecture) -> Tuple[int, int, int]:
  return (arch.policy_conv_channels, arch.map_side, arch.map_side)


def _fill_tsm(model, source: TensorSource, arch: Architecture,
              filler: Filler) -> None:
  """``TwoStreamAdaFocusV2`` (TSM backbones, two heads each, video policy).
  """
  for net, prefix, aux in ((model.glance, _GLANCE, model.glance_aux_head),
                           (model.focus, _FOCUS, model.focus_aux_head)):
    cnn.fill_backbone(net.backbone, source, f"{prefix}base_model.",
                      cnn.TSM, filler)
    cnn.fill_dense(net.head, source, f"{prefix}new_fc", filler)
    cnn.fill_dense(aux, source, f"{prefix}new_new_fc", filler)
  encoder = model.policy.encoder
  if len(encoder.dense) != len(_TSM_DENSE):
    raise errors.ArchitectureError(
        f"the config's policy has {len(encoder.dense)} dense layers; the "
        f"official V2-TSM policy has {len(_TSM_DENSE)}")
  cnn.fill_conv(encoder.conv, source, _TSM_CONV, filler)
  cnn.fill_batch_norm(encoder.conv_bn, source, _TSM_CONV_BN, filler)
  for i, (dense, bn) in enumerate(_TSM_DENSE):
    if i == 0:
      cnn.fill_flattened_dense(encoder.dense[0], source, dense,
                               _policy_chw(arch), filler)
    else:
      cnn.fill_dense(encoder.dense[i], source, dense, filler)
    cnn.fill_batch_norm(encoder.dense_bn[i], source, bn, filler)
  cnn.fill_dense(model.policy.out, source, _TSM_OUT, filler)

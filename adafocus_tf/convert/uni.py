"""Uni-AdaFocus checkpoints: the architecture their tensors imply, and filling.

An official Uni-AdaFocus file of the ActivityNet family (ActivityNet,
FCVID, Mini-Kinetics; docs/METHOD.md V2-11.6) is ``{"state_dict": {...},
"epoch", "optimizer", "best_acc1"}`` of a ``DistributedDataParallel``
model; ``reference.parse`` strips the ``module.`` prefix. Its modules, and
where they go:

| official module                            | ours (``UniAdaFocus``)          |
| ------------------------------------------ | ------------------------------- |
| ``global_CNN`` (tonylins' MobileNetV2)     | ``glance.backbone``             |
| ``global_CNN_fc.1``                        | ``glance.head``                 |
| ``aux_fc``                                 | ``aux_head``                    |
| ``local_CNN`` (torchvision ResNet-50)      | ``focus.backbone``              |
| ``local_CNN_fc.1``                         | ``focus.head``                  |
| ``spatial_policy.encoder.{0,1,3,4,6,7,9}`` | ``spatial_policy`` conv1, bn1,  |
|   (Conv3d, BatchNorm3d)                    |   conv2, bn2, conv3, bn3, out   |
| ``temporal_policy.Tconv.{0,1,3,4,6}``      | ``temporal_policy`` conv1, bn1, |
|   (Conv2d (3, 1) along time, BatchNorm2d)  |   conv2, bn2, score (Conv1D)    |
| ``classifier.global_mlp.layers.{0,1}``     | ``classifier.glance_mlp``,      |
|                                            |   ``glance_bn``                 |
| ``classifier.local_mlp.layers.{0,1}``      | ``classifier.focus_mlp``,       |
|                                            |   ``focus_bn``                  |
| ``classifier.global_classifiers.{g}.1``    | ``classifier.glance_heads[g]``  |
| ``classifier.local_classifiers.{k}.1``     | ``classifier.focus_heads[k]``   |

The tensors fix the classes, the glance and focus frames G and K (one
classifier head per step), the policies' and the classifier's widths and
the glance map's side (the spatial policy's last kernel); not the number
of candidate frames N, which comes from the preset (48) or
``--override=data.num_frames=...`` and must be a multiple of G. The
backbones' ImageNet heads (``global_CNN.classifier``, ``local_CNN.fc``)
are in the file but not in the model: they are read and dropped.
Everything else must find its Keras variable, and every variable its
tensor. The TSM family's files (``global_CNN.base_model.*``) are
``uni_tsm.py``'s; it shares the policies' mapping (``fill_policies``).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, Tuple

from adafocus_tf.convert import cnn
from adafocus_tf.convert import errors
from adafocus_tf.convert import layouts
from adafocus_tf.convert import reference
from adafocus_tf.convert import tensor_shapes
from adafocus_tf.convert import v2
from adafocus_tf.convert.state import Filler, TensorSource, variable_name

# The official ActivityNet family's backbones (models/mobilenet_v2.py,
# tonylins' layout; models/resnet.py).
GLANCE_BACKBONE = v2.MOBILENET
FOCUS_BACKBONE = v2.RESNET
FOCUS_DIM = v2.FOCUS_DIM

# Official module paths (after ``module.``).
_GLANCE, _FOCUS = "global_CNN.", "local_CNN."
_HEADS = dict(glance="global_CNN_fc.1", focus="local_CNN_fc.1",
              aux="aux_fc")
# (official Sequential index, our layer name), in order (the TSM family's
# too).
SPATIAL = (("spatial_policy.encoder.0", "conv1"),
           ("spatial_policy.encoder.1", "bn1"),
           ("spatial_policy.encoder.3", "conv2"),
           ("spatial_policy.encoder.4", "bn2"),
           ("spatial_policy.encoder.6", "conv3"),
           ("spatial_policy.encoder.7", "bn3"),
           ("spatial_policy.encoder.9", "out"))
TEMPORAL = (("temporal_policy.Tconv.0", "conv1"),
            ("temporal_policy.Tconv.1", "bn1"),
            ("temporal_policy.Tconv.3", "conv2"),
            ("temporal_policy.Tconv.4", "bn2"),
            ("temporal_policy.Tconv.6", "score"))
_MLPS = (("classifier.global_mlp.layers", "glance"),
         ("classifier.local_mlp.layers", "focus"))
_STEP_HEAD = re.compile(
    r"^classifier\.(global|local)_classifiers\.(\d+)\.1\.weight$")
# The backbones' own ImageNet classifiers: in the file, not in our model.
_IMAGENET_HEADS = ("global_CNN.classifier", "local_CNN.fc")
# Outputs of the spatial policy: (a_y, a_x, s_y, s_x).
_ACTION_DIMS = 4


@dataclasses.dataclass
class Architecture:
  """What a Uni-AdaFocus file's tensors fix (the config must agree).

  Attributes:
    num_classes: C.
    glance_dim: channels of the glance map (1280).
    map_side: side of the glance map the spatial policy's last convolution
      spans (7 for 224-pixel frames).
    spatial_hidden: the spatial policy's channels.
    temporal_hidden: the temporal policy's channels.
    classifier_hidden: the pooling classifier's MLP width (4096).
    glance_frames: G, one glance step head each.
    focus_frames: K, one focus step head each.
  """
  num_classes: int
  glance_dim: int
  map_side: int
  spatial_hidden: int
  temporal_hidden: int
  classifier_hidden: int
  glance_frames: int
  focus_frames: int

  def config_fields(self) -> Dict[str, object]:
    """Dotted model and ``uni`` fields -> values (data fields are checked,
    not set)."""
    return {"model.variant": reference.UNI,
            "model.glance_backbone": GLANCE_BACKBONE,
            "model.glance_width": 1.0, "model.focus_backbone": FOCUS_BACKBONE,
            "model.classifier_hidden": self.classifier_hidden,
            "uni.glance_frames": self.glance_frames,
            "uni.focus_frames": self.focus_frames,
            "uni.spatial_hidden": self.spatial_hidden,
            "uni.temporal_hidden": self.temporal_hidden}


def _shape(sd, key, origin) -> Tuple[int, ...]:
  return tensor_shapes.required(sd, key, origin, "Uni-AdaFocus")


def check_built(ckpt: reference.Checkpoint) -> None:
  """Refuses a Uni-AdaFocus file of another family (read by
  ``convert/<family>.py``).

  Raises:
    ArchitectureError: a file of another Uni-AdaFocus family, named.
  """
  if ckpt.kind == reference.UNI_ADAFOCUS and ckpt.family != reference.UNI:
    raise errors.ArchitectureError(
        f"{ckpt.origin('state_dict')} is a Uni-AdaFocus checkpoint of the "
        f"{ckpt.family} family, not of the ActivityNet family (ActivityNet, "
        f"FCVID, Mini-Kinetics): convert/{ckpt.family}.py reads it")


def _check_glance_backbone(sd, origin) -> None:
  """The official glance net is tonylins' MobileNetV2 (flat ``conv``).

  Raises:
    ArchitectureError: a ResNet or torchvision-layout glance net.
  """
  if f"{_GLANCE}features.1.conv.0.0.weight" in sd:
    raise errors.ArchitectureError(
        f"{origin}: global_CNN.features.* is torchvision's MobileNetV2 "
        "layout (conv.0.0...), not tonylins' flat one of the official code")
  if f"{_GLANCE}features.0.0.weight" not in sd:
    raise errors.ArchitectureError(
        f"{origin} has no global_CNN.features.0.0 (MobileNetV2): not the "
        "glance net of an official Uni-AdaFocus checkpoint")


def _heads(sd, origin, which: str) -> int:
  """The number of ``<which>_classifiers`` step heads (numbered 0..n-1)."""
  steps = sorted(int(m.group(2)) for m in map(_STEP_HEAD.match, sd)
                 if m and m.group(1) == which)
  if not steps or steps != list(range(len(steps))):
    raise errors.MissingKeyError(
        f"{origin}: the step heads classifier.{which}_classifiers.<i>.1 are "
        f"not numbered 0..n-1 (found {steps[:20]})")
  return len(steps)


def architecture(ckpt: reference.Checkpoint) -> Architecture:
  """The architecture a Uni-AdaFocus file's tensors imply.

  Raises:
    ConversionError: a tensor needed to tell is missing, or the shapes do
      not form an ActivityNet-family Uni-AdaFocus model (subclasses say
      which).
  """
  check_built(ckpt)
  sd = ckpt.entries["state_dict"]
  origin = ckpt.origin("state_dict")
  _check_glance_backbone(sd, origin)
  classes = _shape(sd, f"{_HEADS['glance']}.weight", origin)[0]
  spatial_hidden, glance_dim = _shape(sd, f"{SPATIAL[0][0]}.weight",
                                      origin)[:2]
  out = _shape(sd, f"{SPATIAL[-1][0]}.weight", origin)
  if len(out) != 5 or out[0] != _ACTION_DIMS or out[2] != 1 or (
      out[3] != out[4]):
    raise errors.ShapeMismatchError(
        f"{origin}['{SPATIAL[-1][0]}.weight'] has shape {out}, not "
        f"[{_ACTION_DIMS}, hidden, 1, h, h]: one action per glance frame "
        "on a square map (the ActivityNet family)")
  temporal_hidden, pooled = _shape(sd, f"{TEMPORAL[0][0]}.weight",
                                   origin)[:2]
  if pooled != glance_dim:
    raise errors.ShapeMismatchError(
        f"{origin}['{TEMPORAL[0][0]}.weight'] reads {pooled} channels, but "
        f"the spatial policy's glance map has {glance_dim}")
  width, fused = _shape(sd, f"{_MLPS[0][0]}.0.weight", origin)
  if fused != glance_dim:
    raise errors.ShapeMismatchError(
        f"{origin}['{_MLPS[0][0]}.0.weight'] reads {fused} features, but "
        f"the glance features have {glance_dim}")
  glance, focus = _heads(sd, origin, "global"), _heads(sd, origin, "local")
  key = "classifier.local_classifiers.0.1.weight"
  if _shape(sd, key, origin)[1] != 2 * width:
    raise errors.ShapeMismatchError(
        f"{origin}['{key}'] reads {_shape(sd, key, origin)[1]} features, "
        f"not the focus and glance maxima of the MLPs ({2 * width})")
  return Architecture(num_classes=classes, glance_dim=glance_dim,
                      map_side=out[3], spatial_hidden=spatial_hidden,
                      temporal_hidden=temporal_hidden,
                      classifier_hidden=width, glance_frames=glance,
                      focus_frames=focus)


def _skip_imagenet_heads(source: TensorSource) -> None:
  """Marks the backbones' ImageNet classifiers read (they have no home)."""
  for key in list(source.keys()):
    if key.rsplit(".", 1)[0] in _IMAGENET_HEADS:
      source.skip(key)


def _fill_kernel(layer, source: TensorSource, key: str, convert,
                 filler: Filler) -> None:
  """A bias-free convolution's kernel from ``<key>.weight`` through the
  layout change ``convert``."""
  if layer.use_bias:
    raise errors.ConversionError(f"{layer.name}: the official policies' "
                                 "convolutions have no bias")
  weight, var = f"{key}.weight", layer.kernel
  try:
    value = convert(source.take(weight, variable_name(var)))
  except ValueError as e:
    if isinstance(e, errors.ConversionError):
      raise
    raise errors.ShapeMismatchError(
        f"{source.describe(weight)} does not fit the Keras variable "
        f"{variable_name(var)}: {e}") from None
  filler.assign(var, value, source.describe(weight))


def _fill_policy(policy, source: TensorSource, layers, convert,
                 filler: Filler) -> None:
  for key, name in layers:
    layer = getattr(policy, name)
    if name.startswith("bn"):
      cnn.fill_batch_norm(layer, source, key, filler)
    else:
      _fill_kernel(layer, source, key, convert, filler)


def fill_policies(model, source: TensorSource, filler: Filler) -> None:
  """A built Uni-AdaFocus model's ``spatial_policy`` and
  ``temporal_policy`` (both families name and shape them alike; the
  spatial policy's last kernel spans 1 or G frames)."""
  _fill_policy(model.spatial_policy, source, SPATIAL, layouts.conv3d_kernel,
               filler)
  _fill_policy(model.temporal_policy, source, TEMPORAL,
               layouts.time_conv_kernel, filler)


def fill_model(model, source: TensorSource, filler: Filler) -> None:
  """A built ``UniAdaFocus`` from a Uni-AdaFocus file.

  Args:
    model: the Keras model (``build_all()`` done).
    source: the file's ``state_dict`` (``module.`` stripped).
    filler: records what was filled.
  """
  _skip_imagenet_heads(source)
  cnn.fill_backbone(model.glance.backbone, source, _GLANCE, cnn.TSM, filler)
  cnn.fill_dense(model.glance.head, source, _HEADS["glance"], filler)
  cnn.fill_dense(model.aux_head, source, _HEADS["aux"], filler)
  cnn.fill_backbone(model.focus.backbone, source, _FOCUS, cnn.TORCHVISION,
                    filler)
  cnn.fill_dense(model.focus.head, source, _HEADS["focus"], filler)
  fill_policies(model, source, filler)
  clf = model.classifier
  for key, ours in _MLPS:
    cnn.fill_dense(getattr(clf, f"{ours}_mlp"), source, f"{key}.0", filler)
    cnn.fill_batch_norm(getattr(clf, f"{ours}_bn"), source, f"{key}.1",
                        filler)
  for which, heads in (("global", clf.glance_heads),
                       ("local", clf.focus_heads)):
    for i, head in enumerate(heads):
      cnn.fill_dense(head, source, f"classifier.{which}_classifiers.{i}.1",
                     filler)

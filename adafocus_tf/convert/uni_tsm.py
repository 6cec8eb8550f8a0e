"""Uni-AdaFocus-TSM checkpoints: the architecture their tensors imply, the
frame settings they need, and filling.

An official Uni-AdaFocus-TSM file (Something-Something V1/V2, Jester;
docs/METHOD.md V2-11.4) is ``{"state_dict": {...}, "epoch", "arch",
"optimizer", "best_prec1", "scaler"}`` of a ``DistributedDataParallel``
model; ``reference.parse`` strips the ``module.`` prefix and tells it from
the ActivityNet family's by ``global_CNN.base_model.*``. Its modules, and
where they go:

| official module                            | ours (``UniAdaFocusTSM``)       |
| ------------------------------------------ | ------------------------------- |
| ``global_CNN.base_model`` (TSM tonylins'   | ``glance.backbone``             |
|   MobileNetV2, shifted blocks ``.net``)    |                                 |
| ``global_CNN.new_fc``, ``.new_new_fc``     | ``glance.head``,                |
|                                            |   ``glance_aux_head``           |
| ``local_CNN.base_model`` (TSM ResNet-50,   | ``focus.backbone``              |
|   ``conv1.net`` in every block)            |                                 |
| ``local_CNN.new_fc``, ``.new_new_fc``      | ``focus.head``,                 |
|                                            |   ``focus_aux_head``            |
| ``aux_fc``                                 | ``aux_head``                    |
| ``spatial_policy.encoder.{0,1,3,4,6,7,9}`` | ``spatial_policy`` (as in       |
|   (Conv3d, BatchNorm3d; the last spans G)  |   ``uni.py``)                   |
| ``temporal_policy.Tconv.{0,1,3,4,6}``      | ``temporal_policy`` (the same)  |

The official ``TSN`` replaces the backbones' ImageNet classifiers by a
dropout, so the file has none. The tensors fix the classes, the glance
frames G (the spatial policy's last kernel spans them), the policies'
widths and the glance map's side; not the focus frames K nor the
candidates N (the TSM focus net takes any K): those are the preset's
(12 of 36) or overrides'. Everything must find its Keras variable, and
every variable its tensor.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from adafocus_tf.convert import cnn
from adafocus_tf.convert import config_checks
from adafocus_tf.convert import errors
from adafocus_tf.convert import reference
from adafocus_tf.convert import tensor_shapes
from adafocus_tf.convert import uni
from adafocus_tf.convert import v2
from adafocus_tf.convert.state import Filler, TensorSource

# Official module paths (after ``module.``).
_NETS = (("glance", "global_CNN."), ("focus", "local_CNN."))
_BACKBONE = "base_model."
# TSN's heads: on the stopped pooled feature, on the feature itself.
_HEAD, _AUX_HEAD = "new_fc", "new_new_fc"
_SPATIAL_AUX = "aux_fc"
# Outputs of the spatial policy: (a_y, a_x, s_y, s_x).
_ACTION_DIMS = 4
# The temporal policy's Monte-Carlo objective removes up to G // 3 - 1
# glance frames (``MCSampleFeature``'s T1 = G // 3 rounds).
_MIN_GLANCE = 3


@dataclasses.dataclass
class Architecture(config_checks.ClassesAndGlanceFrames):
  """What a Uni-AdaFocus-TSM file's tensors fix (the config must agree).

  Attributes:
    num_classes: C.
    glance_dim: channels of the glance map (1280).
    map_side: side of the glance map the spatial policy's last convolution
      spans (7 for 224-pixel frames).
    spatial_hidden: the spatial policy's channels.
    temporal_hidden: the temporal policy's channels.
    glance_frames: G, the frames the spatial policy's last kernel spans.
  """
  num_classes: int
  glance_dim: int
  map_side: int
  spatial_hidden: int
  temporal_hidden: int
  glance_frames: int

  def config_fields(self) -> Dict[str, object]:
    """Dotted model and ``uni`` fields -> values (data fields are checked,
    not set)."""
    return {"model.variant": reference.UNI_TSM,
            "model.glance_backbone": v2.MOBILENET,
            "model.glance_width": 1.0, "model.focus_backbone": v2.RESNET,
            "model.temporal_shift": True,
            "uni.spatial_hidden": self.spatial_hidden,
            "uni.temporal_hidden": self.temporal_hidden}


def _shape(sd, key, origin) -> Tuple[int, ...]:
  return tensor_shapes.required(sd, key, origin, "Uni-AdaFocus-TSM")


def _check_file(ckpt: reference.Checkpoint) -> None:
  """Refuses any file but a Uni-AdaFocus-TSM one.

  Raises:
    ArchitectureError: naming what the file is.
  """
  if (ckpt.kind, ckpt.family) == (reference.UNI_ADAFOCUS, reference.UNI_TSM):
    return
  raise errors.ArchitectureError(
      f"{ckpt.path} is a {ckpt.kind} ({ckpt.family}) checkpoint, not a "
      "Uni-AdaFocus-TSM one (global_CNN.base_model.* with spatial_policy, "
      "temporal_policy, aux_fc)")


def _check_backbones(sd, origin) -> None:
  """The glance net is TSM's tonylins MobileNetV2, the focus net a
  ResNet-50.

  Raises:
    ArchitectureError: another glance or focus net, named.
  """
  glance = f"{_NETS[0][1]}{_BACKBONE}"
  if f"{glance}features.0.0.weight" not in sd:
    raise errors.ArchitectureError(
        f"{origin} has no {glance}features.0.0 (MobileNetV2): not the glance "
        "net of an official Uni-AdaFocus-TSM checkpoint")
  focus = f"{_NETS[1][1]}{_BACKBONE}"
  if f"{focus}conv1.weight" not in sd:
    raise errors.ArchitectureError(
        f"{origin} has no {focus}conv1 (ResNet-50): not the focus net of an "
        "official Uni-AdaFocus-TSM checkpoint")


def architecture(ckpt: reference.Checkpoint) -> Architecture:
  """The architecture a Uni-AdaFocus-TSM file's tensors imply.

  Raises:
    ConversionError: the file is of another kind, a tensor needed to tell
      is missing, or the shapes do not form a Uni-AdaFocus-TSM model
      (subclasses say which).
  """
  _check_file(ckpt)
  sd = ckpt.entries["state_dict"]
  origin = ckpt.origin("state_dict")
  _check_backbones(sd, origin)
  classes, glance_dim = _shape(sd, f"{_NETS[0][1]}{_HEAD}.weight", origin)
  spatial_in = uni.SPATIAL[0][0] + ".weight"
  spatial_hidden, channels = _shape(sd, spatial_in, origin)[:2]
  temporal_in = uni.TEMPORAL[0][0] + ".weight"
  temporal_hidden, pooled = _shape(sd, temporal_in, origin)[:2]
  for key, have in ((spatial_in, channels), (temporal_in, pooled)):
    if have != glance_dim:
      raise errors.ShapeMismatchError(
          f"{origin}[{key!r}] reads {have} channels, but the glance net's "
          f"features have {glance_dim}")
  key = uni.SPATIAL[-1][0] + ".weight"
  out = _shape(sd, key, origin)
  if len(out) != 5 or out[0] != _ACTION_DIMS or out[3] != out[4]:
    raise errors.ShapeMismatchError(
        f"{origin}[{key!r}] has shape {out}, not [{_ACTION_DIMS}, hidden, "
        "G, h, h]: one action per video from G square glance maps")
  return Architecture(num_classes=classes, glance_dim=glance_dim,
                      map_side=out[3], spatial_hidden=spatial_hidden,
                      temporal_hidden=temporal_hidden, glance_frames=out[2])


def check_config(cfg, arch: Architecture) -> None:
  """The config's frames and sizes fit the file's tensors.

  Args:
    cfg: the resolved ``ExperimentConfig`` (preset and overrides).
    arch: ``architecture`` of the file.

  Raises:
    ArchitectureError: a data field, the frame counts or the glance map
      disagree with the tensors (the field and the override are named).
  """
  config_checks.check_data_fields(cfg, arch.data_fields())
  g, n, k = arch.glance_frames, cfg.data.focus_frames, cfg.uni.focus_frames
  if g < _MIN_GLANCE:
    raise errors.ArchitectureError(
        f"the checkpoint's spatial policy spans {g} glance frames; the "
        f"temporal policy's objective needs at least {_MIN_GLANCE}")
  if not 1 <= k <= n:
    raise errors.ArchitectureError(
        f"uni.focus_frames={k} focus frames cannot be chosen from "
        f"data.focus_frames={n} candidates: --override=uni.focus_frames=<K> "
        "and data.focus_frames=<N> with K <= N (the official commands' N "
        "is 3 K)")
  config_checks.check_map_side(cfg, arch.map_side, v2.BACKBONE_STRIDE)


def fill_model(model, source: TensorSource, filler: Filler) -> None:
  """A built ``UniAdaFocusTSM`` from a Uni-AdaFocus-TSM file.

  Args:
    model: the Keras model (``build_all()`` done).
    source: the file's ``state_dict`` (``module.`` stripped).
    filler: records what was filled.
  """
  for role, prefix in _NETS:
    net = getattr(model, role)
    cnn.fill_backbone(net.backbone, source, f"{prefix}{_BACKBONE}", cnn.TSM,
                      filler)
    cnn.fill_dense(net.head, source, f"{prefix}{_HEAD}", filler)
    cnn.fill_dense(getattr(model, f"{role}_aux_head"), source,
                   f"{prefix}{_AUX_HEAD}", filler)
  cnn.fill_dense(model.aux_head, source, _SPATIAL_AUX, filler)
  uni.fill_policies(model, source, filler)

"""Official Uni-AdaFocus-X3D checkpoints into ``UniAdaFocusX3D``.

An official file of "Uni-AdaFocus-X3D with Experiments on Kinetics-400"
(``main.py`` ``save_checkpoint``; docs/METHOD.md V2-11.6, V2-11.9) is
``{"state_dict": {...}, "epoch", "optimizer", "best_acc1", "scaler"}`` of a
``DistributedDataParallel`` model (keys ``module.<path>``). Its modules
(``archs/uni_adafocus_X3D.py`` ``AdaFocus``), and where they go:

| official module                            | ours (``UniAdaFocusX3D``)       |
| ------------------------------------------ | ------------------------------- |
| ``global_CNN`` (SlowFast X3D-S)            | ``glance`` (``convert/x3d.py``) |
| ``global_CNN_head.0`` (Linear, no bias)    | ``glance_frame_head.lin``       |
| ``global_CNN_head.3`` (Linear)             | ``glance_frame_head.projection``|
| ``local_CNN`` (SlowFast X3D-L)             | ``focus``                       |
| ``local_CNN_head.{0,3}``                   | ``focus_frame_head``            |
| ``aux_head.0``                             | ``aux_head``                    |
| ``spatial_policy.encoder.{0,1,3,4,6,7,9}`` | ``spatial_policy`` (the         |
|                                            |   ActivityNet family's mapping, |
|                                            |   ``convert/uni.py``)           |
| ``temporal_policy.Tconv.{0,1,3,4,6}``      | ``temporal_policy``             |

The tensors fix the classes, the glance frames G (the spatial policy's
last kernel), the glance map's side, the policies' widths and the two X3D
nets (``architecture``); not K, the candidates N, the frame or patch size,
which come from the preset (``kinetics``: 32 of 96, 224, 128) or
overrides (``make_config``). Every tensor must find its variable and
every variable its tensor; on any error the model's weights are restored
as they were (``convert``; ``run_writer`` writes a run of it).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np

from adafocus_tf.convert import cnn
from adafocus_tf.convert import config_checks
from adafocus_tf.convert import errors
from adafocus_tf.convert import layouts
from adafocus_tf.convert import reference
from adafocus_tf.convert import single_region_config
from adafocus_tf.convert import tensor_shapes
from adafocus_tf.convert import uni
from adafocus_tf.convert import x3d
from adafocus_tf.convert.state import Filler, TensorSource
from adafocus_tf.models.x3d import settings as x3d_settings

# DistributedDataParallel's key prefix.
DDP_PREFIX = "module."
_FRAME_HEADS = (("global_CNN_head", "glance_frame_head"),
                ("local_CNN_head", "focus_frame_head"))
# The frame heads' Linear layers in their official Sequential (Linear,
# ReLU, Dropout, Linear).
_HIDDEN, _OUTPUT = "0", "3"
_AUX_HEAD = "aux_head.0"
# The spatial policy's output: (a_y, a_x, s_y, s_x).
_ACTION_DIMS = 4
_BLOCK = re.compile(r"^s(\d+)\.pathway0_res(\d+)\.")
# Backbone names tried first when several presets share a network (X3D-XS,
# S and M do): the official glance and focus nets.
_PREFERRED = {x3d.GLANCE_PREFIX: "x3d_s", x3d.FOCUS_PREFIX: "x3d_l"}


@dataclasses.dataclass
class Architecture(config_checks.ClassesAndGlanceFrames):
  """What a Uni-AdaFocus-X3D file's tensors fix (the config must agree).

  Attributes:
    num_classes: C.
    glance_frames: G, the frames the spatial policy's last kernel spans.
    map_side: the side of the glance map it spans (5 at 160 pixels).
    spatial_hidden: the spatial policy's channels.
    temporal_hidden: the temporal policy's channels.
    glance_backbone: ``x3d_<preset>`` of the glance net.
    focus_backbone: ``x3d_<preset>`` of the focus net.
  """
  num_classes: int
  glance_frames: int
  map_side: int
  spatial_hidden: int
  temporal_hidden: int
  glance_backbone: str
  focus_backbone: str

  def config_fields(self) -> Dict[str, object]:
    """Dotted model and ``uni`` fields -> values."""
    return {"model.variant": reference.UNI_X3D,
            "model.glance_backbone": self.glance_backbone,
            "model.focus_backbone": self.focus_backbone,
            "uni.spatial_hidden": self.spatial_hidden,
            "uni.temporal_hidden": self.temporal_hidden}


def _shape(sd, key, origin) -> Tuple[int, ...]:
  return tensor_shapes.required(sd, key, origin, "Uni-AdaFocus-X3D")


def _net_shape(sd, prefix: str, origin: str):
  """(stem width, stage widths, inner widths, depths, dim_c5) of a net."""
  stages: Dict[int, int] = {}
  for key in sd:
    m = _BLOCK.match(key[len(prefix):]) if key.startswith(prefix) else None
    if m:
      stage, block = int(m.group(1)), int(m.group(2))
      stages[stage] = max(stages.get(stage, 0), block + 1)
  order = sorted(stages)
  widths = tuple(_shape(sd, f"{prefix}s{k}.pathway0_res0.branch2.c.weight",
                        origin)[0] for k in order)
  inner = tuple(_shape(sd, f"{prefix}s{k}.pathway0_res0.branch2.a.weight",
                       origin)[0] for k in order)
  stem = _shape(sd, f"{prefix}s1.pathway0_stem.conv_xy.weight", origin)[0]
  dim_c5 = _shape(sd, f"{prefix}head.lin_5.weight", origin)[0]
  return stem, widths, inner, tuple(stages[k] for k in order), dim_c5


def backbone_of(sd, prefix: str, origin: str) -> str:
  """The ``x3d_<preset>`` whose network the ``prefix`` tensors are.

  Raises:
    ArchitectureError: no preset has that network (its shape named).
  """
  shape = _net_shape(sd, prefix, origin)
  names = [_PREFERRED[prefix]] + [n for n in x3d_settings.BACKBONES
                                   if n != _PREFERRED[prefix]]
  for name in names:
    s = x3d_settings.preset(name)
    if shape == (s.stem_width, s.stage_widths(), s.stage_inner_widths(),
                 s.stage_depths(), s.dim_c5):
      return name
  raise errors.ArchitectureError(
      f"{origin}: the {prefix.rstrip('.')} net (stem width, stage widths, "
      f"inner widths, depths, lin_5 units = {shape}) is none of the X3D "
      f"presets {x3d_settings.BACKBONES}")


def architecture(ckpt: reference.Checkpoint) -> Architecture:
  """The architecture a Uni-AdaFocus-X3D file's tensors imply.

  Raises:
    ConversionError: another kind of file, a tensor needed to tell is
      missing, or the shapes do not form a Uni-AdaFocus-X3D model.
  """
  if ckpt.kind != reference.UNI_ADAFOCUS or ckpt.family != reference.UNI_X3D:
    raise errors.ArchitectureError(
        f"{ckpt.path} is not a Uni-AdaFocus-X3D checkpoint "
        f"({ckpt.kind}, {ckpt.family})")
  sd = ckpt.entries["state_dict"]
  origin = ckpt.origin("state_dict")
  classes = _shape(sd, f"{_FRAME_HEADS[0][0]}.{_OUTPUT}.weight", origin)[0]
  spatial_hidden = _shape(sd, f"{uni.SPATIAL[0][0]}.weight", origin)[0]
  temporal_hidden = _shape(sd, f"{uni.TEMPORAL[0][0]}.weight", origin)[0]
  key = f"{uni.SPATIAL[-1][0]}.weight"
  out = _shape(sd, key, origin)
  if len(out) != 5 or out[0] != _ACTION_DIMS or out[3] != out[4]:
    raise errors.ShapeMismatchError(
        f"{origin}[{key!r}] has shape {out}, not [{_ACTION_DIMS}, hidden, G, "
        "h, h]: one action per video over G glance maps")
  return Architecture(classes, out[2], out[3], spatial_hidden,
                      temporal_hidden,
                      backbone_of(sd, x3d.GLANCE_PREFIX, origin),
                      backbone_of(sd, x3d.FOCUS_PREFIX, origin))


def check_config(cfg, arch: Architecture) -> None:
  """The config's classes, glance frames and glance size fit the file.

  Raises:
    ArchitectureError: naming the field and the override that fits.
  """
  config_checks.check_data_fields(cfg, arch.data_fields(), remedy="")
  config_checks.check_map_side(cfg, arch.map_side,
                               x3d_settings.SPATIAL_STRIDE)


def make_config(dataset: str, patch_size: int, arch: Architecture,
                data_dir: str = "", seed: Optional[int] = None,
                overrides: Iterable[str] = (),
                log: Callable[[str], None] = logging.info):
  """The config of a converted Uni-AdaFocus-X3D run: the dataset's
  ``uni_x3d`` preset, P, the file's architecture, then ``overrides``.

  Raises:
    ArchitectureError: no Uni-AdaFocus-X3D preset of that name, or the
      config disagrees with the tensors (``check_config``).
    ValueError: a bad override.
  """
  return single_region_config.make_config(
      dataset, reference.UNI_X3D, "a Uni-AdaFocus-X3D one", patch_size, arch,
      data_dir, seed, overrides, log, check_config)


def state_dict(checkpoint, origin: str) -> Dict[str, np.ndarray]:
  """The model's tensors of a read checkpoint file, ``module.`` stripped.

  Raises:
    ConversionError: no ``state_dict`` entry.
  """
  if not isinstance(checkpoint, dict) or not isinstance(
      checkpoint.get("state_dict"), dict):
    raise errors.ConversionError(f"{origin} has no 'state_dict' entry (an "
                                 "official Uni-AdaFocus-X3D checkpoint)")
  return {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v
          for k, v in checkpoint["state_dict"].items()}


def fill_model(model, source: TensorSource, filler: Filler) -> None:
  """A built ``UniAdaFocusX3D`` from an official state dict (module doc).

  Args:
    model: the Keras model (``build_all()`` done).
    source: the file's ``state_dict`` (``module.`` stripped).
    filler: records what was filled.
  """
  x3d.fill_x3d(model.glance, source, x3d.GLANCE_PREFIX, filler)
  x3d.fill_x3d(model.focus, source, x3d.FOCUS_PREFIX, filler)
  for key, ours in _FRAME_HEADS:
    head = getattr(model, ours)
    weight = f"{key}.{_HIDDEN}.weight"
    # pylint: disable=protected-access
    filler.assign(head.lin.kernel, cnn._guard(
        source, weight, head.lin.kernel, layouts.dense_kernel),
                  source.describe(weight))
    cnn.fill_dense(head.projection, source, f"{key}.{_OUTPUT}", filler)
  cnn.fill_dense(model.aux_head, source, _AUX_HEAD, filler)
  uni.fill_policies(model, source, filler)


def convert(model, checkpoint, origin: str) -> None:
  """Fills ``model`` from a read official checkpoint, all or nothing.

  Args:
    model: a built ``UniAdaFocusX3D`` of the file's architecture.
    checkpoint: ``checkpoint_file.read(path)``'s object.
    origin: the file, for messages.

  Raises:
    ConversionError (and its subclasses): naming the tensor or variable;
      the model's weights are then as before the call.
  """
  source = TensorSource(state_dict(checkpoint, origin),
                        f"{origin}['state_dict']")
  filler = Filler()
  saved = [v.numpy() for v in model.weights]
  try:
    fill_model(model, source, filler)
    source.finish()
    filler.check_filled(model.weights, what=model.name)
  except Exception:
    for var, value in zip(model.weights, saved):
      var.assign(value)
    raise

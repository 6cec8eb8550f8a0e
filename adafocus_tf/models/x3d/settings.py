"""X3D's architecture settings and the official presets (docs/METHOD.md
V2-11.4).

The numbers are those of the official ``configs/X3D_{XS,S,M,L}.yaml`` of
the Uni-AdaFocus-X3D folder with the defaults of its ``slowfast/config/
defaults.py`` (``X3D.DIM_C1`` 12, ``SCALE_RES2`` off, channel-wise 3x3x3
convolutions, no batch norm after ``lin_5``), as
``archs/x3d_video_model_builder.py`` ``X3D`` builds them: a stem of
``round_width(DIM_C1, WIDTH_FACTOR)`` channels; four stages of 1, 2, 5, 3
base blocks (times ``DEPTH_FACTOR``, rounded up) whose widths start at
``DIM_C1`` and double per stage (each rounded to 8, then times
``WIDTH_FACTOR``); bottlenecks ``BOTTLENECK_FACTOR`` times wider; a head
of ``DIM_C5`` hidden units. XS, S and M share the network and differ in
their clips only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

# Base blocks of the four stages, each stage's stride and its width growth
# (``X3D.block_basis`` and ``exp_stage``).
BASE_DEPTHS = (1, 2, 5, 3)
STAGE_STRIDE = 2
STAGE_EXPANSION = 2.0
# Stage widths are rounded to this divisor before the width factor.
WIDTH_DIVISOR = 8
# Temporal kernel of the stem's depthwise convolution and of every block's
# channel-wise convolution (``_TEMPORAL_KERNEL_BASIS['x3d']``).
STEM_TEMPORAL_KERNEL = 5
BLOCK_TEMPORAL_KERNEL = 3
# Squeeze-excitation on every other block (the 1st, 3rd...), reduced to
# this fraction of the bottleneck width (``X3DTransform``'s se_ratio).
SE_RATIO = 0.0625
# The squeeze width's rounding (``SE._round_width``).
SE_DIVISOR = 8
# Total spatial stride: stem 2, four stages 2 each.
SPATIAL_STRIDE = 32


def round_width(width: float, multiplier: float, min_width: int = 1,
                divisor: int = 1) -> int:
  """Width times ``multiplier``, rounded to a multiple of ``divisor`` (at
  least ``min_width``, and not below 90% of the exact product): the rule
  of the official ``slowfast/models/utils.py`` ``round_width``.

  Args:
    width: the base width.
    multiplier: the factor (0 or None keeps ``width``).
    min_width: the smallest result.
    divisor: the result's divisor.
  """
  if not multiplier:
    return int(width)
  width *= multiplier
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  if out < 0.9 * width:
    out += divisor
  return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
  """Blocks of a stage: ``ceil(multiplier * repeats)`` (``X3D._round_repeats``)."""
  if not multiplier:
    return repeats
  return int(math.ceil(multiplier * repeats))


@dataclasses.dataclass(frozen=True)
class X3DSettings:
  """One X3D network and the clip it was designed for.

  Args:
    width_factor: gamma_w, the stage widths' multiplier (``WIDTH_FACTOR``).
    depth_factor: gamma_d, the stages' block-count multiplier
      (``DEPTH_FACTOR``).
    bottleneck_factor: gamma_b, a block's inner width over its output
      width (``BOTTLENECK_FACTOR``).
    dim_c1: the base width of the stem and first stage (``DIM_C1``).
    dim_c5: the head's hidden units (``DIM_C5``, ``lin_5``'s outputs).
    frames: the clip's frames the network was trained on
      (``DATA.NUM_FRAMES``; the network takes any number).
    crop_size: the training crop side in pixels (``DATA.TRAIN_CROP_SIZE``).
    base_depths: base blocks per stage, before ``depth_factor`` (tests
      shrink them).
  """
  width_factor: float = 2.0
  depth_factor: float = 2.2
  bottleneck_factor: float = 2.25
  dim_c1: int = 12
  dim_c5: int = 2048
  frames: int = 13
  crop_size: int = 160
  base_depths: Tuple[int, ...] = BASE_DEPTHS

  @property
  def stem_width(self) -> int:
    """The stem's output channels."""
    return round_width(self.dim_c1, self.width_factor)

  def stage_widths(self) -> Tuple[int, ...]:
    """Each stage's output channels."""
    base, widths = self.dim_c1, []
    for i in range(len(self.base_depths)):
      if i:
        base = round_width(base, STAGE_EXPANSION, divisor=WIDTH_DIVISOR)
      widths.append(round_width(base, self.width_factor))
    return tuple(widths)

  def stage_inner_widths(self) -> Tuple[int, ...]:
    """Each stage's bottleneck width."""
    return tuple(int(self.bottleneck_factor * w) for w in self.stage_widths())

  def stage_depths(self) -> Tuple[int, ...]:
    """Each stage's block count."""
    return tuple(round_repeats(d, self.depth_factor) for d in self.base_depths)

  @property
  def feature_dim(self) -> int:
    """Channels of the head's feature map (``conv_5``): the last stage's
    bottleneck width (432 for every preset)."""
    return self.stage_inner_widths()[-1]


PRESETS = {
    "xs": X3DSettings(depth_factor=2.2, frames=4, crop_size=160),
    "s": X3DSettings(depth_factor=2.2, frames=13, crop_size=160),
    "m": X3DSettings(depth_factor=2.2, frames=16, crop_size=224),
    "l": X3DSettings(depth_factor=5.0, frames=16, crop_size=312),
    # Not official: the smallest net of the same structure, for CPU tests
    # and the embedded synthetic data.
    "tiny": X3DSettings(depth_factor=1.0, dim_c1=4, dim_c5=32, frames=4,
                        crop_size=32, base_depths=(1, 1, 1, 1)),
}
# ``model.glance_backbone`` / ``focus_backbone`` names: ``x3d_<preset>``.
BACKBONE_PREFIX = "x3d_"
BACKBONES = tuple(BACKBONE_PREFIX + name for name in PRESETS)


def preset(name: str) -> X3DSettings:
  """The settings of X3D-``name`` (xs, s, m, l; tiny), or of a backbone
  name ``x3d_<preset>``.

  Raises:
    ValueError: an unknown name, naming the known ones.
  """
  key = name.lower()
  if key.startswith(BACKBONE_PREFIX):
    key = key[len(BACKBONE_PREFIX):]
  if key not in PRESETS:
    raise ValueError(f"unknown X3D preset {name!r}; choose one of "
                     f"{', '.join(PRESETS)}")
  return PRESETS[key]

"""Uni-AdaFocus's policies and classifier, counted (docs/METHOD.md V2-11.7):
multiply-accumulates from the layers' shapes, as the official cost
constants count them (0.82249 and 0.00413 GFLOPs for the spatial and
temporal policies of the ActivityNet family)."""


def spatial_policy_macs(map_shape, frames: int, hidden: int, span: int) -> int:
  """The spatial policy on ``frames`` glance maps of ``map_shape`` (h, w, C):
  a 1x1x1 convolution, two 3x3x3 ones and the (span, h, w) output one."""
  h, w, c = map_shape
  cells = frames * h * w
  outputs = frames // span
  return (cells * c * hidden + 2 * cells * 27 * hidden * hidden
          + outputs * span * h * w * hidden * 4)


def temporal_policy_macs(feature_dim: int, frames: int, hidden: int) -> int:
  """The temporal policy on ``frames`` pooled glance vectors: two kernel-3
  convolutions and the kernel-1 score."""
  return frames * (3 * feature_dim * hidden + 3 * hidden * hidden + hidden)


def classifier_parts(glance_dim: int, focus_dim: int, hidden: int,
                     num_classes: int):
  """(MACs per glance step, MACs per focus step) of the pooling classifier:
  an MLP and a head each (the focus head reads twice the width)."""
  glance = glance_dim * hidden + hidden * num_classes
  focus = focus_dim * hidden + 2 * hidden * num_classes
  return glance, focus


def classifier_steps(cfg, cost: dict):
  """``classifier_parts`` of a config, the nets' feature widths read off
  its cost (``flops.video_macs``: each net's linear head costs width x
  classes)."""
  c = cfg.data.num_classes
  return classifier_parts(cost["glance_head"] // c, cost["focus_head"] // c,
                          cfg.model.classifier_hidden, c)


def glance_exit_macs(cfg, cost: dict) -> int:
  """MACs of exit step 0 (the glance-only prediction): the glance net and
  the classifier's glance step on every glance frame."""
  return (cost["per_video"]["glance"]
          + cfg.uni.glance_frames * classifier_steps(cfg, cost)[0])

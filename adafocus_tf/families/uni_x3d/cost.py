"""Uni-AdaFocus-X3D's cost per video (docs/METHOD.md V2-11.5), in the form
of ``profiling/flops.video_macs``.

The nets read clips, not frames, so each part runs once per video: X3D-S
on the G glance frames at the glance size, X3D-L on the K patches, both
policies once. Counted by ``profiling/mac_counter`` (convolutions and
dense layers; batch norm left out: the official constants, which count
one operation per batch-norm channel, are 15,732 and 33,156 MACs higher
for X3D-S 16 x 160 and X3D-L 32 x 128, tests/models/x3d/
test_x3d_cost.py). The parts:

  * ``glance`` / ``focus``: the net up to its feature map;
  * ``glance_head``: the per-frame glance head on the G frames (the
    glance-only exit's prediction);
  * ``focus_head``: the focus X3D head (``lin_5`` and ``projection``);
  * ``classifier``: both X3D heads (the prediction);
  * ``policy``: the spatial policy on the G maps and the temporal one on
    the G per-frame features.

The full model is then the official total (X3D-S and X3D-L with their
heads, both policies: 8.8 GFLOPs at the paper's setting); the glance-only
exit is X3D-S without its head plus G per-frame heads (the official
constant counts X3D-S with its head).
"""
from __future__ import annotations

import functools

import tensorflow as tf

from adafocus_tf.families.uni import cost as uni_cost
from adafocus_tf.models.uni import uni_x3d
from adafocus_tf.models.x3d import backbone as x3d_lib
from adafocus_tf.models.x3d import settings as x3d_settings
from adafocus_tf.profiling import mac_counter

G = 1e9
PARTS = ("glance", "policy", "focus", "classifier")


# Clip lengths counted: X3D keeps every frame (no temporal stride), so
# each convolution's MACs grow by the same amount per frame, and the
# squeeze-excitations and the head read clip means; two short clips give
# the count of any length exactly (and much faster than a long one).
_COUNTED_FRAMES = (1, 2)


def _counted(net, frames: int, size: int):
  clip = tf.zeros([1, frames, size, size, 3])
  out = {}

  def features():
    out["maps"] = net.features(clip)

  body = mac_counter.count_call_macs([net], features)
  head = mac_counter.count_call_macs(
      [net.head], lambda: net.head.classify(out["maps"]))
  return body, head


@functools.lru_cache(maxsize=None)
def x3d_macs(backbone: str, frames: int, size: int, num_classes: int):
  """(the net up to its feature map, its X3D head's ``lin_5`` and
  ``projection``) in MACs, for a clip of ``frames`` x ``size``^2:
  counted on clips of 1 and 2 frames, the growth per frame times the
  frames beyond the first added (``_COUNTED_FRAMES``)."""
  net = x3d_lib.X3D(x3d_settings.preset(backbone), num_classes)
  (one, head), (two, _) = (_counted(net, t, size) for t in _COUNTED_FRAMES)
  return one + (frames - 1) * (two - one), head


@functools.lru_cache(maxsize=None)
def frame_head_macs(hidden: int, feature_dim: int, num_classes: int) -> int:
  """MACs of a per-frame head on one frame's features."""
  head = uni_x3d.FrameHead(hidden, num_classes, 0.0, 0)
  return mac_counter.count_call_macs(
      [head], lambda: head(tf.zeros([1, feature_dim])))


def video_macs(cfg) -> dict:
  """``flops.video_macs``'s dict for a ``uni_x3d`` config (module doc);
  every part runs once per video (``runs`` all 1)."""
  m, d, u = cfg.model, cfg.data, cfg.uni
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    glance, glance_x3d_head = x3d_macs(m.glance_backbone, d.glance_frames,
                                       m.glance_size, d.num_classes)
    focus, focus_x3d_head = x3d_macs(m.focus_backbone, u.focus_frames,
                                     m.patch_size, d.num_classes)
    settings = x3d_settings.preset(m.glance_backbone)
    frame_head = frame_head_macs(settings.dim_c5, settings.feature_dim,
                                 d.num_classes)
  finally:
    tf.keras.mixed_precision.set_global_policy(saved)
  map_shape = x3d_lib.X3D(settings, d.num_classes,
                          input_size=m.glance_size).map_shape
  g = d.glance_frames
  policy = (uni_cost.spatial_policy_macs(map_shape, g, u.spatial_hidden, g)
            + uni_cost.temporal_policy_macs(settings.feature_dim, g,
                                            u.temporal_hidden))
  each = {"glance": glance, "policy": policy, "focus": focus,
          "classifier": glance_x3d_head + focus_x3d_head}
  per_video = {p: int(each[p]) for p in PARTS}
  total = sum(per_video.values())
  per_video["total"] = total
  return {
      **{p: int(each[p]) for p in PARTS},
      "glance_head": int(g * frame_head),
      "focus_head": int(focus_x3d_head),
      "runs": {p: 1 for p in PARTS},
      "per_video": per_video,
      "per_frame": int(round(total / d.num_frames)),
      "num_frames": int(d.num_frames),
      "gflops_per_video": total / G,
      "backbones_gflops_per_video": (glance + focus) / G,
  }


def clear_cache() -> None:
  """Forgets the counts (tests swap models)."""
  x3d_macs.cache_clear()
  frame_head_macs.cache_clear()

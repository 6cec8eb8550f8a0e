"""Cost accounting of an AdaFocus config: MACs per part, GFLOPs per video.

The papers' "GFLOPs" are multiply-accumulates (MACs), so ``G`` below means
1e9 MACs (docs/METHOD.md section 6). Each part is the project's own network
for the config, counted by ``mac_counter``; docs/FLOPS.md states the rules
and how they reproduce the published V1 and Something-Something figures
(tests/profiling/test_flops.py checks them).
"""
from __future__ import annotations

import functools

import tensorflow as tf

from adafocus_tf.config import ModelConfig
from adafocus_tf.families import registry
from adafocus_tf.models import classifier_factory
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import frame_exit
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.policy import recurrent_position_policy
from adafocus_tf.policy import video_position_policy
from adafocus_tf.profiling import mac_counter
from adafocus_tf.profiling import macs_cache

G = 1e9


@functools.lru_cache(maxsize=None)
def _glance_macs(backbone: str, glance_size: int, width: float,
                 frame_size: int, num_classes: int):
  """(glance net MACs, stage-0 head MACs, feature map shape) per frame."""
  net = glance_lib.GlanceNet(backbone, glance_size, width, num_classes)
  frame = tf.zeros([1, frame_size, frame_size, 3])
  out = {}

  def run():
    fmap, pooled = net(frame)
    out["map_shape"] = tuple(int(d) for d in fmap.shape[1:])
    out["pooled"] = pooled

  macs = mac_counter.count_call_macs([net.backbone], run)
  head = mac_counter.count_call_macs([net.head],
                                     lambda: net.logits(out["pooled"]))
  return macs, head, out["map_shape"]


@functools.lru_cache(maxsize=None)
def _focus_macs(backbone: str, patch_size: int, num_classes: int):
  """(focus net MACs per patch, its linear head's MACs, feature dimension)."""
  net = focus_lib.FocusNet(backbone, num_classes)
  patch = tf.zeros([1, patch_size, patch_size, 3])
  out = {}

  def run():
    out["pooled"] = net(patch)

  macs = mac_counter.count_call_macs([net], run)
  head = mac_counter.count_call_macs([net.head],
                                     lambda: net.logits(out["pooled"]))
  return macs, head, int(out["pooled"].shape[-1])


@functools.lru_cache(maxsize=None)
def _policy_macs(map_shape, policy: str, num_actions: int, std: float,
                 conv_channels: int, hidden: int, batchnorm: bool) -> int:
  """Policy MACs per step: encoder, one GRU step, the actor head.

  Inference runs only the actor; the critic (one ``hidden``-to-1 dense,
  ``hidden`` MACs) is used in training alone and is left out. Batch norm
  is not counted (see the conventions above).

  Args:
    map_shape: (h, w, C) of one observation.
    policy: ``discrete`` or ``continuous``.
    num_actions: grid size of a discrete policy.
    std: standard deviation of a continuous policy (no cost).
    conv_channels: the encoder's 1x1 conv channels.
    hidden: dense and GRU units.
    batchnorm: batch norm in the encoder.
  """
  # Imported here: tf-agents takes a noticeable part of a second to load,
  # and only the V1 families' PPO policy needs it (not prediction's start).
  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts
  from adafocus_tf.policy import action_space
  from adafocus_tf.policy import networks
  # pylint: enable=g-import-not-at-top
  m = ModelConfig(policy=policy, num_actions=num_actions, policy_std=std,
                  policy_conv_channels=conv_channels, policy_hidden=hidden,
                  policy_batchnorm=batchnorm)
  _, actor, _ = networks.from_config(m, map_shape,
                                     action_space.from_config(m))
  obs = tf.zeros((1,) + tuple(map_shape))
  step_type = tf.fill([1], ts.StepType.FIRST)
  state = tf.zeros([1, hidden])
  return mac_counter.count_call_macs(
      [actor], lambda: actor(obs, step_type=step_type, network_state=state))


@functools.lru_cache(maxsize=None)
def step_classifier_macs(kind: str, feature_dim: int, num_classes: int,
                     hidden: int) -> int:
  """Classifier MACs per frame (one GRU step and the output layer)."""
  clf = classifier_factory.build_classifier(kind, num_classes, hidden, 0.0)
  # One time step: the per-frame cost of the recurrent (or per-frame) model.
  return mac_counter.count_call_macs(
      [clf], lambda: clf(tf.zeros([1, 1, feature_dim]), training=False))


def actor_policy_macs(cfg, map_shape) -> int:
  """MACs of one step of a PPO-trained policy's actor (the V1 families).

  Args:
    cfg: the config (``model``'s policy fields).
    map_shape: (h, w, C) of one glance map; a per-video policy
      (``model.patch_per_video``) observes the Tg maps stacked on channels.
  """
  m = cfg.model
  glance_frames = cfg.data.glance_frames or cfg.data.num_frames
  observation = (tuple(map_shape[:-1]) + (map_shape[-1] * glance_frames,)
                 if m.patch_per_video else tuple(map_shape))
  return _policy_macs(observation, m.policy, m.num_actions,
                      float(m.policy_std), m.policy_conv_channels,
                      m.policy_hidden, m.policy_batchnorm)


@functools.lru_cache(maxsize=None)
def recurrent_position_policy_macs(map_shape, conv_channels: int,
                                   hidden: int) -> int:
  """MACs of one step of AdaFocusV2's ``RecurrentPositionPolicy`` on one
  frame's map: 1x1 conv, dense, one GRU step, the 2-unit output (no batch
  norm).

  Args:
    map_shape: (h, w, C) of one glance map.
    conv_channels: channels of the 1x1 convolution.
    hidden: dense and GRU width.
  """
  policy = recurrent_position_policy.RecurrentPositionPolicy(conv_channels,
                                                            hidden)
  maps = tf.zeros((1,) + tuple(map_shape))
  return mac_counter.count_call_macs(
      [policy], lambda: policy.step(maps, policy.initial_state(1)))


@functools.lru_cache(maxsize=None)
def video_position_policy_macs(map_shape, glance_frames: int,
                               conv_channels: int, mlp) -> int:
  """MACs of one run of V2-TSM's ``VideoPositionPolicy``: once per video on
  the ``glance_frames`` maps stacked on channels: 1x1 conv, the dense
  layers, the output (no batch norm).

  Args:
    map_shape: (h, w, C) of one glance map.
    glance_frames: Tg, the maps it stacks.
    conv_channels: channels of the 1x1 convolution.
    mlp: its dense widths.
  """
  policy = video_position_policy.VideoPositionPolicy(conv_channels, list(mlp))
  maps = tf.zeros((1, glance_frames) + tuple(map_shape))
  return mac_counter.count_call_macs([policy], lambda: policy(maps))


@functools.lru_cache(maxsize=None)
def frame_exit_macs(feature_dim: int, num_classes: int, hidden: int) -> int:
  """``frame_exit`` classifier MACs per step: the shared MLP and one head."""
  clf = frame_exit.FrameExitClassifier(num_classes, hidden, 1, 0.0)
  x = tf.zeros([1, feature_dim])
  return mac_counter.count_call_macs(
      [clf], lambda: clf.step(x, clf.initial_state(1), 0))


def clear_cache() -> None:
  """Forgets the per-part counts ``video_macs`` cached (tests swap models)."""
  for fn in (_glance_macs, _focus_macs, _policy_macs, step_classifier_macs,
             recurrent_position_policy_macs, video_position_policy_macs,
             frame_exit_macs):
    fn.cache_clear()


# Parts in the order the model runs them; ``video_macs`` counts each per run
# and says how many runs a video makes.
PARTS = ("glance", "policy", "focus", "classifier")


def video_macs(cfg) -> dict:
  """MACs of each part of the AdaFocus model of ``cfg``, and GFLOPs per video.

  Builds the project's own networks for the config (randomly initialised,
  in float32 whatever the global mixed-precision policy; built once per
  distinct setting and cached) and counts them with ``mac_counter``'s rules;
  the result is kept on disk (``macs_cache``), so a later process reads it
  instead of building the networks.
  The backbones are counted without their temporal shift, which has no
  MACs.

  V1 (one stream): every part runs once per frame, T times a video. Two
  streams (Something-Something: ``data.glance_frames``/``focus_frames``,
  ``model.patch_per_video``, the ``logit_mean`` classifier): the glance net
  runs Tg times, the focus net Tf times, the policy once on the Tg glance
  maps stacked on channels, and the classifier (the glance and focus
  linear heads) once per video. AdaFocusV2 (``v2``) counts as V1 does,
  with its own policy (a deterministic position per frame) and its
  ``frame_exit`` classifier (the shared MLP and one step head per frame);
  V2-TSM (``v2_tsm``) as two streams, with its per-video position policy.
  V2's auxiliary heads (``aux_head``, the per-frame glance and focus
  logits of its training loss) do not run at inference and are not
  counted (docs/FLOPS.md).

  Args:
    cfg: an ``adafocus_tf.config.ExperimentConfig``; its ``model`` and
      ``data`` sections are read.

  Returns:
    A JSON-serialisable dict:
      ``glance``: MACs of the glance backbone on one whole frame (at
        glance_size).
      ``glance_head``: its linear head on one frame (the ``glance_only``
        row; part of the classifier with ``logit_mean``).
      ``focus``: the focus backbone on one P x P patch.
      ``focus_head``: its linear head on one patch.
      ``policy``: one policy step: encoder, one GRU step, the actor head.
      ``classifier``: one classifier run: a GRU step and the output layer
        (``gru``, per frame), the output layer (``fc``, per frame), or all
        the heads of a video (``logit_mean``, once).
      ``runs``: {part: runs per video} for the four parts above.
      ``per_video``: {part: MACs per video, and ``total``}.
      ``per_frame``: glance + focus + policy + classifier when every part
        runs once per frame (V1); otherwise the per-video total over
        ``num_frames``, rounded (so ``per_frame * num_frames`` is the
        per-video cost for every config).
      ``num_frames``: T (``data.num_frames``).
      ``gflops_per_video``: the per-video total / 1e9 (the papers' GFLOPs).
      ``backbones_gflops_per_video``: the glance and focus backbones alone
        per video / 1e9 (without policy and classifier).
  """
  family = registry.of(cfg)
  return macs_cache.cached(macs_cache.cache_key(cfg, family.sections),
                           lambda: _count_video_macs(cfg, family))


def _count_video_macs(cfg, family) -> dict:
  """``video_macs``, counted (no disk cache)."""
  own = family.video_macs(cfg)
  if own is not None:
    return own
  m, d = cfg.model, cfg.data
  glance_frames, focus_frames = family.frames_read(cfg)
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    glance, glance_head, map_shape = _glance_macs(
        m.glance_backbone, m.glance_size, float(m.glance_width),
        d.frame_size, d.num_classes)
    focus, focus_head, focus_dim = _focus_macs(m.focus_backbone,
                                               m.patch_size, d.num_classes)
    policy_runs = family.policy_runs(cfg)
    policy = family.policy_macs(cfg, tuple(map_shape))
    classifier, classifier_runs = family.classifier_cost(
        cfg, map_shape[-1] + focus_dim, glance_head, focus_head)
  finally:
    tf.keras.mixed_precision.set_global_policy(saved)
  each = {"glance": glance, "policy": policy, "focus": focus,
          "classifier": classifier}
  runs = {"glance": glance_frames, "policy": policy_runs,
          "focus": focus_frames, "classifier": classifier_runs}
  per_video = {p: int(each[p] * runs[p]) for p in PARTS}
  total = sum(per_video.values())
  per_video["total"] = total
  # Exact (an integer) for V1, where the total is T times the frame's cost.
  per_frame = round(total / d.num_frames)
  return {
      **{p: int(each[p]) for p in PARTS},
      "glance_head": int(glance_head),
      "focus_head": int(focus_head),
      "runs": {p: int(runs[p]) for p in PARTS},
      "per_video": per_video,
      "per_frame": int(per_frame),
      "num_frames": int(d.num_frames),
      "gflops_per_video": total / G,
      "backbones_gflops_per_video": (per_video["glance"]
                                     + per_video["focus"]) / G,
  }


def choice_gflops(cost: dict, choice: str) -> float:
  """GFLOPs (G MACs) per video of an evaluation row.

  Args:
    cost: the output of ``video_macs``.
    choice: ``policy`` (every part), ``random``/``centre``/``oracle``
      (no policy: the patch position costs nothing), or ``glance_only``
      (the glance net and its linear head on every glance frame).

  Returns:
    The GFLOPs per video.

  Raises:
    ValueError: an unknown choice.
  """
  per_video = cost["per_video"]
  if choice == "policy":
    macs = per_video["total"]
  elif choice in ("random", "centre", "oracle"):
    macs = per_video["total"] - per_video["policy"]
  elif choice == "glance_only":
    macs = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
  else:
    raise ValueError(f"unknown patch choice {choice!r}")
  return macs / G

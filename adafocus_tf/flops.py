"""Cost accounting: multiply-accumulates counted from the Keras models.

The papers' "GFLOPs" are multiply-accumulates (MACs), so this module counts
MACs, and ``G`` below means 1e9 MACs (docs/METHOD.md section 6). Only layers
that multiply activations by weights count (convolutions, depthwise and
separable convolutions, dense and recurrent layers; a GRU step is
``3 * (D * U + U * U)``); biases, batch norm, activations, pooling and
elementwise work do not. docs/FLOPS.md states the rules in full and how they
reproduce the published V1 and Something-Something figures
(tests/test_flops.py checks them).

Counts are taken by running the model once, eagerly, on a batch of one
all-zero example, with every countable layer's ``call`` wrapped to record
the concrete shapes it sees, so nested models, shared layers and Python
loops over time are counted as executed; a layer called inside another
counted layer (a GRU's cell inside the GRU) is not counted again.
"""
from __future__ import annotations

import functools
from typing import Dict, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

G = 1e9

layers = tf.keras.layers

# Order matters: the transposed and separable/depthwise classes are
# subclasses of the plain convolutions (directly or through Keras' base).
_TRANSPOSED_CONVS = tuple(
    getattr(layers, n) for n in ("Conv1DTranspose", "Conv2DTranspose",
                                 "Conv3DTranspose") if hasattr(layers, n))
_SEPARABLE_CONVS = tuple(
    getattr(layers, n) for n in ("SeparableConv1D", "SeparableConv2D")
    if hasattr(layers, n))
_DEPTHWISE_CONVS = tuple(
    getattr(layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D")
    if hasattr(layers, n))
_CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_CELLS = (layers.GRUCell, layers.LSTMCell, layers.SimpleRNNCell,
          layers.StackedRNNCells)
_COUNTED = (_TRANSPOSED_CONVS + _SEPARABLE_CONVS + _DEPTHWISE_CONVS + _CONVS
            + (layers.Dense, layers.RNN) + _CELLS)
# Layers with weights whose cost is deliberately not counted (see the module
# docstring); any other uncounted leaf layer with weights is logged.
_IGNORED_WITH_WEIGHTS = (layers.BatchNormalization, layers.LayerNormalization,
                         layers.Embedding)


def _num(shape) -> int:
  dims = list(shape)
  if any(d is None for d in dims):
    raise ValueError(f"cannot count MACs on a partly unknown shape {shape}")
  return int(np.prod(dims, dtype=np.int64))


def rnn_step_macs(cell, input_dim: int) -> int:
  """MACs of one step of a recurrent cell for one example.

  Args:
    cell: a Keras ``GRUCell``, ``LSTMCell``, ``SimpleRNNCell`` or
      ``StackedRNNCells``.
    input_dim: D, the size of the cell's input vector.

  Returns:
    The step's MACs: ``g * (D * U + U * U)`` with g = 3 gates (GRU), 4
    (LSTM) or 1 (simple RNN), U the cell's units.

  Raises:
    ValueError: a cell type this module does not know how to count.
  """
  if isinstance(cell, layers.StackedRNNCells):
    total = 0
    for c in cell.cells:
      total += rnn_step_macs(c, input_dim)
      input_dim = c.units
    return total
  if isinstance(cell, layers.GRUCell):
    gates = 3
  elif isinstance(cell, layers.LSTMCell):
    gates = 4
  elif isinstance(cell, layers.SimpleRNNCell):
    gates = 1
  else:
    raise ValueError(f"cannot count MACs of recurrent cell {cell!r}")
  units = cell.units
  return gates * (input_dim * units + units * units)


def layer_macs(layer, input_shape, output_shape) -> int:
  """MACs of one call of a countable layer, from its concrete shapes.

  Args:
    layer: a layer of one of the counted types (see the module docstring).
    input_shape: shape of the call's (first) input, batch included.
    output_shape: shape of the call's (first) output, batch included.

  Returns:
    The call's MACs for the whole batch it saw.

  Raises:
    ValueError: the layer is not of a counted type.
  """
  if isinstance(layer, _TRANSPOSED_CONVS):
    # Every input element scatters into kernel_size x filters outputs.
    cin = layer.kernel.shape[-1]
    return _num(input_shape) * _num(layer.kernel.shape) // cin
  if isinstance(layer, _SEPARABLE_CONVS):
    positions = _num(output_shape) // layer.filters
    mid = layer.depthwise_kernel.shape[-2] * layer.depthwise_kernel.shape[-1]
    kernel_area = _num(layer.depthwise_kernel.shape[:-2])
    return positions * mid * (kernel_area + layer.filters)
  if isinstance(layer, _DEPTHWISE_CONVS):
    return _num(output_shape) * _num(layer.depthwise_kernel.shape[:-2])
  if isinstance(layer, _CONVS):
    # kernel: kernel_size + (cin / groups, filters); every output element
    # is a dot product over kernel_size x cin / groups.
    return _num(output_shape) * _num(layer.kernel.shape[:-1])
  if isinstance(layer, layers.Dense):
    return _num(input_shape) * layer.units
  if isinstance(layer, layers.RNN):
    # [B, T, D] (or time-major [T, B, D]): one cell step per (b, t); padded
    # (masked) steps are computed too.
    return (_num(input_shape[:-1])
            * rnn_step_macs(layer.cell, int(input_shape[-1])))
  if isinstance(layer, _CELLS):
    return _num(input_shape[:-1]) * rnn_step_macs(layer, int(input_shape[-1]))
  raise ValueError(f"layer {layer.name} ({type(layer).__name__}) is not "
                   "counted")


def _first_shape(structure):
  flat = [t for t in tf.nest.flatten(structure) if hasattr(t, "shape")]
  if not flat:
    raise ValueError("a counted layer was called without a tensor input")
  return tuple(flat[0].shape)


def _modules(roots):
  """The roots and every layer nested in them, each once."""
  seen, out = set(), []
  for root in roots:
    for m in [root] + list(root.submodules):
      if isinstance(m, layers.Layer) and id(m) not in seen:
        seen.add(id(m))
        out.append(m)
  return out


class MacCounter:
  """Context manager that tallies the MACs of every layer call under roots.

  Usage::

    with MacCounter(model) as counter:
      model(x)
    counter.total, counter.per_layer

  Args:
    *roots: layers or models whose (nested) layers are watched.
  """

  def __init__(self, *roots):
    self._roots = roots
    self._patched = []
    self._inside = False
    self.total = 0
    # layer name -> MACs, in the order of first call.
    self.per_layer: Dict[str, int] = {}

  def _wrap(self, layer):
    call = layer.call

    def counted_call(*args, **kwargs):
      if self._inside:
        # A cell inside a counted RNN layer, or the like: already counted.
        return call(*args, **kwargs)
      self._inside = True
      try:
        outputs = call(*args, **kwargs)
      finally:
        self._inside = False
      inputs = args[0] if args else kwargs.get("inputs")
      macs = layer_macs(layer, _first_shape(inputs), _first_shape(outputs))
      self.total += macs
      self.per_layer[layer.name] = self.per_layer.get(layer.name, 0) + macs
      return outputs

    return counted_call

  def __enter__(self):
    for layer in _modules(self._roots):
      if not isinstance(layer, _COUNTED):
        if (layer.weights and not layer.submodules
            and not isinstance(layer, _IGNORED_WITH_WEIGHTS)):
          logging.warning("flops: layer %s (%s) has weights but is not "
                          "counted", layer.name, type(layer).__name__)
        continue
      # Keras' __call__ looks ``self.call`` up at every call, so an instance
      # attribute takes effect; remember any instance-level one to restore.
      had_own = "call" in vars(layer)
      self._patched.append((layer, had_own, vars(layer).get("call")))
      object.__setattr__(layer, "call", self._wrap(layer))
    return self

  def __exit__(self, *exc):
    for layer, had_own, own in reversed(self._patched):
      if had_own:
        object.__setattr__(layer, "call", own)
      else:
        object.__delattr__(layer, "call")
    self._patched = []
    return False


def _is_shape(x) -> bool:
  return isinstance(x, (tuple, list)) and all(
      d is None or isinstance(d, (int, np.integer)) for d in x)


def count_macs(model: tf.keras.Model, input_shape=None) -> int:
  """MACs of one forward pass of ``model`` on one example.

  Args:
    model: any Keras layer or model (functional, sequential or subclassed)
      called as ``model(inputs, training=False)``.
    input_shape: shape of one example without the batch axis, e.g.
      ``(224, 224, 3)``, or a list of such shapes for a model with several
      inputs; default: the model's own ``input_shape`` (which must then be
      fully defined).

  Returns:
    The MACs (an int) of the example's forward pass.

  Raises:
    ValueError: no input shape is given or known, or it is not fully
      defined.
  """
  if input_shape is None:
    try:
      shape = model.input_shape
    except AttributeError:
      raise ValueError(f"{model.name} has no known input shape; pass "
                       "input_shape") from None
    input_shape = (tuple(shape[1:]) if _is_shape(shape)
                   else [tuple(s[1:]) for s in shape])
  if _is_shape(input_shape):
    inputs = tf.zeros((1,) + tuple(input_shape))
  else:
    inputs = [tf.zeros((1,) + tuple(s)) for s in input_shape]
  with MacCounter(model) as counter:
    model(inputs, training=False)
  return counter.total


def count_call_macs(roots: Sequence[tf.keras.layers.Layer], fn) -> int:
  """MACs of the layers under ``roots`` during ``fn()``.

  For models that are not called as ``model(x)``: a recurrent classifier's
  ``step``, a tf-agents network with a state, several models in one pass.

  Args:
    roots: layers or models whose nested layers are watched.
    fn: a no-argument function that runs them (on one example).

  Returns:
    The MACs (an int) of the calls ``fn`` made.
  """
  with MacCounter(*roots) as counter:
    fn()
  return counter.total


# ---------------------------------------------------------------------------
# The AdaFocus model of a config.


@functools.lru_cache(maxsize=None)
def _glance_macs(backbone: str, glance_size: int, width: float,
                 frame_size: int, num_classes: int):
  """(glance net MACs, stage-0 head MACs, feature map shape) per frame."""
  from adafocus_tf.models import glance as glance_lib  # pylint: disable=g-import-not-at-top
  net = glance_lib.GlanceNet(backbone, glance_size, width, num_classes)
  frame = tf.zeros([1, frame_size, frame_size, 3])
  out = {}

  def run():
    fmap, pooled = net(frame)
    out["map_shape"] = tuple(int(d) for d in fmap.shape[1:])
    out["pooled"] = pooled

  macs = count_call_macs([net.backbone], run)
  head = count_call_macs([net.head], lambda: net.logits(out["pooled"]))
  return macs, head, out["map_shape"]


@functools.lru_cache(maxsize=None)
def _focus_macs(backbone: str, patch_size: int, num_classes: int):
  """(focus net MACs per patch, its linear head's MACs, feature dimension)."""
  from adafocus_tf.models import focus as focus_lib  # pylint: disable=g-import-not-at-top
  net = focus_lib.FocusNet(backbone, num_classes)
  patch = tf.zeros([1, patch_size, patch_size, 3])
  out = {}

  def run():
    out["pooled"] = net(patch)

  macs = count_call_macs([net], run)
  head = count_call_macs([net.head], lambda: net.logits(out["pooled"]))
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
  from adafocus_tf.config import ModelConfig  # pylint: disable=g-import-not-at-top
  from adafocus_tf.policy import action_space  # pylint: disable=g-import-not-at-top
  from adafocus_tf.policy import networks  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  m = ModelConfig(policy=policy, num_actions=num_actions, policy_std=std,
                  policy_conv_channels=conv_channels, policy_hidden=hidden,
                  policy_batchnorm=batchnorm)
  _, actor, _ = networks.from_config(m, map_shape,
                                     action_space.from_config(m))
  obs = tf.zeros((1,) + tuple(map_shape))
  step_type = tf.fill([1], ts.StepType.FIRST)
  state = tf.zeros([1, hidden])
  return count_call_macs(
      [actor], lambda: actor(obs, step_type=step_type, network_state=state))


@functools.lru_cache(maxsize=None)
def _classifier_macs(kind: str, feature_dim: int, num_classes: int,
                     hidden: int) -> int:
  """Classifier MACs per frame (one GRU step and the output layer)."""
  from adafocus_tf.models import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
  clf = classifier_lib.build_classifier(kind, num_classes, hidden, 0.0)
  # One time step: the per-frame cost of the recurrent (or per-frame) model.
  return count_call_macs(
      [clf], lambda: clf(tf.zeros([1, 1, feature_dim]), training=False))


def clear_cache() -> None:
  """Forgets the per-part counts ``video_macs`` cached (tests swap models)."""
  for fn in (_glance_macs, _focus_macs, _policy_macs, _classifier_macs):
    fn.cache_clear()


# Parts in the order the model runs them; ``video_macs`` counts each per run
# and says how many runs a video makes.
PARTS = ("glance", "policy", "focus", "classifier")


def video_macs(cfg) -> dict:
  """MACs of each part of the AdaFocus model of ``cfg``, and GFLOPs per video.

  Builds the project's own networks for the config (randomly initialised,
  in float32 whatever the global mixed-precision policy; built once per
  distinct setting and cached) and counts them with ``count_macs``' rules.
  The backbones are counted without their temporal shift, which has no
  MACs.

  V1 (one stream): every part runs once per frame, T times a video. Two
  streams (Something-Something: ``data.glance_frames``/``focus_frames``,
  ``model.patch_per_video``, the ``logit_mean`` classifier): the glance net
  runs Tg times, the focus net Tf times, the policy once on the Tg glance
  maps stacked on channels, and the classifier (the glance and focus
  linear heads) once per video.

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
  """
  m, d = cfg.model, cfg.data
  glance_frames = d.glance_frames or d.num_frames
  focus_frames = d.focus_frames or d.num_frames
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    glance, glance_head, map_shape = _glance_macs(
        m.glance_backbone, m.glance_size, float(m.glance_width),
        d.frame_size, d.num_classes)
    focus, focus_head, focus_dim = _focus_macs(m.focus_backbone,
                                               m.patch_size, d.num_classes)
    if m.patch_per_video:
      # One step per video, observing the Tg maps stacked on channels.
      policy_map = tuple(map_shape[:-1]) + (map_shape[-1] * glance_frames,)
      policy_runs = 1
    else:
      policy_map, policy_runs = tuple(map_shape), focus_frames
    policy = _policy_macs(policy_map, m.policy, m.num_actions,
                          float(m.policy_std), m.policy_conv_channels,
                          m.policy_hidden, m.policy_batchnorm)
    if m.classifier == "logit_mean":
      classifier = glance_frames * glance_head + focus_frames * focus_head
      classifier_runs = 1
    else:
      classifier = _classifier_macs(m.classifier, map_shape[-1] + focus_dim,
                                    d.num_classes, m.classifier_hidden)
      classifier_runs = focus_frames
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

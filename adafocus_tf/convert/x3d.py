"""Fills our Keras X3D (``models/x3d``) from an official X3D state dict.

The official Uni-AdaFocus-X3D code (docs/METHOD.md V2-11.4) builds its
glance and focus nets with ``archs/x3d_video_model_builder.py`` ``X3D``
(SlowFast's module tree) and loads SlowFast's ``x3d_s.pyth`` /
``x3d_l.pyth`` into them; its own checkpoints hold them under
``module.global_CNN.`` and ``module.local_CNN.``. The names are:

  * ``s1.pathway0_stem.{conv_xy, conv, bn}``: the stem;
  * ``s<k>.pathway0_res<i>.branch1[_bn]``: a projection shortcut;
    ``s<k>.pathway0_res<i>.branch2.{a, a_bn, b, b_bn, se.fc1, se.fc2, c,
    c_bn}``: the bottleneck, k = 2..5;
  * ``head.{conv_5, conv_5_bn, lin_5, projection}``.

Convolutions are ``Conv3d`` [O, I/groups, kt, kh, kw] (ours Conv3D
[kt, kh, kw, I/groups, O]); the squeeze-excitation's ``fc1``/``fc2`` and
``lin_5`` are 1x1x1 ``Conv3d``s, dense layers here; ``projection`` is a
``Linear``. Every tensor must find its variable and every variable its
tensor; on any error the model's weights are restored as they were.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from adafocus_tf.convert import checkpoint_file
from adafocus_tf.convert import cnn
from adafocus_tf.convert import errors
from adafocus_tf.convert import layouts
from adafocus_tf.convert.state import Filler, TensorSource

# The official nets' prefixes in a Uni-AdaFocus-X3D checkpoint's
# ``state_dict`` (after DistributedDataParallel's ``module.``).
GLANCE_PREFIX = "global_CNN."
FOCUS_PREFIX = "local_CNN."
# SlowFast's checkpoint files (``x3d_s.pyth``) keep the weights here.
SLOWFAST_STATE = "model_state"


def pointwise_dense_kernel(w: np.ndarray) -> np.ndarray:
  """A 1x1x1 Conv3d [O, I, 1, 1, 1] -> Dense [I, O]."""
  if w.ndim != 5 or w.shape[2:] != (1, 1, 1):
    raise ValueError(f"expected a 1x1x1 Conv3d weight [O, I, 1, 1, 1], got "
                     f"shape {w.shape}")
  return layouts.dense_kernel(w[:, :, 0, 0, 0])


def _fill_conv(layer, source: TensorSource, key: str, filler: Filler):
  """A ``PaddedConv3D`` from ``<key>.weight``."""
  weight = f"{key}.weight"
  # pylint: disable=protected-access
  value = cnn._guard(source, weight, layer.kernel, layouts.conv3d_kernel)
  filler.assign(layer.kernel, value, source.describe(weight))


def _fill_pointwise(layer, source: TensorSource, key: str, filler: Filler):
  """A Dense layer from a 1x1x1 Conv3d (``<key>.bias`` if it has one)."""
  weight = f"{key}.weight"
  # pylint: disable=protected-access
  value = cnn._guard(source, weight, layer.kernel, pointwise_dense_kernel)
  filler.assign(layer.kernel, value, source.describe(weight))
  if layer.use_bias:
    bias = f"{key}.bias"
    filler.assign(layer.bias, cnn._guard(source, bias, layer.bias,
                                         lambda x: x),
                  source.describe(bias))


def _fill_block(block, source: TensorSource, key: str, filler: Filler):
  if block.branch1 is not None:
    _fill_conv(block.branch1, source, f"{key}.branch1", filler)
    cnn.fill_batch_norm(block.branch1_bn, source, f"{key}.branch1_bn",
                        filler)
  inner = f"{key}.branch2"
  for conv in ("a", "b", "c"):
    _fill_conv(getattr(block, conv), source, f"{inner}.{conv}", filler)
    cnn.fill_batch_norm(getattr(block, f"{conv}_bn"), source,
                        f"{inner}.{conv}_bn", filler)
  if block.se is not None:
    for fc in ("fc1", "fc2"):
      _fill_pointwise(getattr(block.se, fc), source, f"{inner}.se.{fc}",
                      filler)


def fill_x3d(model, source: TensorSource, prefix: str,
             filler: Filler) -> None:
  """Fills a built ``X3D`` from ``source``'s ``<prefix>...`` tensors.

  Args:
    model: our ``models.x3d.backbone.X3D``, built (called once).
    source: the state dict.
    prefix: the net's key prefix (``""`` for a SlowFast file,
      ``GLANCE_PREFIX`` / ``FOCUS_PREFIX`` in a Uni-AdaFocus-X3D one).
    filler: records what was filled.
  """
  stem = f"{prefix}s1.pathway0_stem"
  _fill_conv(model.stem.conv_xy, source, f"{stem}.conv_xy", filler)
  _fill_conv(model.stem.conv, source, f"{stem}.conv", filler)
  cnn.fill_batch_norm(model.stem.bn, source, f"{stem}.bn", filler)
  for k, stage in enumerate(model.stages, start=2):
    for i, block in enumerate(stage.blocks):
      _fill_block(block, source, f"{prefix}s{k}.pathway0_res{i}", filler)
  head = f"{prefix}head"
  _fill_conv(model.head.conv_5, source, f"{head}.conv_5", filler)
  cnn.fill_batch_norm(model.head.conv_5_bn, source, f"{head}.conv_5_bn",
                      filler)
  _fill_pointwise(model.head.lin_5, source, f"{head}.lin_5", filler)
  cnn.fill_dense(model.head.projection, source, f"{head}.projection", filler)


def state_of(checkpoint: Dict, origin: str) -> Dict[str, np.ndarray]:
  """The state dict of a read checkpoint: SlowFast's ``model_state``
  entry, a ``state_dict`` entry, or the dict itself.

  Raises:
    ConversionError: none of these holds tensors.
  """
  for key in (SLOWFAST_STATE, "state_dict"):
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
      return checkpoint[key]
  if isinstance(checkpoint, dict) and checkpoint:
    return checkpoint
  raise errors.ConversionError(f"{origin} holds no X3D state dict (no "
                               f"{SLOWFAST_STATE!r} or 'state_dict' entry)")


def convert_state_dict(model, tensors: Dict[str, np.ndarray], origin: str,
                       prefix: str = "") -> None:
  """Fills ``model`` from a whole X3D state dict, all or nothing.

  Args:
    model: our ``X3D``, built.
    tensors: key -> numpy array (e.g. ``checkpoint_file.read(path)``'s
      ``model_state``); only the ``prefix`` keys are read, and all of them
      must find a variable.
    origin: where the tensors came from, for messages.
    prefix: the net's key prefix.

  Raises:
    MissingKeyError, UnusedKeyError, ShapeMismatchError,
    UnfilledVariableError: naming the tensor or variable; the model's
      weights are then as before the call.
  """
  own = {k: v for k, v in tensors.items() if k.startswith(prefix)}
  if not own:
    raise errors.MissingKeyError(f"{origin} has no tensor under the prefix "
                                 f"{prefix!r}")
  source, filler = TensorSource(own, origin), Filler()
  saved = [v.numpy() for v in model.weights]
  try:
    fill_x3d(model, source, prefix, filler)
    source.finish()
    filler.check_filled(model.weights, what=model.name)
  except Exception:
    for var, value in zip(model.weights, saved):
      var.assign(value)
    raise


def load_file(model, path: str) -> None:
  """Fills a built ``X3D`` from a SlowFast X3D checkpoint file
  (``x3d_s.pyth``: its ``model_state``) or a saved state dict, all or
  nothing (``convert_state_dict``).

  Raises:
    FileNotFoundError: no such file.
    ConversionError: the file's tensors do not fit the net (named).
  """
  convert_state_dict(model, state_of(checkpoint_file.read(path), path), path)

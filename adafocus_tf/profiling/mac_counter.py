"""Counting multiply-accumulates of Keras layers as they run.

The rules (docs/FLOPS.md): only layers that multiply activations by weights
count (convolutions, depthwise and separable convolutions, dense and
recurrent layers; a GRU step is ``3 * (D * U + U * U)``); biases, batch
norm, activations, pooling and elementwise work do not.

Counts are taken by running the model once, eagerly, on a batch of one
all-zero example, with every countable layer's ``call`` wrapped to record
the concrete shapes it sees, so nested models, shared layers and Python
loops over time are counted as executed; a layer called inside another
counted layer (a GRU's cell inside the GRU) is not counted again.
"""
from __future__ import annotations

from typing import Dict, Sequence

from absl import logging
import numpy as np
import tensorflow as tf


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

"""Inference through a backbone with each batch norm folded into its conv.

At inference a batch norm is a per-channel affine map, so
``bn(conv(x, w))`` equals ``conv(x, w * s) + (beta - mean * s)`` with
``s = gamma / sqrt(var + eps)``. TensorFlow's CPU graph optimiser fuses
``Conv2D`` / ``DepthwiseConv2dNative`` + ``BiasAdd`` + ReLU into one oneDNN
kernel, but leaves a batch norm after a depthwise convolution (every one of
MobileNetV2's) as separate passes over the activations. Folding them
makes the whole model 5-15% faster on 2 cores (docs/BENCHMARKS.md,
issue 15). The folded weights are computed in the graph from the current
variables on every call, so they can never go stale after training or a
checkpoint restore; results equal the Keras model's to float round-off.
"""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf

_CONVS = (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D)


def _sources(model_name: str, spec: dict) -> List[str]:
  """The layers a backbone layer reads (its config's one inbound node).

  Raises:
    ValueError: a layer this executor cannot replay (called more than once
      in the model, or with call arguments besides its inputs), named.
  """
  nodes = spec["inbound_nodes"]
  if not nodes:
    return []
  if len(nodes) > 1 or any(node[3] for node in nodes[0]):
    raise ValueError(
        f"{model_name}: layer {spec['name']!r} is called more than once or "
        "with extra arguments; load with fold_batch_norms=False")
  return [node[0] for node in nodes[0]]


def _conv_padding(conv, pad: tf.keras.layers.ZeroPadding2D):
  """The padding argument that makes ``conv`` apply ``pad`` itself, or None.

  A ``Conv2D`` takes any explicit padding. oneDNN's depthwise kernels are
  only used for ``SAME`` / ``VALID`` (TensorFlow pads explicitly-padded
  ones in a separate pass, as slow as the convolution), so a depthwise
  convolution takes the padding only where ``SAME`` pads exactly as
  ``pad`` does on its static input size (Keras MobileNetV2's stride-2
  ``correct_pad``: one row and column after, on an even size).
  """
  (top, bottom), (left, right) = pad.padding
  if not isinstance(conv, tf.keras.layers.DepthwiseConv2D):
    return [[0, 0], [top, bottom], [left, right], [0, 0]]
  sizes = pad.input_shape[1:3]
  if None in sizes or conv.dilation_rate != (1, 1):
    return None
  for size, kernel, stride, before, after in zip(
      sizes, conv.kernel_size, conv.strides, (top, left), (bottom, right)):
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    if (before, after) != (total // 2, total - total // 2):
      return None
  return "SAME"


class FoldedBackbone:
  """Runs a functional Keras backbone at inference, batch norms folded.

  Only a ``BatchNormalization`` over the last axis whose input is a
  channels-last convolution (ungrouped, no activation of its own) read by
  nothing else is folded; every other layer runs as itself (with
  ``training=False``). A ``ZeroPadding2D`` read only by a folded
  convolution with ``valid`` padding becomes the convolution's own padding
  where that is exact (``_conv_padding``).

  Args:
    model: a functional ``tf.keras.Model`` (single input and output), the
      backbone; it keeps its own variables (this holds none).

  Raises:
    ValueError: a layer called more than once or with call arguments.
  """

  def __init__(self, model: tf.keras.Model):
    config = model.get_config()
    self._order: List[str] = [spec["name"] for spec in config["layers"]]
    self._inputs: Dict[str, List[str]] = {
        spec["name"]: _sources(model.name, spec) for spec in config["layers"]}
    readers: Dict[str, List[str]] = {}
    for name, sources in self._inputs.items():
      for source in sources:
        readers.setdefault(source, []).append(name)
    self._output = config["output_layers"][0][0]
    layer = {name: model.get_layer(name) for name in self._order}
    self._layer = layer
    # batch norm name -> the convolution it folds into
    self._folds = {}
    for name in self._order:
      bn = layer[name]
      if not isinstance(bn, tf.keras.layers.BatchNormalization):
        continue
      source = self._inputs[name][0]
      axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
      conv = layer[source]
      if (isinstance(conv, _CONVS) and readers.get(source) == [name] and
          axis in (-1, 3) and getattr(conv, "groups", 1) == 1 and
          conv.data_format == "channels_last" and
          conv.activation is tf.keras.activations.linear):
        self._folds[name] = source
    folded = set(self._folds.values())
    # folded conv name -> the padding it applies itself, in place of the
    # ZeroPadding2D layer it alone reads
    self._padding = {}
    for name in self._order:
      conv_name = (readers.get(name) or [None])[0]
      if (isinstance(layer[name], tf.keras.layers.ZeroPadding2D) and
          len(readers[name]) == 1 and conv_name in folded and
          layer[conv_name].padding == "valid"):
        padding = _conv_padding(layer[conv_name], layer[name])
        if padding is not None:
          self._padding[conv_name] = padding
    self._skipped = folded | {self._inputs[conv][0] for conv in self._padding}

  def __call__(self, images):
    """The backbone's output on ``images`` at inference."""
    values = {}
    for name in self._order:
      layer = self._layer[name]
      if isinstance(layer, tf.keras.layers.InputLayer):
        values[name] = images
      elif name in self._folds:
        values[name] = self._folded(self._folds[name], layer, values)
      elif name not in self._skipped:
        sources = [values[s] for s in self._inputs[name]]
        values[name] = layer(sources if len(sources) > 1 else sources[0],
                             training=False)
    return values[self._output]

  def _folded(self, conv_name, bn, values):
    conv = self._layer[conv_name]
    source = self._inputs[conv_name][0]
    padding = conv.padding.upper()
    if conv_name in self._padding:
      padding = self._padding[conv_name]
      source = self._inputs[source][0]
    x = values[source]
    scale = bn.moving_variance + bn.epsilon
    scale = tf.math.rsqrt(scale) * (bn.gamma if bn.scale else 1.0)
    shift = -bn.moving_mean * scale
    if bn.center:
      shift += bn.beta
    if isinstance(conv, tf.keras.layers.DepthwiseConv2D):
      shape = conv.depthwise_kernel.shape  # [kh, kw, in, multiplier]
      kernel = conv.depthwise_kernel * tf.reshape(scale,
                                                  [1, 1, shape[2], shape[3]])
      y = tf.nn.depthwise_conv2d(x, tf.cast(kernel, x.dtype),
                                 [1, *conv.strides, 1], padding,
                                 dilations=conv.dilation_rate)
    else:
      kernel = conv.kernel * scale
      y = tf.nn.conv2d(x, tf.cast(kernel, x.dtype), conv.strides, padding,
                       dilations=conv.dilation_rate)
    if conv.use_bias:
      shift += conv.bias * scale
    return tf.nn.bias_add(y, tf.cast(shift, x.dtype))


class BackboneRunner:
  """A net's backbone call: the Keras model, or ``FoldedBackbone`` at
  inference once ``fold`` is set (``fold_at_inference``).

  Args:
    backbone: the net's functional Keras backbone.
  """

  def __init__(self, backbone: tf.keras.Model):
    self._backbone = backbone
    self._folded = None

  @property
  def fold(self) -> bool:
    """Whether calls with ``training=False`` fold the batch norms."""
    return self._folded is not None

  @fold.setter
  def fold(self, on: bool):
    # Built here, not at the first call, so a backbone it cannot replay
    # fails when the run is loaded rather than inside a traced function.
    self._folded = FoldedBackbone(self._backbone) if on else None

  def __call__(self, images, training):
    if training or self._folded is None:
      return self._backbone(images, training=training)
    return self._folded(images)


def fold_at_inference(model: tf.keras.Model, on: bool = True) -> None:
  """Makes every glance and focus net in ``model`` fold at inference.

  Their ``call(..., training=False)`` then runs ``FoldedBackbone``; training
  calls are unchanged. The inference tools turn it on when they load a run
  (``inference.loading.from_checkpoints``); training never does, so its
  numbers do not move.

  Args:
    model: a model of any family (its nets are found among its submodules),
      or a glance or focus net itself.
    on: fold (True) or run the Keras backbone (False).
  """
  for net in [model, *model.submodules]:
    runner = getattr(net, "backbone_runner", None)
    if isinstance(runner, BackboneRunner):
      runner.fold = on

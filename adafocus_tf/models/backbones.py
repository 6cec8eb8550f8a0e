"""Convolutional backbones that map an image to a feature map.

All are built without a classifier top and randomly initialised unless a
local weights file is given (no weights are downloaded).

  * ``mobilenet_v2``: ``tf.keras.applications.MobileNetV2``.
  * ``mobilenet_v2_torch``: MobileNetV2 in torchvision's layout (symmetric
    zero padding, bias-free convolutions, batch-norm epsilon 1e-5, ReLU6),
    with Keras layer names equal to torchvision's state-dict module paths
    with ``.`` replaced by ``_`` (``features_2_conv_1_0`` is
    ``features.2.conv.1.0``), so PyTorch checkpoints (the Something-Something
    glance nets) convert by name. Same 299,494,272 MACs at 224 as the Keras
    one.
  * ``resnet50``: ResNet-50 in torchvision's layout ("v1.5": the stride of a
    downsampling block sits on its 3x3 convolution; convolutions without
    bias; symmetric zero padding; batch-norm epsilon 1e-5), layer names
    following torchvision's (``layer2_0_conv2``). This is the network of the
    paper and of the reference checkpoints, and it reproduces the published
    0.751/1.335/2.085/3.003 GMACs at 96/128/160/192.
  * ``resnet50_keras``: ``tf.keras.applications.ResNet50`` (v1, stride on the
    first 1x1 convolution, about 5.7% fewer MACs), for Keras weight files.
  * ``tiny_cnn``, ``tiny_resnet``: small residual CNNs for the CPU preset;
    the same structure (strided convolutions, batch norm, residual blocks, a
    feature map) at a fraction of the cost.

Temporal shift (TSM, ``temporal_shift.py``): with ``temporal_shift_frames``
> 0 the project's own builders put a ``TemporalShift`` layer at the start of
the residual branch of every residual block (TSM's "blockres" place: the
shortcut keeps the unshifted input): before ``conv1`` of every ResNet-50
bottleneck, before the first convolution of every MobileNetV2 inverted
residual block that has a residual connection (stride 1, as many channels
out as in), and before the first convolution of every tiny residual block.
The shift layers are named ``<block>_shift`` and have no weights; every
weighted layer keeps its name and its place in ``model.layers``, so weights
of a TSM backbone and of a plain one are interchangeable.

Every batch norm is a ``PreciseBatchNormalization`` (``precise_batchnorm.py``:
Keras' layer with PyTorch's precise training-mode moments); the
``keras.applications`` models are rebuilt with them, names and weights kept.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import temporal_shift

layers = tf.keras.layers
# Training-mode moments accumulated in float64, as PyTorch's (issue 24).
_BatchNorm = precise_batchnorm.PreciseBatchNormalization

# (channels, stride) of the tiny backbones' stages.
_TINY_CNN_STAGES = ((32, 1), (64, 2), (96, 1))
_TINY_RESNET_STAGES = ((32, 1), (64, 2), (128, 2))

# torchvision ResNet-50: (width, blocks, stride) of layer1..layer4.
_RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
_RESNET_EXPANSION = 4
# torchvision MobileNetV2: (expansion t, channels c, blocks n, stride s).
_MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                         (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                         (6, 320, 1, 1))
_MOBILENET_V2_STEM = 32
_MOBILENET_V2_LAST = 1280

# keras.applications models: built whole by Keras, no shift can go inside.
_KERAS_APPLICATIONS = ("mobilenet_v2", "resnet50_keras")


class _Shift:
  """Where to shift: T frames per video and the fold, or off (T = 0).

  Args:
    frames: T; 0 turns the shift off.
    shift_div: the shifted fraction's denominator.
  """

  def __init__(self, frames: int, shift_div: int):
    self.frames = frames
    self.shift_div = shift_div

  def __call__(self, x, block: str):
    """``x`` shifted in time (a layer named ``<block>_shift``), or ``x``."""
    if not self.frames:
      return x
    return temporal_shift.TemporalShift(self.frames, self.shift_div,
                                        name=f"{block}_shift")(x)


def _conv_bn_relu(x, channels, stride, name):
  x = layers.Conv2D(channels, 3, stride, padding="same", use_bias=False,
                    name=f"{name}_conv")(x)
  x = _BatchNorm(name=f"{name}_bn")(x)
  return layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, channels, stride, name, shift):
  shortcut = x
  y = _conv_bn_relu(shift(x, name), channels, stride, f"{name}_a")
  y = layers.Conv2D(channels, 3, padding="same", use_bias=False,
                    name=f"{name}_b_conv")(y)
  y = _BatchNorm(name=f"{name}_b_bn")(y)
  if stride != 1 or x.shape[-1] != channels:
    shortcut = layers.Conv2D(channels, 1, stride, use_bias=False,
                             name=f"{name}_proj")(x)
    shortcut = _BatchNorm(name=f"{name}_proj_bn")(shortcut)
  return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")(
      [shortcut, y]))


def _torch_conv(x, channels, kernel, stride, name, groups=1):
  """A bias-free convolution padded like PyTorch's (kernel // 2 each side).

  ``groups == channels == input channels`` makes it depthwise (a Keras
  ``DepthwiseConv2D``, counted and stored as such).
  """
  pad = kernel // 2
  if pad:
    x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
  if groups > 1:
    if groups != channels or groups != x.shape[-1]:
      raise ValueError("only depthwise grouped convolutions are built")
    return layers.DepthwiseConv2D(kernel, stride, use_bias=False,
                                  name=name)(x)
  return layers.Conv2D(channels, kernel, stride, use_bias=False,
                       name=name)(x)


def _torch_bn(x, name):
  return _BatchNorm(name=name, **precise_batchnorm.TORCH_DEFAULTS)(x)


def _resnet50_v15(inputs, shift):
  x = _torch_conv(inputs, 64, 7, 2, "conv1")
  x = layers.ReLU(name="relu")(_torch_bn(x, "bn1"))
  x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
  x = layers.MaxPooling2D(3, 2, name="maxpool")(x)
  for li, (width, blocks, stride) in enumerate(_RESNET50_LAYERS, start=1):
    for b in range(blocks):
      name = f"layer{li}_{b}"
      s = stride if b == 0 else 1
      # TSM "blockres": the shift wraps conv1, so the shortcut (identity or
      # downsample) reads the unshifted block input.
      y = layers.ReLU()(_torch_bn(_torch_conv(shift(x, name), width, 1, 1,
                                              f"{name}_conv1"), f"{name}_bn1"))
      y = layers.ReLU()(_torch_bn(_torch_conv(y, width, 3, s,
                                              f"{name}_conv2"), f"{name}_bn2"))
      y = _torch_bn(_torch_conv(y, width * _RESNET_EXPANSION, 1, 1,
                                f"{name}_conv3"), f"{name}_bn3")
      shortcut = x
      if b == 0:
        shortcut = _torch_bn(
            _torch_conv(x, width * _RESNET_EXPANSION, 1, s,
                        f"{name}_downsample_0"), f"{name}_downsample_1")
      x = layers.ReLU(name=f"{name}_out")(
          layers.Add(name=f"{name}_add")([shortcut, y]))
  return tf.keras.Model(inputs, x, name="resnet50")


def make_divisible(value: float, divisor: int = 8) -> int:
  """torchvision's ``_make_divisible``: channels rounded to a multiple of 8.

  Args:
    value: the scaled channel count.
    divisor: the multiple.

  Returns:
    The nearest multiple of ``divisor`` (at least ``divisor``), raised by
    one ``divisor`` when rounding down lost more than 10%.
  """
  new = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if new < 0.9 * value:
    new += divisor
  return new


def _conv_bn_relu6(x, channels, kernel, stride, name, groups=1):
  """torchvision's ``ConvNormActivation``: modules ``name.0/.1/.2``."""
  x = _torch_conv(x, channels, kernel, stride, f"{name}_0", groups)
  return layers.ReLU(6.0, name=f"{name}_2")(_torch_bn(x, f"{name}_1"))


def _inverted_residual(x, out_channels, stride, expand, name, shift):
  """torchvision's ``InvertedResidual`` (module ``name`` = ``features.i``)."""
  in_channels = x.shape[-1]
  hidden = int(round(in_channels * expand))
  residual = stride == 1 and in_channels == out_channels
  # TSM: only blocks with a residual connection shift, before their first
  # convolution (as the AdaFocus reference's glance net does).
  y = shift(x, name) if residual else x
  i = 0   # index in the block's ``conv`` Sequential
  if expand != 1:
    y = _conv_bn_relu6(y, hidden, 1, 1, f"{name}_conv_{i}")
    i += 1
  y = _conv_bn_relu6(y, hidden, 3, stride, f"{name}_conv_{i}", groups=hidden)
  y = _torch_conv(y, out_channels, 1, 1, f"{name}_conv_{i + 1}")
  y = _torch_bn(y, f"{name}_conv_{i + 2}")
  if residual:
    y = layers.Add(name=f"{name}_add")([x, y])
  return y


def _mobilenet_v2_torch(inputs, width, shift):
  channels = make_divisible(_MOBILENET_V2_STEM * width)
  x = _conv_bn_relu6(inputs, channels, 3, 2, "features_0")
  index = 1
  for expand, c, n, s in _MOBILENET_V2_SETTING:
    out = make_divisible(c * width)
    for b in range(n):
      x = _inverted_residual(x, out, s if b == 0 else 1, expand,
                             f"features_{index}", shift)
      index += 1
  last = make_divisible(_MOBILENET_V2_LAST * max(1.0, width))
  x = _conv_bn_relu6(x, last, 1, 1, f"features_{index}")
  return tf.keras.Model(inputs, x, name="mobilenet_v2_torch")


def _tiny(inputs, stages, name, shift):
  x = inputs
  for i, (channels, stride) in enumerate(stages):
    x = _residual_block(x, channels, stride, f"{name}_s{i}", shift)
  return tf.keras.Model(inputs, x, name=name)


def build_backbone(name: str, input_size: int, width: float = 1.0,
                   weights: str = "", temporal_shift_frames: int = 0,
                   shift_div: int = 8) -> tf.keras.Model:
  """Builds a backbone mapping [input_size, input_size, 3] to a feature map.

  Args:
    name: ``mobilenet_v2``, ``mobilenet_v2_torch``, ``resnet50``,
      ``resnet50_keras``, ``tiny_cnn`` or ``tiny_resnet``.
    input_size: side of the square input, or None for any size.
    width: width multiplier (MobileNetV2's alpha; torchvision's
      ``width_mult`` for ``mobilenet_v2_torch``; ignored by the others).
    weights: optional local weights file (Keras ``.h5`` or checkpoint) for
      this backbone, loaded after building.
    temporal_shift_frames: T > 0 builds the TSM version (see the module
      docstring): the model then expects batches of whole videos, [B*T, H,
      W, 3] with each video's T frames consecutive. 0 (default): no shift.
    shift_div: TSM's fold denominator (1/``shift_div`` of the channels go
      each way).

  Returns:
    A ``tf.keras.Model`` whose output is the last feature map [h, w, C].

  Raises:
    ValueError: an unknown name, or a temporal shift asked of a
      ``keras.applications`` backbone.
  """
  shape = (input_size, input_size, 3)
  if temporal_shift_frames and name in _KERAS_APPLICATIONS:
    raise ValueError(
        f"temporal shift (TSM) needs one of the project's own backbone "
        f"builders; {name!r} is a keras.applications model whose residual "
        "branches cannot take a shift layer (use mobilenet_v2_torch instead "
        "of mobilenet_v2, resnet50 instead of resnet50_keras)")
  shift = _Shift(temporal_shift_frames, shift_div)
  if name == "mobilenet_v2":
    model = precise_batchnorm.replace_batch_norms(
        tf.keras.applications.MobileNetV2(
            input_shape=shape, alpha=width, include_top=False, weights=None),
        _BatchNorm.from_config)
  elif name == "mobilenet_v2_torch":
    model = _mobilenet_v2_torch(layers.Input(shape), width, shift)
  elif name == "resnet50":
    model = _resnet50_v15(layers.Input(shape), shift)
  elif name == "resnet50_keras":
    model = precise_batchnorm.replace_batch_norms(
        tf.keras.applications.ResNet50(
            input_shape=shape, include_top=False, weights=None),
        _BatchNorm.from_config)
  elif name == "tiny_cnn":
    model = _tiny(layers.Input(shape), _TINY_CNN_STAGES, "tiny_cnn", shift)
  elif name == "tiny_resnet":
    model = _tiny(layers.Input(shape), _TINY_RESNET_STAGES, "tiny_resnet",
                  shift)
  else:
    raise ValueError(f"unknown backbone {name!r}; choose mobilenet_v2, "
                     "mobilenet_v2_torch, resnet50, resnet50_keras, tiny_cnn "
                     "or tiny_resnet")
  if weights:
    if not tf.io.gfile.exists(weights) and not tf.io.gfile.glob(
        weights + ".*"):
      raise FileNotFoundError(f"backbone weights file {weights} not found")
    model.load_weights(weights)
  return model

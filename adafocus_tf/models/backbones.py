"""Convolutional backbones that map an image to a feature map.

All are built without a classifier top and randomly initialised unless a
local weights file is given (no weights are downloaded).

  * ``mobilenet_v2``: ``tf.keras.applications.MobileNetV2``.
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
"""
from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers

# (channels, stride) of the tiny backbones' stages.
_TINY_CNN_STAGES = ((32, 1), (64, 2), (96, 1))
_TINY_RESNET_STAGES = ((32, 1), (64, 2), (128, 2))


def _conv_bn_relu(x, channels, stride, name):
  x = layers.Conv2D(channels, 3, stride, padding="same", use_bias=False,
                    name=f"{name}_conv")(x)
  x = layers.BatchNormalization(name=f"{name}_bn")(x)
  return layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, channels, stride, name):
  shortcut = x
  y = _conv_bn_relu(x, channels, stride, f"{name}_a")
  y = layers.Conv2D(channels, 3, padding="same", use_bias=False,
                    name=f"{name}_b_conv")(y)
  y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
  if stride != 1 or x.shape[-1] != channels:
    shortcut = layers.Conv2D(channels, 1, stride, use_bias=False,
                             name=f"{name}_proj")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
  return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")(
      [shortcut, y]))


# torchvision ResNet-50: (width, blocks, stride) of layer1..layer4.
_RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
_RESNET_EXPANSION = 4
# PyTorch's batch-norm defaults: eps 1e-5, running-average momentum 0.1.
_TORCH_BN = dict(epsilon=1e-5, momentum=0.9)


def _torch_conv(x, channels, kernel, stride, name):
  """A bias-free convolution padded like PyTorch's (kernel // 2 each side)."""
  pad = kernel // 2
  if pad:
    x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
  return layers.Conv2D(channels, kernel, stride, use_bias=False,
                       name=name)(x)


def _torch_bn(x, name):
  return layers.BatchNormalization(name=name, **_TORCH_BN)(x)


def _resnet50_v15(inputs):
  x = _torch_conv(inputs, 64, 7, 2, "conv1")
  x = layers.ReLU(name="relu")(_torch_bn(x, "bn1"))
  x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
  x = layers.MaxPooling2D(3, 2, name="maxpool")(x)
  for li, (width, blocks, stride) in enumerate(_RESNET50_LAYERS, start=1):
    for b in range(blocks):
      name = f"layer{li}_{b}"
      s = stride if b == 0 else 1
      y = layers.ReLU()(_torch_bn(_torch_conv(x, width, 1, 1,
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


def _tiny(inputs, stages, name):
  x = inputs
  for i, (channels, stride) in enumerate(stages):
    x = _residual_block(x, channels, stride, f"{name}_s{i}")
  return tf.keras.Model(inputs, x, name=name)


def build_backbone(name: str, input_size: int, width: float = 1.0,
                   weights: str = "") -> tf.keras.Model:
  """Builds a backbone mapping [input_size, input_size, 3] to a feature map.

  Args:
    name: ``mobilenet_v2``, ``resnet50``, ``resnet50_keras``, ``tiny_cnn``
      or ``tiny_resnet``.
    input_size: side of the square input, or None for any size.
    width: width multiplier (MobileNetV2's alpha; ignored by the others).
    weights: optional local weights file (Keras ``.h5`` or checkpoint) for
      this backbone, loaded after building.

  Returns:
    A ``tf.keras.Model`` whose output is the last feature map [h, w, C].

  Raises:
    ValueError: an unknown name.
  """
  shape = (input_size, input_size, 3)
  if name == "mobilenet_v2":
    model = tf.keras.applications.MobileNetV2(
        input_shape=shape, alpha=width, include_top=False, weights=None)
  elif name == "resnet50":
    model = _resnet50_v15(layers.Input(shape))
  elif name == "resnet50_keras":
    model = tf.keras.applications.ResNet50(
        input_shape=shape, include_top=False, weights=None)
  elif name == "tiny_cnn":
    model = _tiny(layers.Input(shape), _TINY_CNN_STAGES, "tiny_cnn")
  elif name == "tiny_resnet":
    model = _tiny(layers.Input(shape), _TINY_RESNET_STAGES, "tiny_resnet")
  else:
    raise ValueError(f"unknown backbone {name!r}; choose mobilenet_v2, "
                     "resnet50, resnet50_keras, tiny_cnn or tiny_resnet")
  if weights:
    if not tf.io.gfile.exists(weights) and not tf.io.gfile.glob(
        weights + ".*"):
      raise FileNotFoundError(f"backbone weights file {weights} not found")
    model.load_weights(weights)
  return model

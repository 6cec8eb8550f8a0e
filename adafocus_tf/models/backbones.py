"""Convolutional backbones that map an image to a feature map.

``mobilenet_v2`` and ``resnet50`` are ``tf.keras.applications`` models
without their top, randomly initialised unless a local weights file is given
(no weights are downloaded). ``tiny_cnn`` and ``tiny_resnet`` are small
residual CNNs for the CPU preset: they keep the structure (strided
convolutions, batch norm, residual blocks, a feature map) at a fraction of
the cost.
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


def _tiny(inputs, stages, name):
  x = inputs
  for i, (channels, stride) in enumerate(stages):
    x = _residual_block(x, channels, stride, f"{name}_s{i}")
  return tf.keras.Model(inputs, x, name=name)


def build_backbone(name: str, input_size: int, width: float = 1.0,
                   weights: str = "") -> tf.keras.Model:
  """Builds a backbone mapping [input_size, input_size, 3] to a feature map.

  Args:
    name: ``mobilenet_v2``, ``resnet50``, ``tiny_cnn`` or ``tiny_resnet``.
    input_size: side of the square input.
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
    model = tf.keras.applications.ResNet50(
        input_shape=shape, include_top=False, weights=None)
  elif name == "tiny_cnn":
    model = _tiny(layers.Input(shape), _TINY_CNN_STAGES, "tiny_cnn")
  elif name == "tiny_resnet":
    model = _tiny(layers.Input(shape), _TINY_RESNET_STAGES, "tiny_resnet")
  else:
    raise ValueError(f"unknown backbone {name!r}; choose mobilenet_v2, "
                     "resnet50, tiny_cnn or tiny_resnet")
  if weights:
    if not tf.io.gfile.exists(weights) and not tf.io.gfile.glob(
        weights + ".*"):
      raise FileNotFoundError(f"backbone weights file {weights} not found")
    model.load_weights(weights)
  return model

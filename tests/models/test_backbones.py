"""The torchvision-layout MobileNetV2 (``mobilenet_v2_torch``)."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import backbones

# torchvision's mobilenet_v2(): 3,504,872 parameters, of which the
# classifier (Linear 1280 -> 1000) holds 1,281,000.
TORCHVISION_FEATURES_PARAMS = 3_504_872 - 1_281_000


def _torchvision_weighted_modules():
  """torchvision's state-dict module paths ('.' -> '_'), in order.

  features.0 and features.18 are ConvNormActivation (conv .0, bn .1);
  block 1 (expansion 1) is conv.0 (dw ConvNormActivation), conv.1 (pw
  linear), conv.2 (bn); blocks 2-17 add the expansion conv.0 first.
  """
  names = ["features_0_0", "features_0_1",
           "features_1_conv_0_0", "features_1_conv_0_1", "features_1_conv_1",
           "features_1_conv_2"]
  for i in range(2, 18):
    names += [f"features_{i}_conv_{m}" for m in
              ("0_0", "0_1", "1_0", "1_1", "2", "3")]
  return names + ["features_18_0", "features_18_1"]


@pytest.fixture(scope="module")
def mobilenet():
  return backbones.build_backbone("mobilenet_v2_torch", 224)


def test_layer_names_are_torchvision_module_paths(mobilenet):
  weighted = [l.name for l in mobilenet.layers if l.weights]
  assert weighted == _torchvision_weighted_modules()
  kinds = {l.name: type(l).__name__ for l in mobilenet.layers if l.weights}
  assert kinds["features_1_conv_0_0"] == "DepthwiseConv2D"
  assert kinds["features_2_conv_1_0"] == "DepthwiseConv2D"
  assert kinds["features_2_conv_0_0"] == "Conv2D"
  assert kinds["features_17_conv_3"] == "PreciseBatchNormalization"


def test_shapes_and_parameters_match_torchvision(mobilenet):
  layer = mobilenet.get_layer
  assert layer("features_0_0").kernel.shape == (3, 3, 3, 32)
  assert layer("features_1_conv_0_0").depthwise_kernel.shape == (3, 3, 32, 1)
  assert layer("features_1_conv_1").kernel.shape == (1, 1, 32, 16)
  assert layer("features_2_conv_0_0").kernel.shape == (1, 1, 16, 96)
  assert layer("features_2_conv_1_0").strides == (2, 2)
  assert layer("features_17_conv_2").kernel.shape == (1, 1, 960, 320)
  assert layer("features_18_0").kernel.shape == (1, 1, 320, 1280)
  assert mobilenet.output_shape == (None, 7, 7, 1280)
  # No convolution has a bias; batch norm is PyTorch's.
  convs = [l for l in mobilenet.layers
           if isinstance(l, (tf.keras.layers.Conv2D,))]
  assert convs and not any(l.use_bias for l in convs)
  bn = layer("features_0_1")
  assert bn.epsilon == 1e-5 and bn.momentum == pytest.approx(0.9)
  trainable = sum(int(np.prod(w.shape)) for w in mobilenet.trainable_weights)
  assert trainable == TORCHVISION_FEATURES_PARAMS
  # ReLU6 after the convolutions, none after the linear bottleneck.
  assert layer("features_0_2").max_value == 6.0
  assert layer("features_3_add").input[0] is layer("features_2_conv_3").output


def test_padding_is_symmetric_like_pytorch():
  # A strided 3x3 convolution on an even input: PyTorch pads one pixel on
  # every side (Keras' "same" would pad only bottom/right).
  model = backbones.build_backbone("mobilenet_v2_torch", 32)
  pad = model.get_layer("features_0_0_pad")
  assert pad.padding == ((1, 1), (1, 1))
  assert model.get_layer("features_0_0").padding == "valid"
  assert model.output_shape == (None, 1, 1, 1280)
  assert backbones.build_backbone("mobilenet_v2_torch", None).output_shape \
      == (None, None, None, 1280)


def test_width_multiplier_rounds_like_torchvision():
  assert backbones.make_divisible(32 * 0.75) == 24
  assert backbones.make_divisible(1280 * 1.4) == 1792
  assert backbones.make_divisible(16 * 0.35) == 8
  assert backbones.make_divisible(96 * 0.35) == 32
  assert backbones.make_divisible(10) == 16     # 8 would lose > 10%
  half = backbones.build_backbone("mobilenet_v2_torch", 64, width=0.5)
  assert half.get_layer("features_0_0").kernel.shape[-1] == 16
  assert half.get_layer("features_17_conv_2").kernel.shape[-1] == 160
  assert half.output_shape[-1] == 1280          # last conv only grows
  wide = backbones.build_backbone("mobilenet_v2_torch", 64, width=1.4)
  assert wide.output_shape[-1] == 1792


def test_unknown_backbone():
  with pytest.raises(ValueError, match="unknown backbone"):
    backbones.build_backbone("vgg16", 32)

"""Batch norms folded into their convolutions compute the backbone's output."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import backbones
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import glance


def _random_statistics(model, seed):
  """Every batch norm given random statistics and affine parameters."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      n = layer.moving_mean.shape[0]
      layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
      layer.moving_variance.assign(rng.uniform(0.5, 2, n).astype(np.float32))
      layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
      layer.beta.assign(rng.normal(0, 0.2, n).astype(np.float32))


@pytest.mark.parametrize("name,size,frames", [
    ("mobilenet_v2", 64, 0),        # Keras' own: padding layers, depthwise
    ("mobilenet_v2_torch", 64, 4),  # temporal shift layers in the graph
    ("resnet50", 64, 0),            # torch padding merged into the convs
    ("resnet50_keras", 64, 0),      # convolutions with a bias of their own
    ("tiny_resnet", 32, 0),
])
def test_folded_backbone_equals_the_keras_model(name, size, frames):
  model = backbones.build_backbone(name, size, temporal_shift_frames=frames)
  _random_statistics(model, seed=0)
  folded = batchnorm_folding.FoldedBackbone(model)
  norms = [l for l in model.layers
           if isinstance(l, tf.keras.layers.BatchNormalization)]
  # Every batch norm of these backbones follows a convolution.
  assert len(folded._folds) == len(norms)  # pylint: disable=protected-access
  x = tf.random.stateless_normal([4, size, size, 3], [1, 2])
  want = model(x, training=False).numpy()
  got = tf.function(folded, autograph=False)(x).numpy()
  assert got.shape == want.shape
  scale = np.abs(want).max()
  assert scale > 0.5  # not a degenerate all-zero output
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


def test_new_weights_are_used_without_rebuilding():
  model = backbones.build_backbone("tiny_resnet", 32)
  folded = batchnorm_folding.FoldedBackbone(model)
  x = tf.random.stateless_normal([2, 32, 32, 3], [3, 4])
  before = folded(x).numpy()
  _random_statistics(model, seed=1)
  after = folded(x).numpy()
  assert np.abs(after - before).max() > 1e-2
  np.testing.assert_allclose(after, model(x, training=False).numpy(),
                             rtol=0, atol=2e-5 * np.abs(after).max())


def test_fold_at_inference_switches_the_nets_of_a_model_not_training():
  net = glance.GlanceNet("tiny_cnn", 32, 1.0, num_classes=3)
  x = tf.random.stateless_normal([2, 32, 32, 3], [5, 6])
  net.logits(net(x)[1])  # builds the head too
  _random_statistics(net.backbone, seed=2)
  holder = tf.keras.Sequential([net])  # found among the submodules
  batchnorm_folding.fold_at_inference(holder)
  assert net.backbone_runner.fold
  # Same checkpoint layout: the runner adds no variables or dependencies.
  assert len(net.variables) == len(net.backbone.variables) + 2
  assert "backbone_runner" not in net._trackable_children()  # pylint: disable=protected-access
  folded, _ = net(x, training=False)
  want = net.backbone(x, training=False)
  np.testing.assert_allclose(folded, want, rtol=0,
                             atol=2e-5 * np.abs(want).max())
  # Training calls run the Keras backbone (batch statistics).
  trained, _ = net(x, training=True)
  np.testing.assert_array_equal(trained, net.backbone(x, training=True))
  batchnorm_folding.fold_at_inference(holder, on=False)
  assert not net.backbone_runner.fold


def test_a_layer_called_twice_is_refused_by_name():
  inputs = tf.keras.Input([8, 8, 3])
  conv = tf.keras.layers.Conv2D(3, 3, padding="same", name="shared_conv")
  model = tf.keras.Model(inputs, conv(conv(inputs)), name="twice")
  with pytest.raises(ValueError, match="twice: layer 'shared_conv'"):
    batchnorm_folding.FoldedBackbone(model)


def test_padding_before_a_same_padded_conv_is_kept():
  inputs = tf.keras.Input([8, 8, 3])
  x = tf.keras.layers.ZeroPadding2D(1, name="pad")(inputs)
  x = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
  model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(x))
  _random_statistics(model, seed=3)
  folded = batchnorm_folding.FoldedBackbone(model)
  x = tf.random.stateless_normal([2, 8, 8, 3], [7, 8])
  want = model(x, training=False).numpy()
  got = folded(x).numpy()
  assert got.shape == want.shape == (2, 10, 10, 4)
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=2e-5 * np.abs(want).max())


def _pad_ops(fn, x):
  graph = tf.function(fn, autograph=False).get_concrete_function(x).graph
  return [op.name for op in graph.get_operations() if op.type == "Pad"]


@pytest.mark.parametrize("padding,stride,size,merged", [
    (((0, 1), (0, 1)), 2, 16, True),   # Keras MobileNetV2's correct_pad
    (((1, 1), (1, 1)), 1, 16, True),   # torch padding, stride 1
    (((1, 1), (1, 1)), 2, 16, False),  # torch padding, stride 2: not SAME
    (((0, 1), (0, 1)), 2, 15, False),  # SAME pads an odd size (1, 1)
])
def test_depthwise_takes_its_padding_only_where_same_pads_alike(
    padding, stride, size, merged):
  inputs = tf.keras.Input([size, size, 4])
  x = tf.keras.layers.ZeroPadding2D(padding, name="pad")(inputs)
  x = tf.keras.layers.DepthwiseConv2D(3, stride, use_bias=False,
                                      name="dw")(x)
  model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(x))
  _random_statistics(model, seed=4)
  folded = batchnorm_folding.FoldedBackbone(model)
  x = tf.random.stateless_normal([2, size, size, 4], [9, 10])
  # Without a separate Pad pass when SAME pads exactly as the layer did.
  assert bool(_pad_ops(folded, x)) != merged
  want = model(x, training=False).numpy()
  got = folded(x).numpy()
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=2e-5 * np.abs(want).max())

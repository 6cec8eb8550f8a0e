"""Our Keras X3D (adafocus_tf/models/x3d, docs/METHOD.md V2-11.4): the
official presets' shapes (LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus-X3D with Experiments on Kinetics-400", ``configs/X3D_*.yaml``
as ``archs/x3d_video_model_builder.py`` ``X3D._construct_network`` builds
them), the block layout, PyTorch-style padding, and a tiny net's outputs.
Numerical parity with the official network: tests/convert/
test_convert_x3d.py."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models.x3d import backbone
from adafocus_tf.models.x3d import conv as conv_lib
from adafocus_tf.models.x3d import settings as settings_lib

TINY = settings_lib.X3DSettings(depth_factor=1.0, dim_c1=4, dim_c5=16,
                                base_depths=(1, 2, 1, 1))


@pytest.mark.parametrize("name, depths", [
    ("xs", (3, 5, 11, 7)), ("s", (3, 5, 11, 7)), ("m", (3, 5, 11, 7)),
    ("l", (5, 10, 25, 15))])
def test_presets_match_the_official_networks(name, depths):
  s = settings_lib.preset(name)
  assert s.stage_depths() == depths
  assert s.stem_width == 24
  assert s.stage_widths() == (24, 48, 96, 192)
  assert s.stage_inner_widths() == (54, 108, 216, 432)
  assert s.feature_dim == 432 and s.dim_c5 == 2048


def test_preset_clips():
  assert [(settings_lib.preset(n).frames, settings_lib.preset(n).crop_size)
          for n in ("xs", "s", "m", "l")] == [(4, 160), (13, 160), (16, 224),
                                              (16, 312)]
  with pytest.raises(ValueError, match="unknown X3D preset 'xl'.*xs, s, m, l"):
    settings_lib.preset("xl")


def test_round_width_follows_the_official_rule():
  # SlowFast's round_width: to a multiple of the divisor, never below 90%.
  assert settings_lib.round_width(12, 2.0, divisor=8) == 24
  assert settings_lib.round_width(432, 0.0625, 8, 8) == 32   # 27 -> 24 < 24.3
  assert settings_lib.round_width(54, 0.0625, 8, 8) == 8
  assert settings_lib.round_width(7, 0) == 7


def test_strided_convolution_pads_both_sides_like_pytorch():
  """A 3x3, stride-2 window of ones over a 4x4 image of ones: PyTorch's
  padding 1 centres output (0, 0) on pixel (0, 0) (4 pixels inside),
  Keras' ``same`` would not (9)."""
  layer = conv_lib.PaddedConv3D(1, (1, 3, 3), (1, 2, 2))
  layer(tf.ones([1, 1, 4, 4, 1]))   # creates the kernel
  layer.kernel.assign(tf.ones_like(layer.kernel))
  out = layer(tf.ones([1, 1, 4, 4, 1]))[0, 0, ..., 0].numpy()
  np.testing.assert_array_equal(out, [[4, 6], [6, 9]])


def test_block_layout():
  model = backbone.X3D(TINY, 3)
  model(tf.zeros([1, 2, 32, 32, 3]))
  blocks = model.stages[1].blocks
  # SE on blocks 0, 2, ...; a projection shortcut on each stage's first.
  assert [b.se is not None for b in blocks] == [True, False]
  assert [b.branch1 is not None for b in blocks] == [True, False]
  assert blocks[0].se.fc1.units == 8             # at least 8 (divisor)
  assert tuple(blocks[0].b.kernel.shape) == (3, 3, 3, 1, 36)  # channel-wise


def test_tiny_net_shapes_and_training_step():
  model = backbone.X3D(TINY, 3)
  clip = tf.random.stateless_normal([2, 4, 64, 64, 3], [0, 1])
  maps = model.features(clip)
  assert maps.shape == (2, 4, 2, 2, TINY.feature_dim)     # T kept, /32
  assert model.frame_features(maps).shape == (2, 4, TINY.feature_dim)
  with tf.GradientTape() as tape:
    logits = model(clip, training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        [0, 2], logits))
  grads = tape.gradient(loss, model.trainable_variables)
  assert logits.shape == (2, 3)
  assert all(g is not None for g in grads)
  assert float(tf.linalg.global_norm(grads)) > 0

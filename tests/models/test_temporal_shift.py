"""Temporal shift (TSM): the layer, and TSM backbones against plain ones."""
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.models import backbones
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models.temporal_shift import TemporalShift

T = 4


def _clip(videos, frames, size, seed=0):
  """[videos * frames, size, size, 3] of distinct random frames."""
  rng = np.random.default_rng(seed)
  return tf.constant(rng.normal(size=(videos * frames, size, size, 3)),
                     tf.float32)


def _random_weights(model, seed=0):
  """Weights that keep activations alive through a deep random network.

  He-normal kernels and batch-norm statistics near the identity, with
  noise, so that every layer matters (a dead network would hide a shift).
  """
  rng = np.random.default_rng(seed)
  out = []
  for w in model.weights:
    shape, name = tuple(w.shape), w.name
    if "depthwise_kernel" in name:
      value = rng.normal(0, np.sqrt(2 / np.prod(shape[:2])), shape)
    elif "kernel" in name:
      value = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
    elif "gamma" in name or "moving_variance" in name:
      value = 1 + np.abs(rng.normal(0, 0.1, shape))
    else:   # beta, moving_mean
      value = rng.normal(0, 0.1, shape)
    out.append(value.astype(np.float32))
  return out


def _weighted(model):
  return [layer.name for layer in model.layers if layer.weights]


def test_shift_against_a_hand_computed_example():
  # Two videos of three frames, one pixel, eight channels; fold = 8 // 4.
  # Frame t of video b holds 100 b + 10 t + c in channel c.
  x = np.array([[[[100 * b + 10 * t + c for c in range(8)]]]
                for b in range(2) for t in range(3)], np.float32)
  assert x.shape == (6, 1, 1, 8)
  out = TemporalShift(num_frames=3, shift_div=4)(tf.constant(x)).numpy()
  # Channels 0-1 take the next frame's values (0 after the last frame),
  # channels 2-3 the previous frame's (0 before the first), 4-7 stay.
  want = np.array([
      [10, 11, 0, 0, 4, 5, 6, 7],
      [20, 21, 2, 3, 14, 15, 16, 17],
      [0, 0, 12, 13, 24, 25, 26, 27],
      [110, 111, 0, 0, 104, 105, 106, 107],
      [120, 121, 102, 103, 114, 115, 116, 117],
      [0, 0, 112, 113, 124, 125, 126, 127],
  ], np.float32)
  np.testing.assert_array_equal(out[:, 0, 0, :], want)


def test_shift_moves_whole_feature_maps_and_keeps_shape_and_dtype():
  # Every spatial position moves with its channel; 16 channels / 8 = 2.
  x = tf.random.stateless_normal([2 * T, 3, 5, 16], [1, 2])
  out = TemporalShift(T)(x).numpy()
  v, o = x.numpy().reshape(2, T, 3, 5, 16), out.reshape(2, T, 3, 5, 16)
  np.testing.assert_array_equal(o[:, :-1, ..., :2], v[:, 1:, ..., :2])
  np.testing.assert_array_equal(o[:, -1, ..., :2], 0)
  np.testing.assert_array_equal(o[:, 1:, ..., 2:4], v[:, :-1, ..., 2:4])
  np.testing.assert_array_equal(o[:, 0, ..., 2:4], 0)
  np.testing.assert_array_equal(o[..., 4:], v[..., 4:])
  half = TemporalShift(T, dtype="float16")(tf.cast(x, tf.float16))
  assert half.dtype == tf.float16 and half.shape == x.shape


def test_shift_with_unknown_batch_and_size_and_its_edge_cases():
  layer = TemporalShift(2, shift_div=2)
  fn = tf.function(layer, input_signature=[
      tf.TensorSpec([None, None, None, 4], tf.float32)])
  x = tf.reshape(tf.range(2 * 2 * 4, dtype=tf.float32), [4, 1, 1, 4])
  # Videos [f0, f1], [f2, f3]; channels 0-1 from the next frame, 2-3 from
  # the previous one.
  np.testing.assert_array_equal(fn(x).numpy()[:, 0, 0], [
      [4, 5, 0, 0], [0, 0, 2, 3], [12, 13, 0, 0], [0, 0, 10, 11]])
  # Fewer channels than shift_div: nothing to shift.
  np.testing.assert_array_equal(TemporalShift(2, 8)(x).numpy(), x.numpy())
  # One frame per video: the shifted channels (0 and 1) have no neighbour.
  one = TemporalShift(1, 4)(x).numpy()
  np.testing.assert_array_equal(one[..., :2], 0)
  np.testing.assert_array_equal(one[..., 2:], x.numpy()[..., 2:])
  with pytest.raises(tf.errors.InvalidArgumentError):
    TemporalShift(3, 2)(x)     # 4 frames are not whole videos of 3
  with pytest.raises(ValueError):
    TemporalShift(0)
  assert TemporalShift(3, 4).get_config()["num_frames"] == 3
  assert not TemporalShift(3).weights


@pytest.mark.parametrize("name", ["tiny_resnet", "mobilenet_v2_torch",
                                  "resnet50"])
def test_tsm_backbone_without_its_shift_is_the_plain_backbone(name):
  plain = backbones.build_backbone(name, 32)
  tsm = backbones.build_backbone(name, 32, temporal_shift_frames=T)
  # No shift removed: a fold of 0 channels (shift_div larger than any C).
  unshifted = backbones.build_backbone(name, 32, temporal_shift_frames=T,
                                       shift_div=10**6)
  # Same weighted layers, in the same order: weights load in both ways.
  assert _weighted(tsm) == _weighted(plain) == _weighted(unshifted)
  assert [w.name for w in tsm.weights] == [w.name for w in plain.weights]
  assert any(isinstance(layer, TemporalShift) for layer in tsm.layers)
  assert not any(isinstance(layer, TemporalShift) for layer in plain.layers)
  weights = _random_weights(plain)
  for model in (plain, tsm, unshifted):
    model.set_weights(weights)
  x = _clip(2, T, 32)
  want = plain(x, training=False).numpy()
  np.testing.assert_allclose(unshifted(x, training=False).numpy(), want,
                             rtol=1e-5, atol=1e-5)
  # With the shift, the same weights give different features.
  got = tsm(x, training=False).numpy()
  assert got.shape == want.shape
  assert np.abs(got - want).max() > 1e-2 * np.abs(want).max()


def test_tsm_and_plain_weight_files_are_interchangeable(tmp_path):
  plain = backbones.build_backbone("tiny_cnn", 16)
  plain.set_weights(_random_weights(plain, seed=3))
  for fmt in ("ckpt", "h5"):
    path = os.path.join(tmp_path, f"plain.{fmt}")
    plain.save_weights(path)
    tsm = backbones.build_backbone("tiny_cnn", 16, weights=path,
                                   temporal_shift_frames=T)
    for a, b in zip(tsm.weights, plain.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    back = os.path.join(tmp_path, f"tsm.{fmt}")
    tsm.save_weights(back)
    again = backbones.build_backbone("tiny_cnn", 16, weights=back)
    for a, b in zip(again.weights, plain.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name", ["tiny_resnet", "mobilenet_v2_torch"])
def test_the_shift_sees_time(name):
  """Reversing a clip permutes plain outputs but not TSM ones."""
  plain = backbones.build_backbone(name, 32)
  tsm = backbones.build_backbone(name, 32, temporal_shift_frames=T)
  plain.set_weights(_random_weights(plain, seed=1))
  tsm.set_weights(plain.get_weights())
  x = _clip(1, T, 32, seed=1)
  reverse = x[::-1]
  plain_fwd = plain(x, training=False).numpy()
  plain_rev = plain(reverse, training=False).numpy()
  np.testing.assert_allclose(plain_rev, plain_fwd[::-1], rtol=1e-5,
                             atol=1e-5)
  tsm_fwd = tsm(x, training=False).numpy()
  tsm_rev = tsm(reverse, training=False).numpy()
  for t in range(T):
    diff = np.abs(tsm_rev[t] - tsm_fwd[T - 1 - t]).max()
    assert diff > 1e-3 * np.abs(tsm_fwd).max(), (name, t)


def test_shift_reaches_one_frame_per_block_and_never_crosses_videos():
  # tiny_resnet has three residual blocks; the first reads RGB (3 channels,
  # fewer than shift_div: nothing shifts), the other two shift one frame
  # each, so frame t sees frames t-2..t+2.
  t = 8
  tsm = backbones.build_backbone("tiny_resnet", 16, temporal_shift_frames=t)
  tsm.set_weights(_random_weights(tsm, seed=2))
  x = _clip(2, t, 16, seed=2).numpy()
  base = tsm(x, training=False).numpy()
  x[0] += 1.0          # change frame 0 of video 0 only
  moved = np.abs(tsm(x, training=False).numpy() - base).reshape(
      2 * t, -1).max(-1)
  assert (moved[:3] > 1e-4).all()         # frames 0-2 of video 0
  assert (moved[3:] == 0).all()           # frames 3-7, and all of video 1


def test_glance_and_focus_nets_pass_the_shift_through():
  glance = glance_lib.GlanceNet("tiny_cnn", 16, 1.0, 5,
                                temporal_shift_frames=T, shift_div=4)
  focus = focus_lib.FocusNet("tiny_resnet", 5, temporal_shift_frames=T)
  shifts = [l for l in glance.backbone.layers if isinstance(l, TemporalShift)]
  assert [l.name for l in shifts] == [f"tiny_cnn_s{i}_shift"
                                      for i in range(3)]
  assert all(l.num_frames == T and l.shift_div == 4 for l in shifts)
  assert sum(isinstance(l, TemporalShift)
             for l in focus.backbone.layers) == 3
  fmap, pooled = glance(_clip(2, T, 32))      # resized to 16 first
  assert fmap.shape == (2 * T, 8, 8, 96) and pooled.shape == (2 * T, 96)
  assert focus(_clip(2, T, 24)).shape == (2 * T, 128)
  # Default: no shift.
  assert not any(isinstance(l, TemporalShift) for l in
                 glance_lib.GlanceNet("tiny_cnn", 16, 1.0, 5).backbone.layers)


def test_keras_applications_backbones_refuse_the_shift():
  for name in ("mobilenet_v2", "resnet50_keras"):
    with pytest.raises(ValueError, match="own backbone builders"):
      backbones.build_backbone(name, 32, temporal_shift_frames=T)

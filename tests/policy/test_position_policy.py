"""AdaFocusV2's deterministic position policies against numpy by hand.

docs/METHOD.md V2-3 (recurrent, a position per frame) and V2-6 (V2-TSM, one
position per video from the stacked glance maps).
"""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from adafocus_tf.policy import recurrent_position_policy
from adafocus_tf.policy import video_position_policy

B, T, H, W, C = 2, 3, 2, 3, 5
CONV, HIDDEN = 4, 6


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _randomise_batchnorms(layer, rng):
  """Non-trivial batch-norm statistics, so their use is checked."""
  for bn in [l for l in layer.submodules
             if isinstance(l, tf.keras.layers.BatchNormalization)]:
    n = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, n))
    bn.beta.assign(rng.normal(size=n))
    bn.moving_mean.assign(rng.normal(size=n))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def _bn(bn, x):
  return ((x - bn.moving_mean.numpy())
          / np.sqrt(bn.moving_variance.numpy() + 1e-5) * bn.gamma.numpy()
          + bn.beta.numpy())


def _encoder(enc, maps):
  """[N, H, W, C] -> [N, width]: 1x1 conv, BN, tanh, NHWC flatten, dense..."""
  x = np.tanh(_bn(enc.conv_bn, maps @ enc.conv.kernel.numpy()[0, 0]))
  x = x.reshape(len(x), -1)
  for dense, bn in zip(enc.dense, enc.dense_bn):
    x = np.tanh(_bn(bn, x @ dense.kernel.numpy() + dense.bias.numpy()))
  return x


def _gru(cell, xs):
  """PyTorch's GRU equations (Keras reset_after=True) over xs [N, T, D]."""
  k, rk, (bi, br) = (cell.kernel.numpy(), cell.recurrent_kernel.numpy(),
                     cell.bias.numpy())
  u = cell.units
  h = np.zeros([xs.shape[0], u])
  out = []
  for t in range(xs.shape[1]):
    xi = xs[:, t] @ k + bi
    hr = h @ rk + br
    z = _sigmoid(xi[:, :u] + hr[:, :u])  # Keras gate order z, r, h
    r = _sigmoid(xi[:, u:2 * u] + hr[:, u:2 * u])
    n = np.tanh(xi[:, 2 * u:] + r * hr[:, 2 * u:])
    h = z * h + (1 - z) * n
    out.append(h)
  return np.stack(out, 1)


def test_recurrent_policy_by_hand_and_stepwise():
  rng = np.random.default_rng(0)
  policy = recurrent_position_policy.RecurrentPositionPolicy(CONV, HIDDEN)
  maps = rng.normal(size=(B, T, H, W, C)).astype(np.float32)
  policy(tf.constant(maps))
  _randomise_batchnorms(policy, rng)
  x = _encoder(policy.encoder, maps.reshape(B * T, H, W, C))
  h = _gru(policy.gru.cell, x.reshape(B, T, HIDDEN))
  want = _sigmoid(h @ policy.out.kernel.numpy() + policy.out.bias.numpy())
  got = policy(tf.constant(maps), training=False).numpy()
  assert got.shape == (B, T, 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert np.all((got > 0) & (got < 1))
  state = policy.initial_state(B)
  for t in range(T):
    pos, state = policy.step(tf.constant(maps[:, t]), state)
    np.testing.assert_allclose(pos.numpy(), want[:, t], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.numpy(), h[:, t], rtol=1e-4, atol=1e-5)


def test_video_policy_stacks_frames_on_channels_by_hand():
  rng = np.random.default_rng(1)
  policy = video_position_policy.VideoPositionPolicy(CONV, (7, HIDDEN))
  maps = rng.normal(size=(B, T, H, W, C)).astype(np.float32)
  policy(tf.constant(maps))
  _randomise_batchnorms(policy, rng)
  # Frame t's channels at t * C.
  stacked = maps.transpose(0, 2, 3, 1, 4).reshape(B, H, W, T * C)
  want = _sigmoid(_encoder(policy.encoder, stacked)
                  @ policy.out.kernel.numpy() + policy.out.bias.numpy())
  got = policy(tf.constant(maps), training=False).numpy()
  assert got.shape == (B, 1, 2)
  np.testing.assert_allclose(got[:, 0], want, rtol=1e-4, atol=1e-5)


def test_policies_stop_the_gradient_of_their_glance_maps():
  maps = tf.Variable(tf.random.stateless_normal([B, T, H, W, C], [3, 3]))
  for policy in (
      recurrent_position_policy.RecurrentPositionPolicy(CONV, HIDDEN),
      video_position_policy.VideoPositionPolicy(CONV, (HIDDEN,))):
    with tf.GradientTape(persistent=True) as tape:
      out = tf.reduce_sum(policy(maps, training=True))
    assert tape.gradient(out, maps) is None
    assert all(g is not None
               for g in tape.gradient(out, policy.trainable_variables))

"""AdaFocusV2's model (docs/METHOD.md V2-2 to V2-4, V2-6) against hand values.

Patches at continuous positions, the gradient paths (the policy learns
through the crop, never trains the glance net), the FrameExit classifier,
the coarse-to-fine frame order and both branches' training loss, for the
one-stream V2 model and V2-TSM.
"""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.families import registry
from adafocus_tf.families.v2 import loss as v2_loss
from adafocus_tf.families.v2_tsm import loss as v2_tsm_loss
from adafocus_tf.inference import loading
from adafocus_tf.models import factory
from adafocus_tf.models import frame_exit
from adafocus_tf.models import frame_order
from adafocus_tf.models import patches
from adafocus_tf.policy import patch_choice

S, P = 12, 5  # frame side, patch side


def _ramp(channels=1):
  """[1, 1, S, S, C]: value 10 y + x (+ 100 c) at row y, column x."""
  y, x = np.mgrid[:S, :S].astype(np.float32)
  img = np.stack([10 * y + x + 100 * c for c in range(channels)], -1)
  return img[None, None]


def _bilinear(img, y, x):
  """img [H, W] sampled at real (y, x) by hand: the 4 neighbours' blend."""
  y0, x0 = int(np.floor(y)), int(np.floor(x))
  y1, x1 = min(y0 + 1, img.shape[0] - 1), min(x0 + 1, img.shape[1] - 1)
  dy, dx = y - y0, x - x0
  return ((1 - dy) * (1 - dx) * img[y0, x0] + (1 - dy) * dx * img[y0, x1]
          + dy * (1 - dx) * img[y1, x0] + dy * dx * img[y1, x1])


@pytest.mark.parametrize("offset", [(2.25, 3.5), (0.0, 6.75), (6.9, 0.1),
                                    (3.0, 4.0)])
def test_patch_is_the_frame_translated_by_the_real_offset(offset):
  # docs/METHOD.md V2-2: output pixel (i, j) samples frame position
  # (y1 + i, x1 + j): a pure sub-pixel translation, no scaling.
  ramp = _ramp(channels=2)
  got = patches.extract_patches(tf.constant(ramp),
                                tf.constant([[offset]], tf.float32), P)
  got = got.numpy()[0]
  y1, x1 = offset
  i, j = np.mgrid[:P, :P].astype(np.float32)
  # A linear ramp is its own bilinear interpolant: exact values.
  np.testing.assert_allclose(got[..., 0], 10 * (y1 + i) + (x1 + j), atol=2e-3)
  np.testing.assert_allclose(got[..., 1], 100 + 10 * (y1 + i) + (x1 + j),
                             atol=2e-3)
  # A curved image: each pixel the blend of its 4 neighbours by hand.
  curved = np.random.default_rng(0).normal(size=(S, S)).astype(np.float32)
  got = patches.extract_patches(tf.constant(curved[None, None, :, :, None]),
                                tf.constant([[offset]], tf.float32), P)
  want = np.array([[_bilinear(curved, y1 + a, x1 + b) for b in range(P)]
                   for a in range(P)])
  np.testing.assert_allclose(got.numpy()[0, ..., 0], want, atol=1e-4)


def test_integer_and_border_positions_are_plain_slices():
  frames = tf.random.stateless_normal([2, 3, S, S, 3], [1, 2])
  pos = tf.constant([[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                     [[3 / 7, 5 / 7], [1.0, 0.0], [2 / 7, 2 / 7]]])
  offsets = patches.continuous_offsets(pos, S, P)
  # a (S - P) with S - P = 7: every position above lands on a whole pixel.
  np.testing.assert_allclose(offsets.numpy(),
                             np.round(offsets.numpy()), atol=1e-5)
  got = patches.extract_patches(frames, offsets, P).numpy().reshape(
      2, 3, P, P, 3)
  off = np.round(offsets.numpy()).astype(int)
  for b in range(2):
    for t in range(3):
      y, x = off[b, t]
      np.testing.assert_allclose(got[b, t],
                                 frames.numpy()[b, t, y:y + P, x:x + P],
                                 atol=1e-5)


def test_patch_gradient_wrt_position_is_range_times_image_slope():
  # d patch / d a = (S - P) x the image's slope along that axis
  # (docs/METHOD.md V2-2): on the ramp, slope 10 down, 1 across.
  pos = tf.Variable([[[0.3, 0.6]]])
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(patches.extract_patches(
        tf.constant(_ramp()), patches.continuous_offsets(pos, S, P), P))
  grad = tape.gradient(total, pos).numpy()[0, 0]
  np.testing.assert_allclose(grad, [(S - P) * 10 * P * P, (S - P) * P * P],
                             rtol=1e-3)


@pytest.fixture(scope="module")
def v2():
  cfg = helpers.tiny_v2_config(**{"data__num_frames": 5})
  model = factory.build_model(cfg)
  model.build_all()
  return cfg, model


def _clip(cfg, b=2, seed=3):
  s = cfg.data.frame_size
  return tf.random.stateless_normal([b, cfg.data.num_frames, s, s, 3],
                                    [seed, 0])


def _dense(grad, variable):
  """A gradient as numpy; zeros where none reached ``variable``."""
  return np.zeros(variable.shape) if grad is None else grad.numpy()


def test_policy_learns_through_the_crop_and_never_trains_the_glance(v2):
  cfg, model = v2
  frames = _clip(cfg)
  labels = tf.constant([1, 3])
  seeds = tf.constant([[1, 2], [3, 4]], tf.int64)

  def focus_loss(cut_policy_path):
    maps, pooled = model.glance_features(frames, training=True)
    offsets = model.policy_offsets(maps, training=True)
    if cut_policy_path:
      offsets = tf.stop_gradient(offsets)
    out = model.head_outputs(pooled, frames, offsets, seeds, training=True)
    ce = lambda l: tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(
            tf.repeat(labels[:, None], cfg.data.num_frames, 1), l,
            from_logits=True))
    return ce(out.focus_logits), ce(out.logits)

  watched = (model.glance.trainable_variables
             + model.policy.trainable_variables)
  for cut in (False, True):
    with tf.GradientTape(persistent=True) as tape:
      focus_ce, step_ce = focus_loss(cut)
    focus_g = tape.gradient(focus_ce, watched)
    step_g = tape.gradient(step_ce, watched)
    glance_n = len(model.glance.trainable_variables)
    # The focus head sees the glance only through the policy, whose input
    # is stopped: no gradient reaches the glance either way.
    assert all(g is None or not np.any(g.numpy()) for g in focus_g[:glance_n])
    policy_norm = sum(float(tf.norm(g)) for g in focus_g[glance_n:]
                      if g is not None)
    if cut:
      assert policy_norm == 0.0
      step_cut = [_dense(g, v) for g, v in zip(step_g, watched[:glance_n])]
    else:
      assert policy_norm > 0.0, "the crop must pass gradient to the policy"
      step_open = [_dense(g, v) for g, v in zip(step_g, watched[:glance_n])]
  # The step loss reaches the glance through the classifier's fused input;
  # opening the policy path adds nothing to it.
  assert any(np.any(g) for g in step_open)
  for a, b in zip(step_open, step_cut):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_v2_tsm_policy_path_reaches_the_policy_not_the_glance():
  cfg = helpers.tiny_v2_tsm_config()
  model = factory.build_model(cfg)
  model.build_all()
  s = cfg.data.frame_size
  glance_frames = tf.random.stateless_normal(
      [2, cfg.data.glance_frames, s, s, 3], [5, 0])
  focus_frames = tf.random.stateless_normal(
      [2, cfg.data.focus_frames, s, s, 3], [6, 0])
  labels = tf.constant([0, 2])
  watched = (model.glance.trainable_variables
             + model.glance_aux_head.trainable_variables
             + model.policy.trainable_variables)
  n_glance = len(watched) - len(model.policy.trainable_variables)
  with tf.GradientTape() as tape:
    maps, pooled = model.glance_features(glance_frames, training=True)
    del pooled
    _, focus_aux = model.focus_means(
        focus_frames, model.policy_offsets(maps, training=True),
        tf.constant([[1, 2], [3, 4]], tf.int64), training=True)
    loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        labels, focus_aux, from_logits=True))
  grads = tape.gradient(loss, watched)
  assert all(g is None or not np.any(g.numpy()) for g in grads[:n_glance])
  assert sum(float(tf.norm(g)) for g in grads[n_glance:]) > 0.0


# -- the FrameExit classifier ------------------------------------------------
def test_frame_exit_running_max_and_step_heads_by_hand():
  b, t, d, h, c = 3, 4, 6, 5, 7
  clf = frame_exit.FrameExitClassifier(c, h, t, dropout=0.5)
  x = tf.random.stateless_normal([b, t, d], [7, 7])
  clf(x)
  rng = np.random.default_rng(1)
  # Non-trivial batch-norm statistics, so inference mode is checked too.
  bn = clf.mlp_bn
  bn.gamma.assign(rng.uniform(0.5, 1.5, h))
  bn.beta.assign(rng.normal(size=h))
  bn.moving_mean.assign(rng.normal(size=h))
  bn.moving_variance.assign(rng.uniform(0.5, 2.0, h))
  w, bias = (v.numpy() for v in clf.mlp.weights)
  z = x.numpy() @ w + bias
  z = (z - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy()
                                             + 1e-5)
  z = np.maximum(z * bn.gamma.numpy() + bn.beta.numpy(), 0.0)
  running = np.maximum.accumulate(z, axis=1)
  want = np.stack([running[:, k] @ clf.heads[k].kernel.numpy()
                   + clf.heads[k].bias.numpy() for k in range(t)], 1)
  got = clf(x, training=False).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # Each step has its own head: the same running max through another head
  # gives other logits.
  assert not np.allclose(want[:, 1], running[:, 1] @ clf.heads[0].kernel.numpy()
                         + clf.heads[0].bias.numpy())
  # Stepping frame by frame gives the same logits.
  state = clf.initial_state(b)
  for k in range(t):
    logits, state = clf.step(x[:, k], state, k)
    np.testing.assert_allclose(logits.numpy(), want[:, k], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(state.numpy(), running[:, k], rtol=1e-4,
                               atol=1e-5)
  # The loss: cross-entropy of every step, averaged over steps.
  labels = np.array([0, 3, 6])
  targets = tf.one_hot(labels, c)
  logp = want - np.log(np.exp(want).sum(-1, keepdims=True))
  np.testing.assert_allclose(clf.loss(tf.constant(want), targets).numpy(),
                             -logp[np.arange(b), :, labels].mean(1),
                             rtol=1e-5)


# -- the frame order ---------------------------------------------------------
def test_official_order_for_16_frames_and_a_permutation_for_every_t():
  assert frame_order.coarse_to_fine(16) == (7, 0, 15, 3, 11, 1, 5, 9, 13, 2,
                                            4, 6, 8, 10, 12, 14)
  for t in range(1, 41):
    order = frame_order.frame_order("coarse_to_fine", t)
    assert sorted(order.tolist()) == list(range(t)), t
    assert order[0] == (t - 1) // 2 and set(order[:3]) == {0, (t - 1) // 2,
                                                            t - 1}
    np.testing.assert_array_equal(order[frame_order.inverse(order)],
                                  np.arange(t))
  np.testing.assert_array_equal(frame_order.frame_order("chronological", 5),
                                np.arange(5))
  with pytest.raises(ValueError, match="unknown frame order 'random'"):
    frame_order.frame_order("random", 4)


def test_model_reads_coarse_to_fine_and_returns_chronological_offsets(v2):
  cfg, model = v2
  order = frame_order.coarse_to_fine(cfg.data.num_frames)
  assert order != tuple(range(cfg.data.num_frames))
  chrono_cfg = helpers.tiny_v2_config(**{"data__num_frames": 5,
                                         "model__frame_order":
                                         "chronological"})
  chrono = factory.build_model(chrono_cfg)
  chrono.build_all()
  chrono.set_weights(model.get_weights())
  frames = _clip(cfg, seed=9)
  permuted = tf.gather(frames, order, axis=1)  # frames in reading order
  maps, pooled = model.glance_features(frames)
  offsets = model.policy_offsets(maps)
  c_maps, c_pooled = chrono.glance_features(permuted)
  c_offsets = chrono.policy_offsets(c_maps)
  # Offsets come back indexed by chronological frame: frame order[s] got
  # the patch the chronological model gave its input s.
  np.testing.assert_allclose(tf.gather(offsets, order, axis=1).numpy(),
                             c_offsets.numpy(), atol=1e-5)
  assert not np.allclose(offsets.numpy(), c_offsets.numpy(), atol=1e-3)
  # Per-step logits are in reading order: identical.
  np.testing.assert_allclose(
      model.head_logits(pooled, frames, offsets).numpy(),
      chrono.head_logits(c_pooled, permuted, c_offsets).numpy(), atol=1e-5)


# -- the training loss, both branches, by hand -------------------------------
def _ce(logits, labels):
  """Cross-entropy [B, ...] of logits [B, ..., C] by numpy."""
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -np.take_along_axis(
      logp, np.broadcast_to(labels.reshape((-1,) + (1,) * (logits.ndim - 1)),
                            logits.shape[:-1] + (1,)), -1)[..., 0]


def _batch(cfg, b=2):
  s = cfg.data.frame_size
  labels = np.array([1, 2])[:b]
  seeds = tf.constant([[11, 0], [12, 0]], tf.int64)[:b]
  if "glance_frames" in registry.of(cfg).frame_streams(cfg):
    return {"glance_frames": tf.random.stateless_normal(
        [b, cfg.data.glance_frames, s, s, 3], [1, 1]),
            "focus_frames": tf.random.stateless_normal(
                [b, cfg.data.focus_frames, s, s, 3], [2, 2]),
            "seed": seeds, "label": tf.constant(labels)}, labels
  return {"frames": _clip(cfg, b, seed=4), "seed": seeds,
          "label": tf.constant(labels)}, labels


def test_v2_loss_is_both_branches_mean_by_hand():
  # No dropout: every term is then a function of the weights, the clips and
  # the random branch's positions alone.
  cfg = helpers.tiny_v2_config(model__dropout=0.0, model__head_dropout=0.0)
  model = factory.build_model(cfg)
  model.build_all()
  rec = loading.build(cfg, model)
  batch, labels = _batch(cfg)
  targets = tf.one_hot(labels, cfg.data.num_classes)
  out = v2_loss.end_to_end_loss(rec, batch, targets)
  loss, probs = out.total, out.probs
  assert set(out.terms) == {"glance", "policy_steps", "policy_focus",
                            "random_steps", "random_focus"}

  t, s = cfg.data.num_frames, cfg.data.frame_size
  span = s - cfg.model.patch_size
  maps, pooled = model.glance_features(batch["frames"], training=True)
  # The policy's positions come per reading step k, i.e. for frame
  # order[k]; offsets are a (S - P) indexed by chronological frame.
  policy_offsets = np.empty([2, t, 2], np.float32)
  policy_offsets[:, model.order] = model.policy(maps, training=True) * span
  # Random: one uniform draw per video, frame and axis.
  random_offsets = np.stack([
      tf.random.stateless_uniform([t, 2], seed).numpy()
      for seed in patch_choice.random_patch_seeds(batch["seed"])]) * span
  branches = []
  for offsets in (policy_offsets, random_offsets):
    crops = patches.extract_patches(batch["frames"], tf.constant(offsets),
                                    cfg.model.patch_size)
    focus = tf.reshape(model.focus(crops, training=True), [2, t, -1])
    focus = tf.gather(focus, model.order, axis=1)  # reading order
    steps = model.classifier(tf.concat([pooled, focus], -1), training=True)
    branches.append(_ce(steps, labels).mean(1)
                    + _ce(model.glance.logits(pooled), labels).mean(1)
                    + _ce(model.focus.logits(focus), labels).mean(1))
    if len(branches) == 1:
      want_probs = tf.nn.softmax(steps[:, -1]).numpy()
  np.testing.assert_allclose(loss.numpy(), (branches[0] + branches[1]) / 2,
                             rtol=1e-4)
  np.testing.assert_allclose(probs.numpy(), want_probs, atol=1e-5)
  assert not np.allclose(branches[0], branches[1], rtol=1e-3)


def test_v2_tsm_loss_is_both_branches_mean_by_hand():
  cfg = helpers.tiny_v2_tsm_config(model__head_dropout=0.0)
  model = factory.build_model(cfg)
  model.build_all()
  rec = loading.build(cfg, model)
  batch, labels = _batch(cfg)
  out = v2_tsm_loss.end_to_end_loss(
      rec, batch, tf.one_hot(labels, cfg.data.num_classes))
  loss, probs = out.total, out.probs

  s, p = cfg.data.frame_size, cfg.model.patch_size
  maps, pooled = model.glance_features(batch["glance_frames"], training=True)
  policy_pos = model.policy(maps, training=True).numpy()  # [B, 1, 2]
  random_pos = np.stack([tf.random.stateless_uniform([1, 2], seed).numpy()
                         for seed in
                         patch_choice.random_patch_seeds(batch["seed"])])
  branches = []
  for pos in (policy_pos, random_pos):
    tf_ = cfg.data.focus_frames
    offsets = np.repeat(pos * (s - p), tf_, axis=1)  # one box, every frame
    crops = patches.extract_patches(batch["focus_frames"],
                                    tf.constant(offsets, tf.float32), p)
    f = tf.reshape(model.focus(crops, training=True), [2, tf_, -1])
    g_head = model.glance.head(pooled).numpy().mean(1)
    f_head = model.focus.head(f).numpy().mean(1)
    g_aux = model.glance_aux_head(pooled).numpy().mean(1)
    f_aux = model.focus_aux_head(f).numpy().mean(1)
    branches.append(_ce(g_head + f_head, labels) + _ce(g_aux, labels)
                    + _ce(f_aux, labels))
    if len(branches) == 1:
      want_probs = tf.nn.softmax(g_head + f_head).numpy()
  np.testing.assert_allclose(loss.numpy(), (branches[0] + branches[1]) / 2,
                             rtol=1e-4)
  np.testing.assert_allclose(probs.numpy(), want_probs, atol=1e-5)

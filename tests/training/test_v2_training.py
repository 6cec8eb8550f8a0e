"""AdaFocusV2's end-to-end stage: its optimiser groups, gradient clipping and
a mixed-precision run (docs/METHOD.md V2-5)."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.families.v2 import loss as v2_loss
from adafocus_tf.families.v2_tsm import loss as v2_tsm_loss
from adafocus_tf.inference import loading
from adafocus_tf.models import factory
from adafocus_tf.training import optim

# Steps of the mixed-precision test.
STEPS = 4


def _sgd_step(clip_norm, weight_decay=0.0):
  a = tf.Variable([1.0, 1.0])
  b = tf.Variable([2.0, 2.0])
  opt = optim.GroupSGD({"a": ([a], 1.0), "b": ([b], 0.5)}, momentum=0.0,
                       weight_decay=weight_decay, clip_norm=clip_norm)
  # Global norm of the two gradients: sqrt(3^2 + 4^2) = 5.
  opt.apply([tf.constant([3.0, 0.0]), tf.constant([0.0, 4.0])])
  return a.numpy(), b.numpy()


def test_clipping_scales_the_global_norm_before_rates_and_decay():
  # Unclipped: w - rate x g.
  a, b = _sgd_step(0.0)
  np.testing.assert_allclose(a, [1.0 - 3.0, 1.0])
  np.testing.assert_allclose(b, [2.0, 2.0 - 0.5 * 4.0])
  # Clipped to norm 1: every gradient x 1/5, then each group's rate.
  a, b = _sgd_step(1.0)
  np.testing.assert_allclose(a, [1.0 - 0.6, 1.0], rtol=1e-6)
  np.testing.assert_allclose(b, [2.0, 2.0 - 0.5 * 0.8], rtol=1e-6)
  # A norm under the limit is left alone.
  a, _ = _sgd_step(10.0)
  np.testing.assert_allclose(a, [1.0 - 3.0, 1.0])
  # Weight decay is added after clipping (PyTorch's clip_grad_norm_ acts on
  # the gradients before SGD's step adds the decay).
  a, b = _sgd_step(1.0, weight_decay=0.1)
  np.testing.assert_allclose(a, [1.0 - (0.6 + 0.1), 1.0 - 0.1], rtol=1e-6)
  np.testing.assert_allclose(b, [2.0 - 0.5 * 0.2, 2.0 - 0.5 * (0.8 + 0.2)],
                             rtol=1e-6)


@pytest.mark.parametrize("tsm", [False, True])
def test_v2_groups_hold_every_trainable_variable_once_at_its_rate(tsm):
  cfg = helpers.tiny_v2_tsm_config() if tsm else helpers.tiny_v2_config()
  model = factory.build_model(cfg)
  model.build_all()
  loss_lib = v2_tsm_loss if tsm else v2_loss
  groups = loss_lib.variable_groups(model, cfg.stage1)
  s = cfg.stage1
  want = {"policy": s.policy_lr, "glance": s.glance_lr,
          "focus": s.backbone_lr}
  if not tsm:
    want["classifier"] = s.classifier_lr
  assert {k: lr for k, (_, lr) in groups.items()} == want
  grouped = [v.ref() for vs, _ in groups.values() for v in vs]
  assert len(grouped) == len(set(grouped))
  assert set(grouped) == {v.ref() for v in model.trainable_variables}


def test_mixed_float16_v2_step_has_a_finite_loss_and_trains():
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    cfg = helpers.tiny_v2_config(mixed_precision="mixed_float16")
    model = factory.build_model(cfg)
    model.build_all()
    assert model.focus.compute_dtype == "float16"
    rec = loading.build(cfg, model)
    opt = optim.GroupSGD(v2_loss.variable_groups(model, cfg.stage1),
                         cfg.stage1.momentum, cfg.stage1.weight_decay,
                         loss_scale=True)
    before = [v.numpy() for v in opt.variables_to_train]
    s = cfg.data.frame_size
    batch = {"frames": tf.random.stateless_normal(
        [4, cfg.data.num_frames, s, s, 3], [1, 2]),
             "seed": tf.constant([[i, 0] for i in range(4)], tf.int64)}
    targets = tf.one_hot([0, 1, 2, 3], cfg.data.num_classes)
    # Dynamic loss scaling skips steps whose scaled float16 gradients
    # overflow (halving the scale): a few steps must move every group.
    for _ in range(STEPS):
      with tf.GradientTape() as tape:
        out = v2_loss.end_to_end_loss(rec, batch, targets)
        loss, probs = tf.reduce_mean(out.total), out.probs
        scaled = opt.scale_loss(loss)
      opt.apply(tape.gradient(scaled, opt.variables_to_train))
      assert np.isfinite(loss.numpy()) and loss.dtype == tf.float32
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
  np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-3)
  after = [v.numpy() for v in opt.variables_to_train]
  assert all(np.all(np.isfinite(a)) for a in after)
  for name, (variables, _) in v2_loss.variable_groups(model, cfg.stage1).items():
    changed = [not np.array_equal(before[i], after[i])
               for i, v in enumerate(opt.variables_to_train)
               if any(v is w for w in variables)]
    assert any(changed), name

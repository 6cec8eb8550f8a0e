"""GroupSGD against PyTorch's SGD update, across changes of rate.

The official AdaFocus code trains with ``torch.optim.SGD`` (momentum,
weight decay, one rate per parameter group set once per epoch,
LeapLabTHU/AdaFocusV2 ``main_v2.py`` ``adjust_learning_rate``). Its update,
written out here in numpy: b = mu b + (g + wd w); w -= lr b.
"""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

from adafocus_tf.training import optim


def _torch_sgd(w, grads_by_step, rates, momentum, weight_decay):
  """PyTorch's SGD: the weights after each step of ``grads_by_step``."""
  w, buf, out = np.array(w, np.float64), None, []
  for g, lr in zip(grads_by_step, rates):
    d = g + weight_decay * w
    buf = d if buf is None else momentum * buf + d
    w = w - lr * buf
    out.append(w.copy())
  return out


def test_updates_equal_pytorch_sgd_across_a_change_of_rate():
  rng = np.random.default_rng(0)
  start = rng.normal(size=5)
  grads = [rng.normal(size=5) for _ in range(6)]
  epochs, steps_per_epoch = 4, 2
  epoch_of = [i // steps_per_epoch for i in range(len(grads))]
  for base, ratio in ((0.1, 1.0), (0.1, 0.05)):
    var = tf.Variable(start, dtype=tf.float64)
    other = tf.Variable([0.0], dtype=tf.float64)
    opt = optim.GroupSGD({"big": ([other], base), "w": ([var], base * ratio)},
                         momentum=0.9, weight_decay=1e-2)
    rates = [optim.cosine_lr(base * ratio, e, epochs) for e in epoch_of]
    want = _torch_sgd(start, grads, rates, 0.9, 1e-2)
    for i, g in enumerate(grads):
      if i % steps_per_epoch == 0:
        opt.set_epoch(epoch_of[i], epochs)
      opt.apply([tf.zeros([1], tf.float64), tf.constant(g)])
      np.testing.assert_allclose(var.numpy(), want[i], rtol=1e-6,
                                 err_msg=f"step {i}")


def test_without_the_rescaling_a_new_rate_would_differ():
  # What set_epoch corrects: Keras' velocity holds the old rate.
  rng = np.random.default_rng(1)
  start, grads = rng.normal(size=3), [rng.normal(size=3) for _ in range(2)]
  var = tf.Variable(start, dtype=tf.float64)
  keras = tf.keras.optimizers.SGD(0.1, momentum=0.9)
  keras.apply_gradients([(tf.constant(grads[0]), var)])
  keras.learning_rate.assign(0.05)
  keras.apply_gradients([(tf.constant(grads[1]), var)])
  want = _torch_sgd(start, grads, [0.1, 0.05], 0.9, 0.0)[-1]
  assert np.max(np.abs(var.numpy() - want)) > 1e-3


def test_group_norms_are_each_groups_gradient_norm():
  a, b, c = (tf.Variable(tf.zeros([2])) for _ in range(3))
  opt = optim.GroupSGD({"x": ([a, b], 0.1), "y": ([c], 0.01)}, momentum=0.9,
                       weight_decay=0.0)
  norms = opt.group_norms([tf.constant([3.0, 0.0]), None,
                           tf.constant([0.0, 4.0])])
  assert float(norms["x"]) == pytest.approx(3.0)
  assert float(norms["y"]) == pytest.approx(4.0)

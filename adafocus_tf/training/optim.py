"""SGD with per-group learning rates, cosine schedule and weight decay."""
import math
from typing import Dict

import tensorflow as tf


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
  """lr = 0.5 * lr0 * (1 + cos(pi * e / E)), set once per epoch.

  The schedule of docs/METHOD.md section 2.
  """
  return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


class GroupSGD(tf.Module):
  """SGD with momentum over variable groups that each have a base rate.

  All groups follow the same cosine schedule, so one optimizer runs at the
  largest base rate and each group's gradients are multiplied by
  ``its rate / largest rate``: the updates are those of per-group rates,
  with one momentum state and one float16 loss scale. Weight decay is added
  to the gradients (``g + wd * w``), as PyTorch's SGD does. The update is
  PyTorch's (the official code's) at every step, also across a change of
  rate (``set_epoch``).

  Args:
    groups: dict name -> (list of variables, base learning rate).
    momentum: SGD momentum.
    weight_decay: L2 coefficient added to every gradient.
    loss_scale: dynamic loss scaling (for ``mixed_float16``).
    clip_norm: clip the gradients (summed over replicas, before weight
      decay, as PyTorch's ``clip_grad_norm_`` before ``step``) to this
      global norm; 0: no clipping.
  """

  def __init__(self, groups, momentum: float, weight_decay: float,
               loss_scale: bool = False, clip_norm: float = 0.0):
    super().__init__(name="group_sgd")
    self.weight_decay = weight_decay
    self.clip_norm = clip_norm
    self.base_lr = max(lr for _, lr in groups.values())
    self.group_lr = {k: lr for k, (_, lr) in groups.items()}
    self.group_sizes = {k: len(vs) for k, (vs, _) in groups.items()}
    self.variables_to_train = [v for vs, _ in groups.values() for v in vs]
    self.multipliers = [lr / self.base_lr for vs, lr in groups.values()
                        for _ in vs]
    opt = tf.keras.optimizers.SGD(learning_rate=self.base_lr,
                                  momentum=momentum)
    if loss_scale:
      opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    opt.build(self.variables_to_train)
    self.optimizer = opt
    self.loss_scale = loss_scale

  def set_epoch(self, epoch: int, epochs: int) -> None:
    """Sets the rate of ``epoch`` on a cosine period of ``epochs``.

    PyTorch's SGD keeps its momentum buffer without the rate (b = mu b + g;
    w -= lr b), Keras' with it (v = mu v - lr g; w += v): the same while
    the rate holds, but PyTorch applies a new rate to the whole buffer at
    once, Keras only to the new gradients. Rescaling the velocity by
    new / old rate when the rate changes gives PyTorch's update. (A rate
    of 0, the official schedule's last epoch, stops both alike.)
    """
    new = cosine_lr(self.base_lr, epoch, epochs)
    old = float(self.optimizer.learning_rate.numpy())
    if old > 0 and new != old:
      opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
      for velocity in opt.momentums:
        velocity.assign(velocity * (new / old))
    self.optimizer.learning_rate.assign(new)

  def group_norms(self, grads) -> Dict[str, tf.Tensor]:
    """The global norm of each group's gradients.

    Args:
      grads: gradients ordered as ``variables_to_train`` (None for a
        variable the loss does not reach).
    """
    norms, start = {}, 0
    for name, size in self.group_sizes.items():
      present = [g for g in grads[start:start + size] if g is not None]
      norms[name] = (tf.linalg.global_norm(present) if present
                     else tf.constant(0.0))
      start += size
    return norms

  def learning_rates(self):
    """Current learning rate of each group."""
    scale = float(self.optimizer.learning_rate.numpy()) / self.base_lr
    return {k: lr * scale for k, lr in self.group_lr.items()}

  def scale_loss(self, loss):
    return self.optimizer.get_scaled_loss(loss) if self.loss_scale else loss

  def apply(self, grads):
    """Applies gradients ordered as ``variables_to_train``."""
    if self.loss_scale:
      grads = self.optimizer.get_unscaled_gradients(grads)
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if self.clip_norm:
      # The norm is of the whole batch's gradient: sum the replicas' first.
      present = [i for i, g in enumerate(grads) if g is not None]
      summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  [grads[i] for i in present])
      clipped, _ = tf.clip_by_global_norm(summed, self.clip_norm)
      grads = list(grads)
      for i, g in zip(present, clipped):
        grads[i] = g
      replicas = 1
    # Unless summed above, the optimizer sums the replicas' gradients: each
    # adds its share of the decay so that the sum holds it once.
    decay = self.weight_decay / replicas
    pairs = [((g + decay * tf.cast(v, g.dtype)) * m, v)
             for g, v, m in zip(grads, self.variables_to_train,
                                self.multipliers) if g is not None]
    self.optimizer.apply_gradients(
        pairs, skip_gradients_aggregation=bool(self.clip_norm))

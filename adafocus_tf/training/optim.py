"""SGD with per-group learning rates, cosine schedule and weight decay."""
import math

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
  to the gradients (``g + wd * w``), as PyTorch's SGD does.

  Args:
    groups: dict name -> (list of variables, base learning rate).
    momentum: SGD momentum.
    weight_decay: L2 coefficient added to every gradient.
    loss_scale: dynamic loss scaling (for ``mixed_float16``).
  """

  def __init__(self, groups, momentum: float, weight_decay: float,
               loss_scale: bool = False):
    super().__init__(name="group_sgd")
    self.weight_decay = weight_decay
    self.base_lr = max(lr for _, lr in groups.values())
    self.group_lr = {k: lr for k, (_, lr) in groups.items()}
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
    self.optimizer.learning_rate.assign(cosine_lr(self.base_lr, epoch, epochs))

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
    # The optimizer sums the replicas' gradients: each adds its share of the
    # decay so that the sum holds it once.
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    decay = self.weight_decay / replicas
    pairs = [((g + decay * tf.cast(v, g.dtype)) * m, v)
             for g, v, m in zip(grads, self.variables_to_train,
                                self.multipliers) if g is not None]
    self.optimizer.apply_gradients(pairs)

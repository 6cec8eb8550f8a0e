"""The supervised stages' shared step: a loss, its gradient, SGD by group.

A ``SupervisedTask`` names its variable groups and builds its loss
(``build_losses``); the step is the same for all: the loss summed over the
replica's videos and divided by the global batch, the gradient, each
group's rate of the cosine schedule (``optim.GroupSGD``), weight decay,
clipping, mixed-precision loss scaling.
"""
from __future__ import annotations

import abc

import tensorflow as tf

from adafocus_tf.models import precision
from adafocus_tf.policy import patch_choice
from adafocus_tf.training import optim
from adafocus_tf.training import stage_inputs
from adafocus_tf.training import step_loss
from adafocus_tf.training.tasks import task


# Prefix of the loss terms' sums among a step's outputs.
_TERM = "term/"

class SupervisedTask(task.Task):
  """A stage trained by SGD on a loss (``Task``'s arguments).

  Attributes (after ``build``):
    model: the family's model.
    recognizer: the family's recognizer around it.
    optimizer: the ``optim.GroupSGD`` of ``variable_groups``.
    term_weights: each loss term's weight (``step_loss.StepLoss.weights``),
      known once the step is traced.
  """

  # What the stage's random patches are drawn as (``one_step`` takes the
  # draws in a batch under this key): top-left pixels.
  random_draw = patch_choice.RANDOM_OFFSETS

  def build(self) -> None:
    self.model = self.family.build_model(self.cfg)
    self.model.build_all()
    self.recognizer = self.build_recognizer()
    scfg = self.section
    self.optimizer = optim.GroupSGD(
        self.variable_groups(), scfg.momentum, scfg.weight_decay,
        loss_scale=precision.needs_loss_scaling(),
        clip_norm=scfg.grad_clip_norm)
    self.term_weights = {}

  def build_recognizer(self):
    """The recognizer the loss runs the model through (no policy)."""
    return self.family.build_recognizer(self.cfg, self.model)

  def checkpoint_objects(self):
    return {"model": self.model, "optimizer": self.optimizer.optimizer}

  @abc.abstractmethod
  def variable_groups(self):
    """dict group name -> (variables, base learning rate); what is frozen
    is absent."""

  @abc.abstractmethod
  def build_losses(self, batch, targets) -> step_loss.StepLoss:
    """The batch's ``StepLoss``: per-video loss, prediction, terms.

    Args:
      batch: this replica's batch.
      targets: [B, C] target distributions.
    """

  def epoch_start(self, epoch: int) -> None:
    scfg = self.section
    self.optimizer.set_epoch(epoch, scfg.schedule_epochs or scfg.epochs)

  def replica_step(self, batch, global_batch: int, with_terms: bool = False):
    """The loss, its gradient, the update (``Task.replica_step``).

    Returns:
      ({"loss": this replica's share of the mean loss, "correct": correct
      videos}, and with ``with_terms`` {"terms": {term: its sum over this
      replica's videos / global_batch}, "norms": {group: gradient norm
      before weight decay and clipping}}).
    """
    targets = stage_inputs.targets_of(batch, self.cfg.data.multi_label)
    with tf.GradientTape() as tape:
      out = self.build_losses(batch, targets)
      # Python values, known once the step is traced.
      self.term_weights = out.weights
      loss = tf.reduce_sum(out.total) / global_batch
      scaled = self.optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, self.optimizer.variables_to_train)
    norms = self.optimizer.group_norms(grads) if with_terms else {}
    self.optimizer.apply(grads)
    correct = tf.reduce_sum(tf.cast(
        tf.argmax(out.probs, -1, output_type=tf.int32) == batch["label"],
        tf.float32))
    details = {}
    if with_terms:
      details = {"terms": {k: tf.reduce_sum(tf.cast(v, tf.float64))
                           / global_batch for k, v in out.terms.items()},
                 "norms": norms}
    # Each term's share too, for TensorBoard and the stage's statistics.
    shares = {_TERM + k: tf.reduce_sum(tf.cast(v, tf.float32)) / global_batch
              for k, v in out.terms.items()}
    return {"loss": loss, "correct": correct, **shares}, details

  def step_outputs(self, sums, global_batch: int):
    out = {"loss": float(sums["loss"]) * global_batch,
           "correct": float(sums["correct"])}
    out.update({k: float(v) * global_batch for k, v in sums.items()
                if k.startswith(_TERM)})
    return out

  def progress_fields(self, sums, videos):
    return {"loss": f"{sums['loss'] / videos:.3f}",
            "acc": f"{sums['correct'] / videos:.3f}"}

  def write_scalars(self, step, out, rate):
    global_batch = self.section.batch_size
    tf.summary.scalar("train/loss", out["loss"] / global_batch, step=step)
    tf.summary.scalar("train/top1", out["correct"] / global_batch, step=step)
    tf.summary.scalar("train/videos_per_s", rate, step=step)
    for k, lr in self.optimizer.learning_rates().items():
      tf.summary.scalar(f"lr/{k}", lr, step=step)
    for k, v in out.items():
      if k.startswith(_TERM):
        # Before the family's weights (``StepLoss.weights``).
        tf.summary.scalar(f"loss/{k[len(_TERM):]}", v / global_batch,
                          step=step)

  def stats(self, result) -> dict:
    return {"step": result.step, "epoch": result.epoch,
            "train_loss": result.sums["loss"] / result.videos,
            "train_top1": 100.0 * result.sums["correct"] / result.videos,
            **{f"train_loss_{k[len(_TERM):]}": v / result.videos
               for k, v in result.sums.items() if k.startswith(_TERM)},
            "videos_per_s": result.videos / max(result.seconds, 1e-9)}

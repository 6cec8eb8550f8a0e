"""Stage 0: each backbone fine-tuned alone on whole frames.

Per-frame logits of the backbone's own linear head, averaged per video;
one cross-entropy term per backbone trained (``stage0.backbones``). With
two frame streams each backbone sees its own stream's frames (a temporal
shift is built for its stream's frame count).
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.training import step_loss
from adafocus_tf.training.tasks import supervised_task

BACKBONES = ("glance", "focus")


def stage0_frames(batch, backbone: str):
  """The whole frames a backbone fine-tunes on: ``frames``, or with two
  streams that backbone's own stream.

  Args:
    batch: pipeline batch.
    backbone: ``glance`` or ``focus``.
  """
  return batch["frames"] if "frames" in batch else batch[f"{backbone}_frames"]


def video_logits(model, backbone: str, frames, training=False, seeds=None,
                 glance_dropout: float = 0.0, batchnorm: bool = True):
  """Stage-0 logits of one backbone on whole frames, averaged over frames.

  Args:
    model: a family's model (its ``glance`` and ``focus`` nets).
    backbone: ``glance`` or ``focus``.
    frames: [B, T, S, S, 3].
    training: batch-norm mode, and dropout on.
    seeds: int [B, 2] per-video seeds (the dropout masks), needed when
      ``training`` with ``glance_dropout``.
    glance_dropout: dropout rate before the glance net's head in training.
    batchnorm: in training, normalise by the batch and update the running
      statistics (``model.train_batchnorm``); off, the running statistics
      normalise, as in inference.

  Returns:
    [B, C] logits.
  """
  shape = tf.shape(frames)
  flat = tf.reshape(frames, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
  bn_training = training and batchnorm
  if backbone == "glance":
    _, pooled = model.glance(flat, training=bn_training)
    if training and glance_dropout:
      per_video = tf.reshape(pooled, [shape[0], shape[1], -1])
      pooled = tf.reshape(classifier_lib.per_video_dropout(
          per_video, glance_dropout, seeds), tf.shape(pooled))
    logits = model.glance.logits(pooled)
  else:
    logits = model.focus.logits(model.focus(flat, training=bn_training))
  return tf.reduce_mean(tf.reshape(logits, [shape[0], shape[1], -1]), axis=1)


class BackboneTask(supervised_task.SupervisedTask):
  """Stage 0 of every built-in family (module doc; ``Task``'s arguments)."""

  def variable_groups(self):
    """Each backbone named by ``stage0.backbones`` (net and head) at
    ``backbone_lr``.

    Raises:
      ValueError: a name that is not ``glance`` or ``focus``, or none.
    """
    scfg = self.section
    names = [n.strip() for n in scfg.backbones.split(",") if n.strip()]
    unknown = set(names) - set(BACKBONES)
    if unknown or not names:
      raise ValueError(f"stage0.backbones={scfg.backbones!r}: name glance "
                       "and/or focus")
    return {n: (getattr(self.model, n).trainable_variables, scfg.backbone_lr)
            for n in names}

  def build_losses(self, batch, targets) -> step_loss.StepLoss:
    # The family's glance head dropout (the official V1 stage 0's
    # torchvision MobileNetV2 head; the other families have none).
    glance_dropout = self.family.stage0_glance_dropout(self.cfg)
    terms, logits = {}, None
    for name in self.optimizer.group_lr:
      logits = video_logits(self.model, name, stage0_frames(batch, name),
                            training=True, seeds=batch["seed"],
                            glance_dropout=glance_dropout,
                            batchnorm=self.cfg.model.train_batchnorm)
      terms[name] = classifier_lib.soft_cross_entropy(logits, targets)
    return step_loss.of_terms(terms, tf.nn.softmax(logits))

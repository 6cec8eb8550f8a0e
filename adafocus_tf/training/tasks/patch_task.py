"""Stages 1 and 3: the focus net and classifier on patches.

  stage 1: random patches; the glance frozen; the focus net and the
           classifier trained (the focus net learns to read patches here);
  stage 3: patches from the stage-2 policy (or the centre without one); the
           classifier trained, and the focus net too with
           ``stage3.train_focus``.

The two-stream models' classifier sums the glance and focus heads' mean
logits: these stages train its focus head, the glance head staying with the
frozen glance net (as the official code does for both models: the glance
logits come from the glancer under ``no_grad``, head included).
"""
from __future__ import annotations

import functools
import logging
from typing import Optional

import tensorflow as tf

from adafocus_tf.data import pipeline
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.models import logit_mean_classifier
from adafocus_tf.policy import greedy
from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import final_weights
from adafocus_tf.training import step_loss
from adafocus_tf.training import summaries
from adafocus_tf.training.tasks import supervised_task

RANDOM = "random"
# Videos drawn with their patches at each epoch's end.
_IMAGE_VIDEOS = 3


class PatchTask(supervised_task.SupervisedTask):
  """A supervised stage on patches (module doc).

  Args:
    cfg: the run's config.
    stage: the stage (1 or 3 in the built-in plans).
    policy_run: the run whose finished stage 2 gives ``policy`` patches
      (default: none, centre patches).
    patch: the patch choice: ``random``, ``policy``, ``centre`` or
      ``oracle``.
    policy_checkpoint: the stage-2 checkpoint whose greedy policy places
      ``policy`` patches (default: ``policy_run``'s; none for a family whose
      model carries its policy). The policy reads this model's glance maps:
      stage 3 starts from stage 2's weights and keeps the glance frozen, so
      they are the maps it was trained on.
  """

  def __init__(self, cfg, stage: int, policy_run: Optional[str] = None,
               patch: str = RANDOM, policy_checkpoint: Optional[str] = None):
    super().__init__(cfg, stage, policy_run)
    if (patch == patch_choice.POLICY and policy_checkpoint is None
        and not self.family.policy_in_model):
      policy_checkpoint = (final_weights.policy_checkpoint(policy_run)
                           if policy_run else None)
      if not policy_checkpoint:
        logging.warning("no trained policy (stage 2) in %s: stage %d uses "
                        "centre patches", policy_run, stage)
        patch = "centre"
    self.patch, self.policy_checkpoint = patch, policy_checkpoint

  def build_recognizer(self):
    policy = greedy.load(self.cfg, self.model.glance.map_shape,
                         self.policy_checkpoint)
    return self.family.build_recognizer(self.cfg, self.model, policy)

  def variable_groups(self):
    """``classifier`` (the two-stream models': the focus head) and, with
    random patches or ``train_focus``, ``focus`` (the focus backbone)."""
    scfg = self.section
    train_focus = self.patch == RANDOM or scfg.train_focus
    clf = self.model.classifier
    if isinstance(clf, logit_mean_classifier.LogitMeanClassifier):
      clf = clf.focus_head
    groups = {"classifier": (clf.trainable_variables, scfg.classifier_lr)}
    if train_focus:
      groups["focus"] = (self.model.focus.backbone.trainable_variables,
                         scfg.backbone_lr)
    return groups

  def build_losses(self, batch, targets) -> step_loss.StepLoss:
    train_focus = (self.cfg.model.train_batchnorm
                   and "focus" in self.optimizer.group_lr)
    logits, _ = self.recognizer.forward(batch, self.patch, training=True,
                                        train_focus=train_focus)
    return step_loss.of_terms(
        {"steps": self.model.classifier.loss(logits, targets)},
        self.model.classifier.step_probs(logits)[:, -1])

  def write_images(self, writer, step, dist_batch, strategy):
    """A few held-out videos with this stage's patches drawn."""
    del dist_batch, strategy
    cfg = self.cfg
    split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
    try:
      with_boxes = self.patch == "oracle" or _has_boxes(split_dir)
      batch = next(iter(pipeline.make_dataset(
          cfg.data, split_dir, training=False, batch_size=_IMAGE_VIDEOS,
          seed=cfg.seed, with_boxes=with_boxes)))
    except (FileNotFoundError, tf.errors.OpError) as e:
      logging.warning("no patch images for TensorBoard: %s", e)
      return
    # Only the policy reads the glance.
    glance = (self.recognizer.glance(batch)
              if self.patch == patch_choice.POLICY else None)
    offsets = self.recognizer.offsets(batch, glance, self.patch)
    summaries.write_batch_patch_images(writer, f"patches/{self.patch}",
                                       batch, offsets, self.recognizer, step,
                                       max_videos=_IMAGE_VIDEOS)


def _has_boxes(split_dir: str) -> bool:
  """Whether the split's records carry object boxes (synthetic data)."""
  first = shards.list_records(split_dir)[0]
  for raw in tf.data.TFRecordDataset(first).take(1):
    example = tf.train.SequenceExample.FromString(raw.numpy())
    return schema.BOXES in example.feature_lists.feature_list
  return False


# Stage 3: the stage-2 policy's patches (centre patches without one).
policy_patches = functools.partial(PatchTask, patch=patch_choice.POLICY)

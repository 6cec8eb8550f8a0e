"""AdaFocusV2's one training stage: every part end to end (METHOD.md V2-4, V2-5).

Stage 1 of a V2 run (after the optional stage-0 backbone fine-tuning)
trains the glance net, the position policy, the focus net and the
classifier together by SGD: the policy learns through the bilinear patch
sampler, so there is no reinforcement learning, critic or stage 3. The
loss is the recognizer's ``end_to_end_loss`` (the policy's patches and
random patches, each with the step, glance and focus cross-entropies).

Everything else is the supervised stages' machinery (``supervised.py``):
the distributed step, checkpoints every ``checkpoint_every`` steps and at
each epoch's end, resuming at the same step with the same data, mixed
precision, TensorBoard scalars and patch pictures.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.policy import patch_choice
from adafocus_tf.training import supervised

# The stage of a V2 run that trains end to end.
END_TO_END_STAGE = 1


def v2_groups(model, scfg):
  """Variable groups and base rates of V2's stage (docs/METHOD.md V2-5).

  Args:
    model: an ``AdaFocusV2`` or ``TwoStreamAdaFocusV2``.
    scfg: the stage's config: ``policy_lr``, ``glance_lr`` (glance net and
      its heads), ``backbone_lr`` (focus net and its heads),
      ``classifier_lr`` (the V2 classifier; V2-TSM has none of its own).

  Returns:
    dict group name -> (variables, base learning rate).
  """
  glance = list(model.glance.trainable_variables)
  focus = list(model.focus.trainable_variables)
  if hasattr(model, "glance_aux_head"):
    glance += model.glance_aux_head.trainable_variables
    focus += model.focus_aux_head.trainable_variables
  groups = {"policy": (model.policy.trainable_variables, scfg.policy_lr),
            "glance": (glance, scfg.glance_lr),
            "focus": (focus, scfg.backbone_lr)}
  if hasattr(model, "classifier"):
    groups["classifier"] = (model.classifier.trainable_variables,
                            scfg.classifier_lr)
  return groups


class EndToEndTrainer(supervised.SupervisedTrainer):
  """Trains a V2 run's stage 1.

  Args:
    cfg: the run's config (``model.variant`` ``v2`` or ``v2_tsm``).
    strategy: a ``tf.distribute`` strategy.
    run: the run directory.
    checkpoint_every: steps between checkpoints (and at each epoch's end).
    log_every: steps between TensorBoard scalar writes.
    progress: show per-epoch progress bars.
  """

  def __init__(self, cfg: ExperimentConfig, strategy: tf.distribute.Strategy,
               run: str, checkpoint_every: int = 50, log_every: int = 10,
               progress: bool = True):
    super().__init__(cfg, END_TO_END_STAGE, strategy, run,
                     patch=patch_choice.POLICY,
                     checkpoint_every=checkpoint_every, log_every=log_every,
                     progress=progress)

  def groups(self):
    return v2_groups(self.model, self.scfg)

  def loss(self, batch, targets):
    return self.recognizer.end_to_end_loss(batch, targets)

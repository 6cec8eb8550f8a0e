"""AdaFocusV2's one training stage: every part end to end (docs/METHOD.md
V2-4, V2-5).

The glance net, the position policy, the focus net and the classifier
train together by SGD: the policy learns through the bilinear patch
sampler, so there is no reinforcement learning, critic or stage 3. The
family gives the loss (the policy's patches and random patches, each with
its cross-entropies) and the variable groups with their rates; the step,
checkpoints, schedule and pictures are the supervised stages'.
"""
from __future__ import annotations

import functools
from typing import Callable

from adafocus_tf.policy import patch_choice
from adafocus_tf.training import step_loss
from adafocus_tf.training.tasks import patch_task


class EndToEndTask(patch_task.PatchTask):
  """A family's end-to-end stage.

  Args:
    cfg: the run's config.
    stage: the stage (1 in the built-in plans).
    policy_run: unused (the model carries its policy).
    loss: (recognizer, batch, targets) -> ``step_loss.StepLoss``.
    groups: (model, stage config) -> {group: (variables, base rate)}.
  """

  # The end-to-end loss's random branch draws positions in [0, 1].
  random_draw = patch_choice.RANDOM_POSITIONS

  def __init__(self, cfg, stage: int, policy_run=None, *,
               loss: Callable, groups: Callable):
    del policy_run  # The model carries its policy.
    super().__init__(cfg, stage, patch=patch_choice.POLICY)
    self._loss, self._groups = loss, groups

  def variable_groups(self):
    return self._groups(self.model, self.section)

  def build_losses(self, batch, targets) -> step_loss.StepLoss:
    return self._loss(self.recognizer, batch, targets)


def end_to_end(loss: Callable, groups: Callable) -> Callable:
  """A stage-plan entry: ``EndToEndTask`` with a family's loss and groups.

  Args:
    loss: see ``EndToEndTask``.
    groups: see ``EndToEndTask``.
  """
  return functools.partial(EndToEndTask, loss=loss, groups=groups)

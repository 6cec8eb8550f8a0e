"""The training stages as tasks (``task.Task``), one class per file.

  task.py             the protocol ``StageTrainer`` drives
  supervised_task.py  a loss, its gradient, SGD by variable group
  backbone_task.py    stage 0: backbones on whole frames
  patch_task.py       stages 1 and 3: random, policy or centre patches
  end_to_end_task.py  AdaFocusV2's stage: a family's loss, end to end
  policy_task.py      stage 2: the patch policy by PPO

A family's stage plan names them: ``BackboneTask``, ``PatchTask``,
``policy_patches`` (stage 3), ``policy(scores_along)`` and
``end_to_end(loss, groups)``.
"""
import functools

from adafocus_tf.policy import patch_choice
from adafocus_tf.training.tasks.backbone_task import BackboneTask
from adafocus_tf.training.tasks.end_to_end_task import end_to_end
from adafocus_tf.training.tasks.end_to_end_task import EndToEndTask
from adafocus_tf.training.tasks.patch_task import PatchTask
from adafocus_tf.training.tasks.policy_task import policy
from adafocus_tf.training.tasks.policy_task import PolicyTask
from adafocus_tf.training.tasks.supervised_task import SupervisedTask
from adafocus_tf.training.tasks.task import Task

# Stage 3: the stage-2 policy's patches (centre patches without one).
policy_patches = functools.partial(PatchTask, patch=patch_choice.POLICY)

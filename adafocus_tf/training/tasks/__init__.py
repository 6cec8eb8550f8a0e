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
import importlib

# name -> the module of this package defining it. Loaded on first use
# (PEP 562): a family names its stages' tasks, but opening a run to
# predict never trains, and the policy task would load tf-agents.
_DEFINED_IN = {
    "BackboneTask": "backbone_task",
    "end_to_end": "end_to_end_task",
    "EndToEndTask": "end_to_end_task",
    "PatchTask": "patch_task",
    "policy": "policy_task",
    "PolicyTask": "policy_task",
    "policy_patches": "patch_task",
    "SupervisedTask": "supervised_task",
    "Task": "task",
}
__all__ = sorted(_DEFINED_IN)


def __getattr__(name):
  if name not in _DEFINED_IN:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"),
                  name)
  globals()[name] = value
  return value

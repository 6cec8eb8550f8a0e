"""What a model family is: the one object that owns everything that differs.

A family (V1 one-stream, the two-stream Something-Something model,
AdaFocusV2, V2-TSM, a user's own) is a subclass of ``ModelFamily``
registered with ``registry.register``. Every tool asks the config's family
(``registry.of(cfg)``) rather than which family it is: the config checks
and presets, the model builder, the recognizer (whole-clip and step-by-step
inference, docs/FAMILIES.md), the stage plan the trainer runs, the exit
criterion, the policy's cost and the official checkpoints it converts.

The defaults below are those of a one-stream family without a patch
policy of its own; a family overrides what differs.
"""
from __future__ import annotations

import abc
from typing import Callable, Dict, Optional, Tuple

from adafocus_tf import config as config_lib
from adafocus_tf.profiling import flops

# What an exit threshold compares with (``inference/early_exit/exit_rule``).
MAX_PROB = "max_prob"
MAX_LOGIT = "max_logit"


class ModelFamily(abc.ABC):
  """One model family, registered under ``name``.

  Class attributes a family sets:
    name: its ``model.variant`` value in configs and runs.
    method: the training method (``adafocus-train --method``) whose presets
      it serves; several families may share one (V1: the one-stream and
      two-stream families, by dataset).
    title: how reports name it (``AdaFocusV2``).
    classifiers: the ``model.classifier`` values it builds.
    unused_fields: dotted config fields it never reads (a source may not
      change them: ``config.check_family_fields``). The fields of the
      stages outside its stage plan are added by ``unused``.
    exit_criterion: what its exit thresholds compare with: ``max_prob``
      (the prediction's top probability) or ``max_logit`` (AdaFocusV2).
    policy_in_model: the model carries its patch policy and trains it with
      itself (AdaFocusV2); otherwise the policy, if any, is a separate
      network of a stage-2 checkpoint.
    fractional_patches: patches sit at sub-pixel offsets (bilinear crops),
      which the whole-model TFLite form has no ops for.
    glance_head_trained: the stage plan trains the glance net's head
      whatever stage 0 does, so the glance-only row is meaningful.
    official_checkpoints: (kind, family) pairs of ``convert.reference``
      that convert into a run of this family.
    sections: the config sections only this family (and its kin) reads
      (``uni``); every other family counts their fields as unused.
  """

  name: str = ""
  method: str = ""
  title: str = ""
  classifiers: Tuple[str, ...] = ()
  unused_fields: Tuple[str, ...] = ()
  exit_criterion: str = MAX_PROB
  policy_in_model: bool = False
  fractional_patches: bool = False
  glance_head_trained: bool = False
  official_checkpoints: Tuple[Tuple[str, str], ...] = ()
  sections: Tuple[str, ...] = ()

  # -- configuration ---------------------------------------------------------
  @abc.abstractmethod
  def presets(self) -> Dict[str, Callable[[], object]]:
    """Dataset preset name -> a function returning a fresh config."""

  def validate(self, cfg) -> None:
    """Checks the fields whose valid values depend on the family.

    ``ExperimentConfig.validate`` runs it after the checks every family
    shares (classifier among ``classifiers``, stages outside the plan at 0
    epochs).

    Raises:
      ValueError: naming the field, its value and what it must be.
    """

  def unused(self) -> Tuple[str, ...]:
    """Every field the family never reads: ``unused_fields`` and the
    fields of the stages outside its plan (their ``epochs`` excepted,
    which ``validate`` holds at 0)."""
    plan = self.stage_plan()
    extra = ()
    for stage in range(config_lib.NUM_STAGES):
      if stage not in plan:
        extra += config_lib.stage_fields(stage, but=("epochs",))
    for section in config_lib.FAMILY_SECTIONS:
      if section not in self.sections:
        extra += config_lib.section_fields(section)
    return tuple(self.unused_fields) + extra

  # -- data ------------------------------------------------------------------
  def frame_streams(self, cfg) -> Dict[str, int]:
    """Network input key -> frames sampled per video (``frames``: T)."""
    return {"frames": cfg.data.num_frames}

  def frames_read(self, cfg) -> Tuple[int, int]:
    """(frames the glance net reads, frames the focus net reads) per video,
    for the cost: each stream's frames, or T."""
    d = cfg.data
    return d.glance_frames or d.num_frames, d.focus_frames or d.num_frames

  def glance_stream(self, cfg) -> str:
    """The input key whose frames the glance net sees."""
    return next(iter(self.frame_streams(cfg)))

  def patch_stream(self, cfg) -> str:
    """The input key whose frames the patches are cropped from."""
    return list(self.frame_streams(cfg))[-1]

  def patch_steps(self, cfg) -> int:
    """K, the patch locations per video: 1 per video, or 1 per frame of
    ``patch_stream``."""
    if cfg.model.patch_per_video:
      return 1
    return self.frame_streams(cfg)[self.patch_stream(cfg)]

  def random_position_steps(self, cfg) -> int:
    """Positions per video of the random branch's draw
    (``patch_choice.RANDOM_POSITIONS``, a training batch's key): one per
    video with one patch per video, else one per patch location, unless
    the family draws them per candidate frame."""
    return 1 if cfg.model.patch_per_video else self.patch_steps(cfg)

  # -- model and inference ---------------------------------------------------
  @abc.abstractmethod
  def build_model(self, cfg):
    """The family's Keras model of ``cfg`` (variables not yet created: its
    ``build_all()`` creates them)."""

  @abc.abstractmethod
  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    """The ``Recognizer`` composing ``model`` (and a separate policy).

    Args:
      cfg: the run's config.
      model: a model of ``build_model(cfg)``, built.
      policy: a stage-2 ``greedy.GreedyPolicy`` or None (ignored by a
        family whose model carries its policy).
      policy_glance: the glance net the policy was trained with when its
        weights differ from the model's, or None.
    """

  # -- training --------------------------------------------------------------
  @abc.abstractmethod
  def stage_plan(self) -> Dict[int, Callable]:
    """Stage number -> the task class that trains it
    (``training.tasks``; called as ``task(cfg, stage, policy_run)``)."""

  def stages_text(self) -> str:
    """The plan's stages for messages: ``0 and 1``, ``0, 1, 2 and 3``."""
    plan = [str(s) for s in sorted(self.stage_plan())]
    return " and ".join([", ".join(plan[:-1]), plan[-1]] if plan[:-1]
                        else plan)

  def stage0_glance_dropout(self, cfg) -> float:
    """Dropout before the glance head when stage 0 fine-tunes the glance
    net on whole frames (0: none)."""
    del cfg
    return 0.0

  # -- cost ------------------------------------------------------------------
  def video_macs(self, cfg) -> Optional[dict]:
    """The whole cost in ``profiling/flops.video_macs``'s form when the
    family counts it itself (nets that read whole clips, which the per-frame
    parts cannot count); None: counted from the parts below.

    Args:
      cfg: the config.
    """
    del cfg
    return None

  def choice_gflops(self, cfg, cost: dict, choice: str) -> float:
    """GFLOPs (G MACs) per video of whole-clip inference with a patch
    choice: ``flops.choice_gflops``, unless the family's glance-only exit
    runs more than the glance net and its head.

    Args:
      cfg: the config.
      cost: ``flops.video_macs(cfg)``.
      choice: ``policy``, a baseline of ``patch_choice.CHOICES`` or
        ``glance_only``.
    """
    del cfg
    return flops.choice_gflops(cost, choice)

  @abc.abstractmethod
  def policy_macs(self, cfg, map_shape) -> int:
    """Multiply-accumulates of one run of the patch policy.

    Args:
      cfg: the config.
      map_shape: (h, w, C) of one glance map.
    """

  def classifier_cost(self, cfg, feature_dim: int, glance_head: int,
                      focus_head: int) -> Tuple[int, int]:
    """(MACs of one run of the classifier, runs per video).

    The default: the glance head's logits on every glance frame and the
    focus head's on every focus frame, averaged once per video (the
    two-stream families' ``logit_mean``).

    Args:
      cfg: the config.
      feature_dim: the glance and focus features' width together.
      glance_head: MACs of the glance head on one frame.
      focus_head: MACs of the focus head on one patch.
    """
    del feature_dim
    d = cfg.data
    return ((d.glance_frames or d.num_frames) * glance_head
            + (d.focus_frames or d.num_frames) * focus_head), 1

  def policy_runs(self, cfg) -> int:
    """Runs of the policy per video: once per video, or once per patch."""
    return self.patch_steps(cfg)

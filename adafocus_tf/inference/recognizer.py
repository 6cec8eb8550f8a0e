"""One object recognises videos: glance, policy, patches, focus, classifier.

Every tool that uses a trained run (evaluation, stage 3's forward, the
results table, prediction on files, the SavedModel signatures, early exit,
inference profiling, benchmarks) goes through a ``Recognizer``; nothing else
composes the pipeline. Each model family (``adafocus_tf/families``) builds
its own implementation (``ModelFamily.build_recognizer``), in its folder.

What every family provides is small (the abstract members below): the
per-step logits of patches, the glance-only prediction, and the prediction
and cost at each exit step of whole-clip inference. Optional abilities are
declared by the class, not discovered by an error:
  * step-by-step inference with explicit state, for early exit
    (``StepwiseRecognizer``, ``stepwise_recognizer.py``);
  * a patch policy: a family whose recognizer places policy patches
    overrides ``policy_offsets``;
  * ``scores_along``, the alternative-patch logits the PPO reward needs
    (the families whose stage plan has ``training.tasks.PolicyTask``).

Inputs are pipeline batches (dicts of normalised frames under the family's
``frame_streams`` keys; ``seed`` for random patches and dropout; ``boxes``
for oracle patches). The glance runs once per batch: its maps feed the
policy and its pooled features the classifier.
"""
from __future__ import annotations

import abc
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.inference.glance_output import Glance
from adafocus_tf.inference.outputs import Outputs
from adafocus_tf.models import adafocus
from adafocus_tf.models import patches
from adafocus_tf.policy import patch_choice

POLICY = patch_choice.POLICY
GLANCE_ONLY = "glance_only"
# The named stages of whole-clip inference (``Recognizer.stages``).
STAGES = ("glance", "policy", "head")


class Recognizer(abc.ABC):
  """A trained model and its patch policy, composed.

  Args:
    cfg: the run's config.
    model: the model (``models.factory.build_model``), variables built.
    policy: the greedy patch policy (``policy.greedy``), or None (no stage
      2: centre patches by default).
    policy_glance: the glance net the policy was trained with, when its
      weights differ from ``model.glance`` (normally None: stages 2 and 3
      keep the glance frozen, so one glance serves both).
  """

  # The width of an offsets row: (y, x), or a family's richer form
  # (Uni-AdaFocus's focus plans: frame, y, x, height, width).
  offset_dims = 2
  # Whether the offsets also choose which frames of the patch stream the
  # focus network reads (``patch_regions`` gives them): Uni-AdaFocus's
  # plans do; the other families' patches are cut from every frame.
  chooses_frames = False
  # What reports call a patch choice's offsets (``choice_label``).
  plan_noun = "patches"
  # Geometric exit ratios q of the family's published accuracy-vs-cost
  # sweep (the early-exit curve's points), or () for budgets evenly spaced
  # between the first exit step's cost and the full cost.
  exit_ratios = ()

  def __init__(self, cfg: ExperimentConfig, model, policy=None,
               policy_glance=None):
    self.cfg, self.model, self.policy = cfg, model, policy
    self.policy_glance = policy_glance
    self.family = registry.of(cfg)

  # -- the frames ---------------------------------------------------------------
  @property
  def input_keys(self) -> Sequence[str]:
    """The batch keys holding frames (the family's ``frame_streams``)."""
    return tuple(self.family.frame_streams(self.cfg))

  @property
  def glance_key(self) -> str:
    """The batch key of the frames the glance network sees."""
    return self.family.glance_stream(self.cfg)

  def glance(self, batch, training=False) -> Glance:
    """Runs the glance network over a batch once (see ``Glance``).

    Args:
      batch: the pipeline batch.
      training: batch-norm mode of the glance backbone.
    """
    frames = batch[self.glance_key]
    maps, pooled = self.model.glance_features(frames, training=training)
    policy_maps = maps if self.policy is None else self._video_policy_maps(
        frames, maps)
    return Glance(maps, pooled, policy_maps)

  def policy_offsets(self, glance: Glance):
    """The policy's greedy offsets [B, K, 2] from the glance.

    A family whose recognizer has a patch policy overrides this.

    Raises:
      ValueError: the family has none.
    """
    del glance
    raise ValueError(f"the {self.family.name} model family has no patch "
                     "policy")

  def patch_pictures(self, batch, offsets):
    """What pictures of the patches show: (frames [B, K', S, S, 3] the
    patches are cut from, patch boxes [B, K', 4] as fractions (ymin, xmin,
    ymax, xmax), object boxes [B, K', 4] or None).

    Args:
      batch: the pipeline batch (``boxes`` drawn when present).
      offsets: ``offsets(batch, ...)``.
    """
    frames = batch[patch_choice.patch_stream(self.cfg)]
    shape = tf.shape(frames)
    offsets = tf.broadcast_to(offsets, tf.stack([shape[0], shape[1], 2]))
    boxes = patches.offsets_to_boxes(offsets, self.cfg.data.frame_size,
                                     self.cfg.model.patch_size)
    return frames, boxes, batch.get("boxes")

  def patch_regions(self, offsets):
    """Where the focus network looks: ``(frames, regions)``.

    The default: P x P patches at the offsets' top-left pixels. A family
    whose offsets are richer (``offset_dims`` > 2) overrides it.

    Args:
      offsets: ``offsets(batch, ...)`` [B, K, offset_dims] (a tensor or an
        array).

    Returns:
      frames: int32 [B, K], the frame of the patch stream
        (``patch_choice.patch_stream``, 0-based) each region is cut from;
        or None: region k is cut from frame k (K = the stream's frames),
        or the one region of a video from every frame (K = 1).
      regions: float32 [B, K, 4], each region's (y, x, height, width) in
        pixels of the network input.
    """
    if self.offset_dims != 2:
      raise NotImplementedError(
          f"{type(self).__name__}'s offsets have {self.offset_dims} columns: "
          "it must say where its regions are (patch_regions)")
    offsets = tf.cast(offsets, tf.float32)
    side = tf.fill(tf.shape(offsets), float(self.cfg.model.patch_size))
    return None, tf.concat([offsets, side], -1)

  def glance_frame_positions(self) -> np.ndarray:
    """int [G]: the frames of the glance stream (``glance_key``) the glance
    network reads at inference, 0-based: every one by default."""
    return np.arange(self.family.frame_streams(self.cfg)[self.glance_key])

  def patch_exit_steps(self) -> Optional[np.ndarray]:
    """int [K]: the exit step at which the focus network reads each
    region of ``patch_regions`` (the first prediction that sees it), or
    None when the family does not say."""
    return None

  def choice_label(self, choice: str) -> str:
    """How reports describe a patch choice (``policy``, a baseline of
    ``patch_choice.CHOICES`` or ``glance_only``)."""
    return {POLICY: "learned patches", "random": "random patches",
            "centre": "centre patches",
            "oracle": "patches on the object box",
            GLANCE_ONLY: "glance network alone"}.get(choice, choice)

  def choice_gflops(self, cost: dict, choice: str) -> float:
    """GFLOPs per video of whole-clip inference with a patch choice.

    Args:
      cost: ``flops.video_macs(cfg)``.
      choice: as ``choice_label``.
    """
    return self.family.choice_gflops(self.cfg, cost, choice)

  # -- what every family provides -------------------------------------------

  @abc.abstractmethod
  def logits(self, batch, glance: Glance, offsets, training=False,
             train_focus=None):
    """Per-step logits [B, S, C] for patches at ``offsets``.

    Args:
      batch: the pipeline batch (frames; ``seed`` when ``training``).
      glance: ``glance(batch)``.
      offsets: [B, K, 2] top-left patch pixels.
      training: dropout on.
      train_focus: focus backbone in training mode; defaults to
        ``training``.
    """

  @abc.abstractmethod
  def glance_probs(self, glance: Glance):
    """Probabilities [B, S, C] of the glance network alone."""

  @property
  @abc.abstractmethod
  def num_exit_steps(self) -> int:
    """E, the steps at which step-by-step inference can stop."""

  @abc.abstractmethod
  def exit_probs(self, outputs: Outputs):
    """[B, E, C]: the prediction at each exit step, from whole-clip outputs.

    Equal to what ``step`` gives at each step.
    """

  def exit_logits(self, outputs):
    """[B, E, C]: the raw logits at each exit step (the ``max_logit``
    criterion's), by default every classifier step's."""
    return outputs.logits

  @abc.abstractmethod
  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    """[E] multiply-accumulates each exit step adds (``flops.video_macs``)."""

  # -- composed here ----------------------------------------------------------
  def step_probs(self, logits):
    """The prediction [B, S, C] after each step from logits [B, S, C]."""
    return self.model.classifier.step_probs(logits)

  def default_choice(self) -> str:
    """``policy`` when the run has one, else ``centre``."""
    return POLICY if self.policy is not None else "centre"

  def offsets(self, batch, glance: Glance, choice: Optional[str] = None):
    """Patch offsets [B, K, 2] of a patch choice.

    Args:
      batch: the pipeline batch.
      glance: ``glance(batch)`` (the policy reads its maps).
      choice: ``policy`` or one of ``patch_choice.CHOICES``; default
        ``default_choice()``.

    Raises:
      ValueError: ``policy`` without a policy, or a choice the batch cannot
        make (oracle without boxes).
    """
    choice = choice or self.default_choice()
    if choice == POLICY:
      if self.policy is None:
        raise ValueError("policy patches need a trained policy (stage 2)")
      return self.policy_offsets(glance)
    return patch_choice.choose_offsets(choice, batch, self.cfg)

  def forward(self, batch, choice: Optional[str] = None, training=False,
              train_glance=False, train_focus=None):
    """Logits and offsets of a batch: glance once, patches, focus, classifier.

    The form the training stages use (stage 1: random patches; stage 3: the
    policy's).

    Args:
      batch: the pipeline batch.
      choice: patch choice (``offsets``).
      training: dropout on.
      train_glance: glance backbone in training mode (batch norm).
      train_focus: focus backbone in training mode; defaults to
        ``training``.

    Returns:
      (per-step logits [B, S, C], offsets [B, K, 2]).
    """
    g = self.glance(batch, training=train_glance)
    offsets = self.offsets(batch, g, choice)
    return self.logits(batch, g, offsets, training=training,
                       train_focus=train_focus), offsets

  def stages(self, choice: Optional[str] = None):
    """Whole-clip inference as named stages, in the order they run.

    ``__call__`` runs them one after the other; the inference profiler
    (``inference_parts.inference_parts``) times each on its own. A stage maps a
    dict (the batch, and what earlier stages added) to that dict with its
    results added: ``glance`` adds ``glance`` (a ``Glance``), ``policy``
    adds ``offsets`` (see ``offsets``), ``head`` adds per-step ``logits``
    and ``probs`` (patches cropped, focus network, classifier).

    Args:
      choice: patch choice (``offsets``); not ``glance_only``.

    Returns:
      ((name, function), ...), the names of ``STAGES``.
    """
    def glance(x):
      return {**x, "glance": self.glance(x)}

    def policy(x):
      return {**x, "offsets": self.offsets(x, x["glance"], choice)}

    def head(x):
      logits = self.logits(x, x["glance"], x["offsets"])
      probs = tf.cast(self.step_probs(logits), tf.float32)
      return {**x, "logits": logits, "probs": probs}

    return (("glance", glance), ("policy", policy), ("head", head))

  def __call__(self, batch, choice: Optional[str] = None,
               glance: Optional[Glance] = None) -> Outputs:
    """Whole-clip inference (see ``Outputs``).

    Args:
      batch: the pipeline batch.
      choice: patch choice; ``glance_only`` gives zero offsets and the
        glance network's probabilities as the prediction.
      glance: the batch's ``glance(batch)`` computed elsewhere (e.g. by the
        glance network converted to TFLite, ``Glance.from_outputs``), which
        the ``glance`` stage then does not recompute; None runs it here.
    """
    if choice == GLANCE_ONLY:
      g = self.glance(batch) if glance is None else glance
      glance_probs = self.glance_probs(g)
      b = tf.shape(g.pooled)[0]
      offsets = tf.zeros([b, patch_choice.patch_steps(self.cfg),
                          self.offset_dims], tf.int32)
      return Outputs(tf.math.log(glance_probs + 1e-12), glance_probs,
                     offsets, glance_probs)
    x = batch if glance is None else {**batch, "glance": glance}
    for name, stage in self.stages(choice):
      if name != "glance" or glance is None:
        x = stage(x)
    return Outputs(x["logits"], x["probs"], x["offsets"],
                   self.glance_probs(x["glance"]))

  def _policy_maps(self, frames, maps):
    """The policy's maps of [n, S, S, 3] frames whose glance maps are ``maps``.
    """
    if self.policy_glance is None:
      return maps
    return self.policy_glance(frames, training=False)[0]

  def _video_policy_maps(self, frames, maps):
    """The policy's maps of [B, T, S, S, 3] clips (see ``_policy_maps``)."""
    if self.policy_glance is None:
      return maps
    return adafocus.video_glance(self.policy_glance, frames)[0]

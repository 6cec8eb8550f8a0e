"""One object recognises videos: glance, policy, patches, focus, classifier.

Every tool that uses a trained run (evaluation, stage 3's forward, the
results table, prediction on files, the SavedModel signatures, early exit,
inference profiling, benchmarks) goes through a ``Recognizer``; nothing else
composes the pipeline. A model family is an implementation of this
interface:

  * ``OneStreamRecognizer``: the V1 model (``models/adafocus.py``): T frames,
    a patch per frame chosen by a recurrent policy, a recurrent (or
    per-frame) classifier that predicts after every frame;
  * ``TwoStreamRecognizer``: the Something-Something model
    (``models/two_stream.py``): Tg glance frames and Tf focus frames, one
    patch per video, prediction = mean focus logits + mean glance logits;
  * ``V2Recognizer`` and ``V2TwoStreamRecognizer``: AdaFocusV2's two
    families (``models/adafocus_v2.py``, ``models/v2_two_stream.py``):
    their position policy is part of the model, patches sit at real-valued
    offsets, and ``end_to_end_loss`` is their one training stage's loss.

Inputs are pipeline batches (dicts of normalised frames: ``frames``, or
``glance_frames`` and ``focus_frames``; ``seed`` for random patches and
dropout; ``boxes`` for oracle patches). The glance runs once per batch: its
maps feed the policy and its pooled features the classifier.

Two forms of inference:
  * whole clips: ``__call__`` (per-step logits and probabilities, the patch
    offsets, glance-only probabilities);
  * step by step with explicit state (``initial_state``, ``step``), for
    early exit: at *exit step* e the recognizer has spent
    ``exit_step_macs(cost)[e]`` more and gives a prediction. The V1 model's
    exit steps are its frames; the two-stream model's are (0) the glance and
    the policy, predicting with the glance alone, and (1) the focus network
    on the patch, giving the full prediction.
"""
from __future__ import annotations

import abc
import functools
from typing import Any, Dict, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import patches
from adafocus_tf.policy import greedy as greedy_lib
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops
from adafocus_tf.training import step_loss

POLICY = patch_choice.POLICY
GLANCE_ONLY = "glance_only"
# The named stages of whole-clip inference (``Recognizer.stages``).
STAGES = ("glance", "policy", "head")


class Outputs(NamedTuple):
  """Whole-clip inference of a batch.

  Attributes:
    logits: [B, S, C] logits after each prediction step (S = T for the V1
      model, 1 for the two-stream model).
    probs: [B, S, C] the prediction after each step (the classifier's rule:
      softmax, or running means of softmaxes).
    offsets: [B, K, 2] top-left patch pixels (K = T patches, one per
      frame in chronological order, or 1 per video): int32, or float32
      sub-pixel positions from a V2 policy.
    glance_probs: [B, S, C] the glance network alone.
  """
  logits: tf.Tensor
  probs: tf.Tensor
  offsets: tf.Tensor
  glance_probs: tf.Tensor


class Glance(NamedTuple):
  """What the glance network computed for a batch, run once.

  Attributes:
    maps: [B, T, h, w, C] feature maps of the glance frames.
    pooled: [B, T, C] pooled features.
    policy_maps: the maps the policy reads: ``maps``, or those of the glance
      net the policy was trained with when its weights differ.
  """
  maps: tf.Tensor
  pooled: tf.Tensor
  policy_maps: tf.Tensor

  def as_outputs(self) -> Dict[str, tf.Tensor]:
    """The glance as named tensors, for a glance network run elsewhere.

    The form a separately compiled glance returns (the TFLite glance of
    ``Predictor``'s hybrid backend): ``maps`` and ``pooled``, and
    ``policy_maps`` only when the policy reads another glance net's maps.
    ``from_outputs`` takes it back.
    """
    out = {"maps": self.maps, "pooled": self.pooled}
    if self.policy_maps is not self.maps:
      out["policy_maps"] = self.policy_maps
    return out

  @classmethod
  def from_outputs(cls, outputs) -> "Glance":
    """The ``Glance`` of ``as_outputs``' dict.

    Args:
      outputs: {name: tensor} with ``maps``, ``pooled`` and optionally
        ``policy_maps``.
    """
    return cls(outputs["maps"], outputs["pooled"],
               outputs.get("policy_maps", outputs["maps"]))


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

  def __init__(self, cfg: ExperimentConfig, model, policy=None,
               policy_glance=None):
    self.cfg, self.model, self.policy = cfg, model, policy
    self.policy_glance = policy_glance
    self._compiled_steps: Dict[Any, Any] = {}

  # -- what every family provides -------------------------------------------
  @property
  @abc.abstractmethod
  def input_keys(self) -> Sequence[str]:
    """The batch keys holding frames (``frames``, or the two streams)."""

  @property
  @abc.abstractmethod
  def glance_key(self) -> str:
    """The batch key of the frames the glance network sees."""

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

  @abc.abstractmethod
  def policy_offsets(self, glance: Glance):
    """The policy's greedy offsets [B, K, 2] from the glance."""

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
  def scores_along(self, batch, glance: Glance, offsets, alternative=None):
    """Logits at each policy step, and of an alternative patch at each step.

    What the policy's reward needs (``training.ppo``): the logits after
    each of the policy's K steps with its patches, and, at every step, the
    logits the model would give with the alternative patch instead, from
    the same state (the alternative does not advance it). All patches go
    through the focus net in one call.

    Args:
      batch: the pipeline batch.
      glance: ``glance(batch)``.
      offsets: [B, K, 2] the policy's patches.
      alternative: [B, K, 2] other patches (e.g. random ones), or None.

    Returns:
      (logits [B, K, C], alternative logits [B, K, C] or None).
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

  @abc.abstractmethod
  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    """[E] multiply-accumulates each exit step adds (``flops.video_macs``)."""

  @abc.abstractmethod
  def step_inputs(self, batch, e: int) -> dict:
    """The part of whole-clip inputs that exit step ``e`` reads."""

  @abc.abstractmethod
  def initial_state(self, n: int):
    """The state of ``n`` videos before exit step 0 (a nest of [n, ...])."""

  @abc.abstractmethod
  def _step(self, inputs, state, e_kind):
    """One exit step (see ``step``), traced once per ``e_kind``."""

  @abc.abstractmethod
  def step_kind(self, e: int):
    """Exit steps with the same kind share one compiled step."""

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
      offsets = tf.zeros([b, patch_choice.patch_steps(self.cfg), 2],
                         tf.int32)
      return Outputs(tf.math.log(glance_probs + 1e-12), glance_probs,
                     offsets, glance_probs)
    x = batch if glance is None else {**batch, "glance": glance}
    for name, stage in self.stages(choice):
      if name != "glance" or glance is None:
        x = stage(x)
    return Outputs(x["logits"], x["probs"], x["offsets"],
                   self.glance_probs(x["glance"]))

  def step(self, inputs, state, e: int):
    """Exit step ``e`` on the videos still running, compiled.

    Args:
      inputs: ``step_inputs(batch, e)`` of the running videos.
      state: the running videos' state after step e - 1
        (``initial_state`` before step 0).
      e: the exit step.

    Returns:
      (probabilities [n, C] after step e, offsets [n, k, 2] chosen at this
      step (k may be 0), the state after step e).
    """
    kind = self.step_kind(e)
    fn = self._compiled_steps.get(kind)
    if fn is None:
      # Batches shrink as videos exit: one trace serves every size.
      fn = tf.function(functools.partial(self._step, e_kind=kind),
                       autograph=False, reduce_retracing=True)
      self._compiled_steps[kind] = fn
    return fn(inputs, state)

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


class OneStreamRecognizer(Recognizer):
  """The V1 model: a patch per frame, a prediction after every frame."""

  input_keys = ("frames",)
  glance_key = "frames"

  def policy_offsets(self, glance: Glance):
    return self.policy.offsets(glance.policy_maps)

  def logits(self, batch, glance: Glance, offsets, training=False,
             train_focus=None):
    return self.model.head_logits(glance.pooled, batch["frames"], offsets,
                                  batch.get("seed"), training=training,
                                  train_focus=train_focus)

  def scores_along(self, batch, glance: Glance, offsets, alternative=None):
    model, frames = self.model, batch["frames"]
    num_steps = offsets.shape[1]
    b = tf.shape(frames)[0]
    crops = patches.extract_patches(frames, offsets, model.patch_size)
    if alternative is not None:
      crops = tf.concat([crops, patches.extract_patches(
          frames, alternative, model.patch_size)], 0)
    feats = model.focus(crops)
    feats = tf.reshape(feats, [-1, b, num_steps, feats.shape[-1]])
    state = model.classifier.initial_state(b)
    logits, other = [], []
    for t in range(num_steps):
      x = model.fuse(glance.pooled[:, t], feats[0, :, t])
      if alternative is None:
        step, state = model.classifier.step(x, state)
      else:
        # Both inputs from the same state in one batched step; only the
        # policy's patch advances it.
        xr = model.fuse(glance.pooled[:, t], feats[1, :, t])
        both, states = model.classifier.step(tf.concat([x, xr], 0),
                                             tf.concat([state, state], 0))
        step, state = both[:b], states[:b]
        other.append(both[b:])
      logits.append(step)
    return (tf.stack(logits, 1),
            tf.stack(other, 1) if alternative is not None else None)

  def glance_probs(self, glance: Glance):
    return self.model.glance_only_probs(glance.pooled)

  @property
  def num_exit_steps(self) -> int:
    return self.cfg.data.num_frames

  def exit_probs(self, outputs: Outputs):
    return outputs.probs

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    # MACs are whole counts: rounding undoes the G round trip, so that a
    # step costs exactly the frame's MACs.
    per_frame = (round(flops.choice_gflops(cost, choice) * flops.G)
                 / cost["num_frames"])
    return np.full(self.num_exit_steps, per_frame)

  def step_inputs(self, batch, e: int) -> dict:
    return {"frames": batch["frames"][:, e]}

  def initial_state(self, n: int):
    policy_state = (self.policy.initial_state(n) if self.policy is not None
                    else ())
    return (policy_state, self.model.classifier.initial_state(n))

  def step_kind(self, e: int):
    return e == 0

  def _step(self, inputs, state, e_kind):
    first = e_kind
    model = self.model
    frames_t = inputs["frames"]
    policy_state, cls_state = state
    maps, pooled = model.glance(frames_t, training=False)
    if self.policy is not None:
      offsets_t, policy_state = self.policy.step(
          self._policy_maps(frames_t, maps), first, policy_state)
    else:
      offsets_t = patches.centre_offsets(tf.shape(frames_t)[:1],
                                         model.frame_size, model.patch_size)
    logits, cls_state = model.step_logits(pooled, frames_t, offsets_t,
                                          cls_state)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    return probs, offsets_t[:, None], (policy_state, cls_state)


class TwoStreamRecognizer(Recognizer):
  """The Something-Something model: two frame streams, one patch per video."""

  input_keys = ("glance_frames", "focus_frames")
  glance_key = "glance_frames"

  def policy_offsets(self, glance: Glance):
    return self.policy.offsets(greedy_lib.stack_frames(glance.policy_maps))

  def logits(self, batch, glance: Glance, offsets, training=False,
             train_focus=None):
    return self.model.head_logits(glance.pooled, batch["focus_frames"],
                                  offsets, batch.get("seed"),
                                  training=training, train_focus=train_focus)

  def scores_along(self, batch, glance: Glance, offsets, alternative=None):
    model, frames = self.model, batch["focus_frames"]
    b = tf.shape(frames)[0]
    glance_logits = model.glance_logits(glance.pooled)
    if alternative is not None:
      frames = tf.concat([frames, frames], 0)
      offsets = tf.concat([offsets, alternative], 0)
      glance_logits = tf.concat([glance_logits, glance_logits], 0)
    logits = model.combine(glance_logits, model.focus_logits(frames, offsets))
    if alternative is None:
      return logits, None
    return logits[:b], logits[b:]

  def glance_probs(self, glance: Glance):
    return self.model.glance_only_probs(glance.pooled)

  @property
  def num_exit_steps(self) -> int:
    return 2

  def exit_probs(self, outputs: Outputs):
    return tf.concat([outputs.glance_probs, outputs.probs], 1)

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    # Step 0: the glance stream with its head, and the policy; step 1: the
    # focus stream on the patch with its head.
    glance = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
    if choice == POLICY:
      glance += cost["per_video"]["policy"]
    total = round(flops.choice_gflops(cost, choice) * flops.G)
    return np.array([glance, total - glance], np.float64)

  def step_inputs(self, batch, e: int) -> dict:
    return {k: batch[k] for k in (("glance_frames",) if e == 0
                                  else ("focus_frames",))}

  def initial_state(self, n: int):
    return (tf.zeros([n, self.cfg.data.num_classes]),
            tf.zeros([n, 1, 2], tf.int32))

  def step_kind(self, e: int):
    return e

  def _step(self, inputs, state, e_kind):
    model = self.model
    if e_kind == 0:
      g = self.glance(inputs)
      offsets = (self.policy_offsets(g) if self.policy is not None else
                 patches.centre_offsets(tf.stack([tf.shape(g.pooled)[0], 1]),
                                        model.frame_size, model.patch_size))
      glance_logits = tf.cast(model.glance_logits(g.pooled), tf.float32)
      # The glance-only prediction, as ``exit_probs`` has it: V2-TSM's is
      # its auxiliary head's (trained alone), not the summand
      # ``glance_logits`` the full prediction adds at step 1.
      return (tf.cast(self.glance_probs(g)[:, 0], tf.float32), offsets,
              (glance_logits, offsets))
    glance_logits, offsets = state
    focus_logits = model.focus_logits(inputs["focus_frames"], offsets)
    logits = model.combine(glance_logits, focus_logits)[:, 0]
    return (tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1),
            offsets[:, :0], state)


# Added to a video's seed for the V2 random branch's dropout masks, so that
# they are drawn independently of the policy branch's.
_RANDOM_BRANCH_STREAM = 5


def _mean_of_branches(model, batch, glance: Glance, num_positions: int,
                      training: bool, branch_terms, shared,
                      random_first: bool = False) -> step_loss.StepLoss:
  """V2's loss: the shared terms, and the mean over the policy's patches
  and random ones of each branch's terms.

  Args:
    model: a V2 model (``policy_offsets``, ``frame_size``, ``patch_size``).
    batch: the pipeline batch (``seed``; the random branch's positions
      [B, num_positions, 2] in [0, 1], chronological, under
      ``patch_choice.RANDOM_POSITIONS`` when given, else drawn from the
      seeds).
    glance: the batch's glance, run once for both branches.
    num_positions: random positions per video (one per frame, or 1).
    training: batch-norm mode of the policy.
    branch_terms: (offsets, seeds) -> ({term: per-video [B]}, the
      prediction's logits [B, C]) of one branch.
    shared: {term: per-video [B]} computed once for both branches.
    random_first: run the random branch first (V2-TSM's official order;
      the ActivityNet family's runs the policy's first). The order decides
      which branch's batch statistics the focus net's and the classifier's
      running averages take last.

  Returns:
    The ``StepLoss``: ``shared``'s terms, and ``policy_<term>`` and
    ``random_<term>`` weighing 1/2; its prediction is the policy branch's.
  """
  seeds = batch["seed"]
  policy = model.policy_offsets(glance.maps, training=training)
  positions = batch.get(patch_choice.RANDOM_POSITIONS)
  if positions is None:
    positions = patches.random_positions(
        patch_choice.random_patch_seeds(seeds), num_positions)
  random = patches.continuous_offsets(positions, model.frame_size,
                                      model.patch_size)
  random_seeds = seeds + tf.constant([_RANDOM_BRANCH_STREAM, 0], seeds.dtype)
  if random_first:
    random_terms, _ = branch_terms(random, random_seeds)
  policy_terms, logits = branch_terms(policy, seeds)
  if not random_first:
    random_terms, _ = branch_terms(random, random_seeds)
  terms = dict(shared)
  for name, branch in (("policy", policy_terms), ("random", random_terms)):
    terms.update({f"{name}_{k}": v for k, v in branch.items()})
  return step_loss.of_terms(
      terms, tf.nn.softmax(tf.cast(logits, tf.float32)),
      {k: 0.5 for k in terms if k not in shared})


class _OwnPolicy:
  """For the V2 families, whose model carries its policy (end to end).

  Mixed in before a ``Recognizer``: the policy arguments are ignored and
  the patches come from ``model.policy_offsets``.
  """

  def __init__(self, cfg: ExperimentConfig, model, policy=None,
               policy_glance=None):
    del policy, policy_glance  # The model carries its policy.
    super().__init__(cfg, model, model.policy)

  def policy_offsets(self, glance: Glance):
    return self.model.policy_offsets(glance.maps)


class V2Recognizer(_OwnPolicy, OneStreamRecognizer):
  """AdaFocusV2 (``models.adafocus_v2``): its policy is the model's own.

  Patches sit at real-valued offsets (bilinear sampling); the model reads
  the frames in ``model.frame_order``, so exit step e reads frame
  ``model.order[e]``. Per-step outputs are in reading order, offsets
  chronological (``models.adafocus_v2``).
  """

  def scores_along(self, batch, glance: Glance, offsets, alternative=None):
    raise NotImplementedError(
        "scores_along serves V1's PPO reward; a V2 policy trains end to end "
        "(end_to_end_loss)")

  def step_inputs(self, batch, e: int) -> dict:
    return {"frames": batch["frames"][:, int(self.model.order[e])]}

  def initial_state(self, n: int):
    return (self.policy.initial_state(n),
            self.model.classifier.initial_state(n))

  def step_kind(self, e: int):
    return e  # Each step has its own classifier head.

  def step_logits(self, inputs, state, e: int):
    """Exit step ``e`` as ``step`` does, giving float32 logits [n, C].

    V2's early exit reads the step's raw logits (docs/METHOD.md V2-7);
    ``step`` gives their softmax. Compiled once per step kind.
    """
    key = ("logits", self.step_kind(e))
    fn = self._compiled_steps.get(key)
    if fn is None:
      fn = tf.function(functools.partial(self._step_logits, e_kind=key[1]),
                       autograph=False, reduce_retracing=True)
      self._compiled_steps[key] = fn
    return fn(inputs, state)

  def _step_logits(self, inputs, state, e_kind):
    model, frame = self.model, inputs["frames"]
    policy_state, cls_state = state
    maps, pooled = model.glance(frame, training=False)
    positions, policy_state = self.policy.step(maps, policy_state)
    offsets = patches.continuous_offsets(positions, model.frame_size,
                                         model.patch_size)
    logits, cls_state = model.step_logits(pooled, frame, offsets, cls_state,
                                          e_kind)
    return (tf.cast(logits, tf.float32), offsets[:, None],
            (policy_state, cls_state))

  def _step(self, inputs, state, e_kind):
    logits, offsets, state = self._step_logits(inputs, state, e_kind)
    return tf.nn.softmax(logits, axis=-1), offsets, state

  def end_to_end_loss(self, batch, targets) -> step_loss.StepLoss:
    """V2's training loss of a batch (docs/METHOD.md V2-4), every part training.

    The glance runs once, and its head's CE on every frame (``glance``)
    once; the policy's patches and uniformly random ones each give
    CE(every step's logits) (``<branch>_steps``) + CE(the focus head on
    every patch) (``<branch>_focus``), each branch weighing 1/2. That is
    the official mean of two branch losses that both hold the glance term.

    Args:
      batch: the pipeline batch (``frames``, ``seed``; optionally
        ``patch_choice.RANDOM_POSITIONS``, the random branch's draws).
      targets: [B, C] target distributions.

    Returns:
      The ``StepLoss``; its prediction is the policy branch's last step.
    """
    model, frames = self.model, batch["frames"]
    # model.train_batchnorm off: every batch norm on its running statistics
    # (replicas then compute exactly what one device does).
    bn = self.cfg.model.train_batchnorm
    g = self.glance(batch, training=bn)
    shared = {"glance": classifier_lib.per_step_loss(
        model.glance_head_logits(g.pooled, batch["seed"], training=True),
        targets)}

    def branch(offsets, seeds):
      out = model.head_outputs(g.pooled, frames, offsets, seeds,
                               training=True, batchnorm=bn)
      # Per-frame heads: the same cross-entropy per frame.
      return ({"steps": model.classifier.loss(out.logits, targets),
               "focus": classifier_lib.per_step_loss(out.focus_logits,
                                                     targets)},
              out.logits[:, -1])
    return _mean_of_branches(model, batch, g, self.cfg.data.num_frames, bn,
                             branch, shared)


class V2TwoStreamRecognizer(_OwnPolicy, TwoStreamRecognizer):
  """V2-TSM (``models.v2_two_stream``): one real-valued patch per video."""

  def step_probs(self, logits):
    # No classifier of its own: the prediction is the summed logits'.
    return tf.nn.softmax(logits, axis=-1)

  def end_to_end_loss(self, batch, targets) -> step_loss.StepLoss:
    """V2-TSM's training loss (docs/METHOD.md V2-6).

    The glance stream's heads run once: CE(mean glance ``aux_head``)
    (``glance_aux``) once; the policy's location and one uniformly random
    location per video each give CE(prediction: glance ``head`` + focus
    ``head`` means) (``<branch>_prediction``) + CE(mean focus ``aux_head``)
    (``<branch>_focus_aux``), each branch weighing 1/2: the official mean
    of two branch losses that both hold the glance term.

    Args:
      batch: the pipeline batch (``glance_frames``, ``focus_frames``,
        ``seed``; optionally ``patch_choice.RANDOM_POSITIONS``).
      targets: [B, C] target distributions.

    Returns:
      The ``StepLoss``; its prediction is the policy branch's.
    """
    model = self.model
    g = self.glance(batch, training=True)
    g_head, g_aux = model.glance_means(g.pooled, batch["seed"],
                                       training=True)
    shared = {"glance_aux": classifier_lib.soft_cross_entropy(g_aux,
                                                              targets)}

    def branch(offsets, seeds):
      f_head, f_aux = model.focus_means(batch["focus_frames"], offsets,
                                        seeds, training=True)
      logits = model.combine(g_head, f_head)[:, 0]
      return ({"prediction": classifier_lib.soft_cross_entropy(logits,
                                                               targets),
               "focus_aux": classifier_lib.soft_cross_entropy(f_aux,
                                                              targets)},
              logits)
    # The official V2-TSM model runs the random location first.
    return _mean_of_branches(model, batch, g, 1, True, branch, shared,
                             random_first=True)

"""Early-exit inference that stops computing for the videos that exit.

``EarlyExitRunner`` drives a ``StepwiseRecognizer`` exit step by exit step
(``StepwiseRecognizer.step``, one compiled call per step): at step e only the
videos still running are gathered into a smaller batch, with their carried
state; those whose confidence reaches ``thresholds[e]`` leave with their
prediction, and only the survivors' states go on. A video that exits costs
nothing more: for the V1 model the remaining frames are skipped, for the
two-stream model a video exiting at step 0 never runs the focus stream.
An AdaFocusV2 recognizer exits on its steps' largest raw logit
(``exit_rule.MAX_LOGIT``, through ``V2Recognizer.step_logits``) and reads
its frames in ``model.order``: its step e cuts frame ``order[e]``'s patch.

Several views per video (``views``, ``DataConfig.test_crops``): each exit
step runs on every view of the videos still running, and a video's
criterion and prediction come from its views' raw logits averaged, as the
official multi-view early exit averages them before comparing
(Uni-AdaFocus-X3D's ``test_early_exit_unifocus_X3D_nViewEval.py``,
``generate_logits``); a video that exits stops all its views. This needs a
family that exits on raw logits (``exit_rule.MAX_LOGIT``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.evaluation import views as multi_view
from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.inference.early_exit import exit_cost
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops


class ExitPrediction(NamedTuple):
  """What ``EarlyExitRunner.predict`` returns.

  Attributes:
    probs: float32 [N, C], each video's prediction at its exit step.
    exit_steps: int64 [N], 0-based exit steps.
    macs: float64 [N], the MACs each video used: the costs of the steps it
      ran (``Recognizer.exit_step_macs``) on each of its views, added up
      as they ran.
    step_videos: int64 [E], the videos that ran each exit step (N at step
      0; N x E in all without early exit).
    offsets: float32 [N, K, D] (D: the recognizer's ``offset_dims``), the
      patches the steps chose, at the chronological frame each was cut
      from (as whole-clip inference gives them), of a video's first view;
      NaN for frames of steps a video did not run.
  """
  probs: np.ndarray
  exit_steps: np.ndarray
  macs: np.ndarray
  step_videos: np.ndarray
  offsets: np.ndarray


class EarlyExitRunner:
  """Runs a recognizer step by step, computing only for running videos.

  Args:
    recognizer: a ``stepwise_recognizer.StepwiseRecognizer`` (a family
      whose recognizer lacks the ability is refused); its steps use its
      policy when it has one, else centre patches
      (``Recognizer.default_choice``).
    cost: ``flops.video_macs(recognizer.cfg)`` when already computed (None:
      computed here).

  Raises:
    ValueError: the recognizer cannot run step by step.

  Attributes:
    step_macs: float [E], the MACs each exit step adds for the recognizer's
      patch choice.
  """

  def __init__(self, recognizer, cost: Optional[dict] = None):
    if not isinstance(recognizer, stepwise_recognizer.StepwiseRecognizer):
      raise ValueError(
          f"the {recognizer.family.name} model family's recognizer does not "
          "run step by step, so early exit cannot stop its videos early "
          "(its thresholds still give the exit profile of whole-clip "
          "outputs: adafocus-calibrate-exit)")
    self.recognizer = recognizer
    cost = cost or flops.video_macs(recognizer.cfg)
    self.step_macs = exit_cost.check_step_macs(
        recognizer.exit_step_macs(cost, recognizer.default_choice()))

  def check_views(self, views: int) -> None:
    """Refuses several views per video for a family that exits on
    probabilities (module doc).

    Args:
      views: V.

    Raises:
      ValueError: named.
    """
    rec = self.recognizer
    if views > 1 and exit_rule.criterion_of(rec.cfg) != exit_rule.MAX_LOGIT:
      raise ValueError(
          f"early exit over {views} views averages the views' raw logits "
          "(as the official multi-view early exit does), but the "
          f"{rec.family.name} model family exits on probabilities: read "
          "one view (data.test_crops=1, --test_crops=1)")

  def predict(self, batch, thresholds: Sequence[float],
              views: int = 1) -> ExitPrediction:
    """Early-exit predictions of a batch of videos.

    Args:
      batch: a pipeline batch (normalised frames under the recognizer's
        ``input_keys``, [N, V, ...] with a view axis when ``views`` > 1;
        other keys are ignored).
      thresholds: float [E], eta_e (``threshold_file.load_thresholds``), on the
        recognizer's criterion (``exit_rule.criterion_of``;
        ``exit_rule.never`` never exits); the last is ignored.
      views: V, views per video (module doc).

    Returns:
      An ``ExitPrediction``.

    Raises:
      ValueError: several views for a family that exits on probabilities.
    """
    rec = self.recognizer
    num_steps = rec.num_exit_steps
    thresholds = exit_rule.check_thresholds(thresholds, num_steps)
    by_logit = exit_rule.criterion_of(rec.cfg) == exit_rule.MAX_LOGIT
    self.check_views(views)
    n = int(batch[rec.input_keys[0]].shape[0])
    if views > 1:
      batch = multi_view.per_view_batch(
          {k: batch[k] for k in rec.input_keys}, rec.input_keys, views)
    running = np.arange(n)
    state = rec.initial_state(n * views)
    probs = np.zeros((n, rec.cfg.data.num_classes), np.float32)
    steps = np.full(n, num_steps - 1, np.int64)
    macs = np.zeros(n, np.float64)
    step_videos = np.zeros(num_steps, np.int64)
    offsets = np.full((n, patch_choice.patch_steps(rec.cfg), rec.offset_dims),
                      np.nan, np.float32)
    filled = 0
    for e in range(num_steps if n else 0):
      # This step's slice of the clips is taken before gathering the
      # survivors, so that only what the step reads is copied.
      inputs = rec.step_inputs(batch, e)
      if len(running) < n:
        idx = tf.constant(_clips_of(running, views), tf.int32)
        inputs = tf.nest.map_structure(lambda x, i=idx: tf.gather(x, i),
                                       inputs)
      if by_logit:
        logits, step_offsets, state = rec.step_logits(inputs, state, e)
        if views > 1:
          logits = tf.reduce_mean(
              tf.reshape(logits, [-1, views, logits.shape[-1]]), axis=1)
          step_offsets = step_offsets[::views]
        conf = tf.reduce_max(logits, axis=-1).numpy()
        p = tf.nn.softmax(logits, axis=-1).numpy()
      else:
        p, step_offsets, state = rec.step(inputs, state, e)
        p = p.numpy()
        conf = p.max(-1)
      k = int(step_offsets.shape[1])
      if k:
        slots = np.asarray(rec.offset_slots(e, filled, k), np.int64)
        offsets[running[:, None], slots[None, :]] = step_offsets.numpy()
        filled += k
      macs[running] += self.step_macs[e] * views
      step_videos[e] = len(running)
      if e < num_steps - 1:
        leave = conf >= conf.dtype.type(thresholds[e])
      else:
        leave = np.ones(len(running), bool)
      probs[running[leave]] = p[leave]
      steps[running[leave]] = e
      running = running[~leave]
      if not len(running):
        break
      # Only the survivors' states go on to the next step.
      keep = tf.constant(_clips_of(np.flatnonzero(~leave), views), tf.int32)
      state = tf.nest.map_structure(lambda s, k=keep: tf.gather(s, k), state)
    return ExitPrediction(probs, steps, macs, step_videos, offsets)


def _clips_of(videos: np.ndarray, views: int) -> np.ndarray:
  """The rows of videos' views in a batch of clips laid out video by video
  (``multi_view.per_view_batch``)."""
  return (np.asarray(videos)[:, None] * views + np.arange(views)).reshape(-1)

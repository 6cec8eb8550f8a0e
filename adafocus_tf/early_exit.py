"""AdaFocus+ early exit: stop a video once the classifier is confident enough.

The recurrent classifier predicts after every frame (SPEC.md section 4). A
video stops after frame t (0-based) as soon as its confidence there, the
largest class probability of the prediction after frame t, reaches a
threshold eta_t; the last frame always exits. Processing frames 0..t costs
(t + 1) x the per-frame cost, so exiting early saves whole frames of glance,
policy, focus and classifier.

Thresholds are fitted without retraining, on the training split (evaluation
transform): a *profile* says which fraction of videos should exit at each
step, and eta_t is the quantile of the confidences of the videos still
running at step t that lets that many of them go. The profile is geometric
(fraction at step t proportional to q^t), with q either given or chosen by
bisection so that the expected cost, sum_t profile_t x (t + 1) x per-frame
cost, meets a budget in GFLOPs per video.

Conventions shared with the SavedModel export and ``launch/predict.py``:

  * steps are 0-based: ``exit_steps`` returns t in [0, T), the video used
    frames 0..t, t + 1 frames in all;
  * a video exits at the first t with ``max(probs_t) >= thresholds[t]``, or
    at T - 1; the comparison is made in the probabilities' precision
    (float32), and fitted thresholds are float32 values;
  * a threshold above 1 (``NEVER``) means nobody exits at that step; the
    stored last threshold is 0.

``<run>/early_exit.json`` holds the fitted thresholds (``save``/``load``).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf import metrics
from adafocus_tf.models import patches

FILENAME = "early_exit.json"
# Confidences are probabilities, so a threshold of 2 is never reached.
NEVER = 2.0
G = 1e9


# ---------------------------------------------------------------------------
# The rule.


def confidences(step_probs) -> np.ndarray:
  """The confidence after each frame: the largest class probability.

  Args:
    step_probs: float [N, T, C], the prediction after each frame
      (``evaluation.predict_split``'s ``step_probs``).

  Returns:
    float [N, T].
  """
  step_probs = np.asarray(step_probs)
  if step_probs.ndim != 3:
    raise ValueError(f"step_probs must be [N, T, C], got shape "
                     f"{step_probs.shape}")
  return step_probs.max(axis=-1)


def _check_thresholds(thresholds, num_steps: int) -> np.ndarray:
  thresholds = np.asarray(thresholds, dtype=np.float64)
  if thresholds.shape != (num_steps,):
    raise ValueError(f"need one threshold per step ({num_steps}), got shape "
                     f"{thresholds.shape}")
  return thresholds


def _float_dtype(a: np.ndarray):
  return a.dtype.type if np.issubdtype(a.dtype, np.floating) else np.float64


def exit_steps_from_confidences(conf, thresholds) -> np.ndarray:
  """``exit_steps`` on precomputed confidences.

  Args:
    conf: float [N, T] confidences (``confidences``).
    thresholds: float [T], eta_t; the last one is ignored (the last frame
      always exits).

  Returns:
    int64 [N]: each video's 0-based exit step.
  """
  conf = np.asarray(conf)
  thresholds = _check_thresholds(thresholds, conf.shape[1])
  # Compare in the confidences' precision (float32 from the model), as a
  # graph does with float32 thresholds: 1 - 0.1 in float32 reaches 0.9.
  hit = conf >= thresholds.astype(_float_dtype(conf))[None, :]
  hit[:, -1] = True
  # argmax finds the first True.
  return np.argmax(hit, axis=1).astype(np.int64)


def exit_steps(step_probs, thresholds) -> np.ndarray:
  """The step at which each video exits.

  Video i exits after the first frame t with
  ``max_c step_probs[i, t, c] >= thresholds[t]``, and after the last frame
  (T - 1) if none.

  Args:
    step_probs: float [N, T, C], the prediction after each frame.
    thresholds: float [T], eta_t (``load_thresholds``); the last is
      ignored.

  Returns:
    int64 [N]: 0-based exit steps; video i used ``exit_steps[i] + 1``
    frames.
  """
  return exit_steps_from_confidences(confidences(step_probs), thresholds)


def exit_predictions(step_probs, steps) -> np.ndarray:
  """The prediction each video stops with: ``step_probs[i, steps[i]]``.

  Args:
    step_probs: float [N, T, C].
    steps: int [N] exit steps (``exit_steps``).

  Returns:
    float [N, C].
  """
  step_probs = np.asarray(step_probs)
  return step_probs[np.arange(step_probs.shape[0]), np.asarray(steps)]


# ---------------------------------------------------------------------------
# Profiles and cost.


def geometric_profile(q: float, num_steps: int) -> np.ndarray:
  """Fractions of videos exiting at each step, proportional to q^t.

  Args:
    q: ratio, >= 0. q < 1 front-loads exits, q = 1 is uniform, q > 1 keeps
      most videos to the end; 0 and ``inf`` put everyone at the first and
      at the last step.
    num_steps: T.

  Returns:
    float [T] summing to 1.
  """
  if q < 0 or math.isnan(q):
    raise ValueError(f"geometric ratio must be >= 0, got {q}")
  if q == 0:
    return np.eye(num_steps)[0]
  if math.isinf(q):
    return np.eye(num_steps)[-1]
  # In log space: q^t overflows for large q and T.
  logw = np.arange(num_steps) * math.log(q)
  w = np.exp(logw - logw.max())
  return w / w.sum()


def expected_frames(profile) -> float:
  """Mean frames per video when ``profile[t]`` of the videos exit at t."""
  profile = np.asarray(profile, dtype=np.float64)
  return float(np.sum(profile * np.arange(1, len(profile) + 1)))


def expected_gflops(profile, per_frame_macs: float) -> float:
  """Expected GFLOPs per video: sum_t profile_t x (t + 1) x per-frame cost.

  Args:
    profile: float [T] fractions exiting at each step.
    per_frame_macs: MACs of one frame (all parts that run per frame).

  Returns:
    G MACs per video (the papers' GFLOPs).
  """
  return expected_frames(profile) * per_frame_macs / G


def frame_macs(cost: dict, choice: str) -> int:
  """MACs of one frame for a patch choice, from ``flops.video_macs``.

  Args:
    cost: ``flops.video_macs(cfg)``.
    choice: ``policy`` (glance, policy, focus, classifier) or ``random``,
      ``centre``, ``oracle`` (no policy runs: glance, focus, classifier),
      as in ``flops.choice_gflops``.

  Returns:
    The MACs per frame.
  """
  if choice == "policy":
    return int(cost["per_frame"])
  if choice in ("random", "centre", "oracle"):
    return int(cost["glance"] + cost["focus"] + cost["classifier"])
  raise ValueError(f"unknown patch choice {choice!r}")


def measured_gflops(steps, per_frame_macs: float) -> float:
  """Average GFLOPs per video of videos that exited at ``steps``."""
  return float(np.mean(np.asarray(steps) + 1.0)) * per_frame_macs / G


def ratio_for_budget(budget_gflops: float, per_frame_macs: float,
                     num_steps: int, iterations: int = 200) -> float:
  """The geometric ratio q whose profile's expected cost meets a budget.

  Expected frames grow monotonically with q (from 1 at q = 0 to T as
  q -> inf), so bisection on log q finds it.

  Args:
    budget_gflops: target average GFLOPs per video.
    per_frame_macs: MACs of one frame.
    num_steps: T.
    iterations: bisection steps.

  Returns:
    q; 0 for a budget of one frame or less, ``inf`` for T frames or more.
  """
  frames = budget_gflops * G / per_frame_macs
  if frames <= 1.0:
    return 0.0
  if frames >= num_steps:
    return math.inf
  lo, hi = -50.0, 50.0
  for _ in range(iterations):
    mid = 0.5 * (lo + hi)
    if expected_frames(geometric_profile(math.exp(mid), num_steps)) < frames:
      lo = mid
    else:
      hi = mid
  return math.exp(0.5 * (lo + hi))


def parse_profile(text: str, num_steps: int) -> np.ndarray:
  """A profile from the command line.

  Args:
    text: ``geometric:Q`` (fractions proportional to Q^t) or T
      comma-separated non-negative weights (normalised to sum to 1).
    num_steps: T.

  Returns:
    float [T] summing to 1.

  Raises:
    ValueError: the text is neither form.
  """
  if text.startswith("geometric:"):
    return geometric_profile(float(text.split(":", 1)[1]), num_steps)
  try:
    w = np.array([float(x) for x in text.split(",")])
  except ValueError:
    raise ValueError(f"profile {text!r}: use geometric:Q or T comma-separated "
                     "weights") from None
  if w.shape != (num_steps,) or (w < 0).any() or w.sum() <= 0:
    raise ValueError(f"profile {text!r}: need {num_steps} non-negative "
                     "weights, not all zero")
  return w / w.sum()


# ---------------------------------------------------------------------------
# Fitting.


def fit_thresholds(conf, profile) -> np.ndarray:
  """Thresholds under which ``profile[t]`` of the videos exit at step t.

  Walks the steps in order. The target number exited by the end of step t
  is round(N x cumsum(profile)[t]); k_t, the videos still missing from it,
  are let go from those still running: eta_t is the midpoint between the
  k_t-th and (k_t+1)-th largest running confidence (the 1 - k_t / n_t
  quantile of the running confidences), ``NEVER`` when k_t = 0, 0 when all
  remaining must go. Counting the cumulative target keeps rounding (and
  ties, which let a few more go) from drifting away from the profile.

  Args:
    conf: float [N, T] confidences of the fitting videos (``confidences``).
    profile: float [T] fractions exiting at each step (sums to 1).

  Returns:
    float64 [T] thresholds; the last is 0.
  """
  conf = np.asarray(conf)
  # Thresholds are rounded to the confidences' precision, so that they mean
  # the same in exit_steps, in float32 JSON round trips and in a graph.
  dtype = _float_dtype(conf)
  conf = conf.astype(dtype)
  n, t_max = conf.shape
  if n == 0:
    raise ValueError("no videos to fit thresholds on")
  profile = np.asarray(profile, dtype=np.float64)
  if profile.shape != (t_max,):
    raise ValueError(f"profile has {profile.shape} steps, confidences "
                     f"{t_max}")
  target = np.round(n * np.cumsum(profile) / profile.sum()).astype(np.int64)
  thresholds = np.zeros(t_max)
  running = np.ones(n, bool)
  exited = 0
  for t in range(t_max - 1):
    c = conf[running, t]
    k = int(np.clip(target[t] - exited, 0, len(c)))
    if k == 0:
      thresholds[t] = NEVER
    elif k == len(c):
      thresholds[t] = 0.0
    else:
      desc = np.sort(c)[::-1]
      thresholds[t] = dtype(0.5 * (np.float64(desc[k - 1]) + desc[k]))
    leaving = running & (conf[:, t] >= dtype(thresholds[t]))
    exited += int(leaving.sum())
    running &= ~leaving
  return thresholds


def summarize(step_probs, labels, thresholds, per_frame_macs: float) -> dict:
  """Accuracy and cost of early exit with ``thresholds`` on some videos.

  Args:
    step_probs: float [N, T, C], the prediction after each frame.
    labels: int [N] class ids or [N, C] multi-hot.
    thresholds: float [T].
    per_frame_macs: MACs of one frame (``frame_macs``).

  Returns:
    JSON-serialisable dict: ``top1``, ``top5``, ``mAP`` (x100, of the
    predictions at exit), ``gflops`` (measured average per video),
    ``mean_frames`` and ``exits`` (videos exiting at each step).
  """
  steps = exit_steps(step_probs, thresholds)
  probs = exit_predictions(step_probs, steps)
  return {
      "top1": metrics.topk_accuracy(probs, labels, 1),
      "top5": metrics.topk_accuracy(probs, labels, 5),
      "mAP": metrics.mean_average_precision(probs, labels),
      "gflops": measured_gflops(steps, per_frame_macs),
      "mean_frames": float(np.mean(steps + 1.0)),
      "exits": np.bincount(steps, minlength=np.shape(step_probs)[1]).tolist(),
  }


# ---------------------------------------------------------------------------
# Storage with the run.


def path(run: str) -> str:
  """``<run>/early_exit.json``."""
  return io_utils.join(run, FILENAME)


def save(run: str, thresholds, profile, per_frame_macs: float,
         budget_gflops: Optional[float], expected_gflops_train: float,
         **extra) -> dict:
  """Writes ``<run>/early_exit.json`` atomically.

  Args:
    run: run directory (local or ``s3://``).
    thresholds: float [T] fitted thresholds.
    profile: float [T] the exit profile they were fitted to.
    per_frame_macs: MACs per frame the costs were computed with.
    budget_gflops: the target budget (None when the profile was given).
    expected_gflops_train: the profile's expected GFLOPs per video (on the
      training videos the thresholds were fitted on).
    **extra: further JSON-serialisable fields (ratio q, patch choice, ...).

  Returns:
    The dict written.
  """
  record = {
      "thresholds": [float(x) for x in thresholds],
      "profile": [float(x) for x in profile],
      "per_frame_macs": int(per_frame_macs),
      "budget_gflops": None if budget_gflops is None else float(budget_gflops),
      "expected_gflops_train": float(expected_gflops_train),
      "rule": ("exit after frame t (0-based) when max class probability >= "
               "thresholds[t]; the last frame always exits"),
      **extra,
  }
  io_utils.write_json(path(run), record)
  return record


def load(run: str) -> Optional[dict]:
  """The whole ``early_exit.json`` of a run, or None if it has none."""
  p = path(run)
  return io_utils.read_json(p) if io_utils.exists(p) else None


def load_thresholds(run: str) -> Optional[np.ndarray]:
  """The run's fitted thresholds.

  Args:
    run: run directory (local or ``s3://``).

  Returns:
    float32 [T] thresholds for ``exit_steps``, or None when
    ``launch/calibrate_exit.py`` has not been run on it.
  """
  record = load(run)
  if record is None:
    return None
  return np.asarray(record["thresholds"], dtype=np.float32)


# ---------------------------------------------------------------------------
# Inference that stops computing.


class ExitPrediction(NamedTuple):
  """What ``early_exit_predict`` returns.

  Attributes:
    probs: float [N, C], each video's prediction at its exit step.
    exit_steps: int64 [N], 0-based exit steps.
    focus_evaluations: patches the focus net actually processed, the sum of
      ``exit_steps + 1`` (N x T without early exit).
  """
  probs: np.ndarray
  exit_steps: np.ndarray
  focus_evaluations: int


class EarlyExitRunner:
  """Runs AdaFocus frame by frame, computing only for videos still running.

  At step t the glance net, the policy step, the focus net and the
  classifier step run on the running videos alone (gathered into a smaller
  batch), as one compiled call; a video that exits leaves the batch, so
  exited videos cost nothing more. The policy, stepped frame by frame with
  its recurrent state carried for the survivors, sees each glance map once:
  the glance that feeds the classifier.

  Args:
    model: an ``AdaFocus`` model.
    policy_step: the patch policy one frame at a time (for a trained run:
      ``PolicyTrainer.greedy_stepper()``): ``initial_state(n)`` and
      ``(glance maps [n, h, w, C], first: bool, state) -> (offsets [n, 2],
      state)``; None: the offsets come with the frames (``predict``).
  """

  def __init__(self, model, policy_step=None):
    self.model, self.policy_step = model, policy_step
    # Batches shrink as videos exit: one trace serves every size.
    self._step = tf.function(self._frame, autograph=False,
                             reduce_retracing=True)

  def _frame(self, frames_t, offsets_t, policy_state, state, first):
    """One frame of the running videos: their probabilities and states."""
    model = self.model
    fmap, pooled = model.glance(frames_t, training=False)
    if self.policy_step is not None:
      offsets_t, policy_state = self.policy_step(fmap, first, policy_state)
    crops = patches.extract_patches(frames_t[:, None], offsets_t[:, None],
                                    model.patch_size)
    focus = model.focus(crops, training=False)
    logits, state = model.classifier.step(model.fuse(pooled, focus), state)
    return (tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1),
            policy_state, state)

  def predict(self, frames, thresholds: Sequence[float],
              offsets=None) -> ExitPrediction:
    """Early-exit predictions of a batch of videos.

    Args:
      frames: float [N, T, S, S, 3] normalised frames (a pipeline batch's
        ``frames``).
      thresholds: float [T], eta_t (``load_thresholds``); values above 1
        never exit.
      offsets: int [N, T, 2] patch offsets when there is no ``policy_step``
        (None: centre patches).

    Returns:
      An ``ExitPrediction``.
    """
    model = self.model
    frames = tf.convert_to_tensor(frames)
    n, num_steps = int(frames.shape[0]), int(frames.shape[1])
    thresholds = _check_thresholds(thresholds, num_steps)
    if self.policy_step is None:
      if offsets is None:
        offsets = patches.centre_offsets(tf.shape(frames)[:2],
                                         model.frame_size, model.patch_size)
      offsets = tf.convert_to_tensor(offsets)
    elif offsets is not None:
      raise ValueError("offsets come from the policy_step; give one of them")
    running = np.arange(n)
    state = model.classifier.initial_state(n)
    policy_state = (self.policy_step.initial_state(n)
                    if self.policy_step is not None else ())
    probs = np.zeros((n, model.classifier.fc.units), np.float32)
    steps = np.full(n, num_steps - 1, np.int64)
    focus_evaluations = 0
    for t in range(num_steps if n else 0):
      idx = tf.constant(running, tf.int32)
      offsets_t = (tf.gather(offsets[:, t], idx) if self.policy_step is None
                   else tf.zeros([len(running), 2], tf.int32))
      p, policy_state, state = self._step(
          tf.gather(frames[:, t], idx), offsets_t, policy_state, state,
          t == 0)
      p = p.numpy()
      focus_evaluations += len(running)
      if t < num_steps - 1:
        leave = p.max(-1) >= p.dtype.type(thresholds[t])
      else:
        leave = np.ones(len(running), bool)
      probs[running[leave]] = p[leave]
      steps[running[leave]] = t
      running = running[~leave]
      if not len(running):
        break
      # Only the survivors' states advance to the next frame.
      keep = tf.constant(np.flatnonzero(~leave), tf.int32)
      state = tf.gather(state, keep)
      policy_state = tf.nest.map_structure(lambda s, k=keep: tf.gather(s, k),
                                           policy_state)
    return ExitPrediction(probs, steps, focus_evaluations)


def early_exit_predict(model, frames, offsets_fn: Optional[Callable],
                       thresholds: Sequence[float],
                       policy_step=None) -> ExitPrediction:
  """One batch through a new ``EarlyExitRunner`` (see there).

  Build one runner and call its ``predict`` for many batches: its step is
  compiled once.

  Args:
    model: an ``AdaFocus`` model.
    frames: float [N, T, S, S, 3] normalised frames.
    offsets_fn: ``frames -> int [N, T, 2]`` patch offsets computed up front;
      None: the ``policy_step``'s, or centre patches.
    thresholds: float [T], eta_t.
    policy_step: the policy stepped frame by frame (``EarlyExitRunner``).

  Returns:
    An ``ExitPrediction``.
  """
  offsets = None if offsets_fn is None else offsets_fn(frames)
  return EarlyExitRunner(model, policy_step).predict(frames, thresholds,
                                                     offsets)

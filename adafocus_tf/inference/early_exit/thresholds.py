"""The early-exit rule, exit profiles, their cost, and fitting thresholds.

A recognizer predicts after each of its E *exit steps*
(``Recognizer.exit_probs``): the V1 model after every frame (E = T), the
two-stream model after the glance and the policy (step 0, the glance's
prediction) and after the focus stream (step 1, the full prediction). A
video stops after exit step e (0-based) as soon as its confidence there,
the largest class probability of the prediction after step e, reaches a
threshold eta_e; the last step always exits. Exit step e adds
``step_macs[e]`` MACs (``Recognizer.exit_step_macs``), so a video exiting
at e costs ``step_macs[0] + ... + step_macs[e]``: for the V1 model
(e + 1) x the per-frame cost.

Thresholds are fitted without retraining, on the training split (evaluation
transform): a *profile* says which fraction of videos should exit at each
step, and eta_e is the quantile of the confidences of the videos still
running at step e that lets that many of them go. The profile is geometric
(fraction at step e proportional to q^e), with q either given or chosen by
bisection so that the expected cost, sum_e profile_e x cumulative cost
after step e, meets a budget in GFLOPs per video.

Conventions shared with the SavedModel export and prediction on files:

  * steps are 0-based: ``exit_steps`` returns e in [0, E), the video ran
    steps 0..e;
  * a video exits at the first e with ``max(probs_e) >= thresholds[e]``, or
    at E - 1; the comparison is made in the probabilities' precision
    (float32), and fitted thresholds are float32 values;
  * a threshold above 1 (``NEVER``) means nobody exits at that step; the
    stored last threshold is 0.

AdaFocusV2 (``model.variant = v2``, docs/METHOD.md V2-7) exits on another
*criterion*: the confidence after step e is the step's largest raw logit
(``MAX_LOGIT``; ``MAX_PROB`` is the rule above), and its thresholds are
fitted by the official rule (``fit_top_thresholds``: the top floor(N p_e)
of the videos still running exit at step e) on training videos under the
training transform. ``criterion_of`` says which a config uses;
``fit`` and ``never`` dispatch on it, and everything else (``exit_steps``,
costs, profiles) is shared.

``<run>/early_exit.json`` holds the fitted thresholds (``save``/``load``),
their criterion, and the content digest of the weights they were fitted on
(``runs.final_weights``): thresholds are quantiles of one model's
confidences, so ``load_thresholds`` refuses them (``StaleThresholdsError``)
once the run's final weights are others (a stage retrained or a checkpoint
replaced, even under the same name).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf import errors
from adafocus_tf import io_utils
from adafocus_tf.evaluation import metrics
from adafocus_tf.profiling import flops
from adafocus_tf.runs import final_weights

FILENAME = "early_exit.json"
# Confidences are probabilities, so a threshold of 2 is never reached.
NEVER = 2.0
RULE = ("exit after exit step e (0-based) when max class probability >= "
        "thresholds[e]; the last step always exits")
# The criteria: the largest class probability (V1, the two-stream models),
# or the largest raw logit (AdaFocusV2, docs/METHOD.md V2-7).
MAX_PROB = "max_prob"
MAX_LOGIT = "max_logit"
# Logit thresholds nobody reaches and everybody reaches: finite, so that
# JSON and float32 keep them (the official code's +-infinity).
NEVER_LOGIT = float(np.finfo(np.float32).max)
ALWAYS_LOGIT = -NEVER_LOGIT
RULES = {
    MAX_PROB: RULE,
    MAX_LOGIT: ("exit after exit step e (0-based) when the largest raw logit "
                ">= thresholds[e]; the last step always exits"),
}


class StaleThresholdsError(errors.RefusedError):
  """``early_exit.json`` was not fitted on the run's final weights."""


# ---------------------------------------------------------------------------
# The rule.


def confidences(exit_probs) -> np.ndarray:
  """The confidence after each exit step: the largest class probability.

  Args:
    exit_probs: float [N, E, C], the prediction after each exit step
      (``predictions.predict_split``'s ``exit_probs``).

  Returns:
    float [N, E].
  """
  exit_probs = np.asarray(exit_probs)
  if exit_probs.ndim != 3:
    raise ValueError(f"exit_probs must be [N, E, C], got shape "
                     f"{exit_probs.shape}")
  return exit_probs.max(axis=-1)


def criterion_of(cfg) -> str:
  """``MAX_LOGIT`` for an AdaFocusV2 (``v2``) config, else ``MAX_PROB``.

  V2-TSM keeps ``MAX_PROB``: the official code ships no exit for it, and
  its two exit steps are the two-stream model's.

  Args:
    cfg: an ``ExperimentConfig``.
  """
  return MAX_LOGIT if cfg.model.variant == config_lib.V2 else MAX_PROB


def step_confidences(recognizer, outputs):
  """float32 [B, E]: each exit step's confidence, from whole-clip outputs.

  The largest class probability of ``recognizer.exit_probs(outputs)``, or,
  for a ``MAX_LOGIT`` recognizer, the largest logit of each step (its exit
  steps are its classifier's steps).

  Args:
    recognizer: an ``inference.recognizer.Recognizer``.
    outputs: its whole-clip ``Outputs``.
  """
  if criterion_of(recognizer.cfg) == MAX_LOGIT:
    return tf.reduce_max(tf.cast(outputs.logits, tf.float32), axis=-1)
  return tf.reduce_max(recognizer.exit_probs(outputs), axis=-1)


def never(num_steps: int, criterion: str = MAX_PROB) -> np.ndarray:
  """float64 [E] thresholds under which no video exits before the last step.

  Args:
    num_steps: E.
    criterion: ``MAX_PROB`` or ``MAX_LOGIT``.
  """
  return np.full(num_steps, NEVER_LOGIT if criterion == MAX_LOGIT else NEVER)


def check_thresholds(thresholds, num_steps: int) -> np.ndarray:
  """``thresholds`` as float64 [E], or a ValueError naming the shapes.

  Args:
    thresholds: one threshold per exit step.
    num_steps: E.
  """
  thresholds = np.asarray(thresholds, dtype=np.float64)
  if thresholds.shape != (num_steps,):
    raise ValueError(f"need one threshold per exit step ({num_steps}), got "
                     f"shape {thresholds.shape}")
  return thresholds


def _float_dtype(a: np.ndarray):
  return a.dtype.type if np.issubdtype(a.dtype, np.floating) else np.float64


def exit_steps_from_confidences(conf, thresholds) -> np.ndarray:
  """``exit_steps`` on precomputed confidences.

  Args:
    conf: float [N, E] confidences (``confidences``).
    thresholds: float [E], eta_e; the last one is ignored (the last step
      always exits).

  Returns:
    int64 [N]: each video's 0-based exit step.
  """
  conf = np.asarray(conf)
  thresholds = check_thresholds(thresholds, conf.shape[1])
  # Compare in the confidences' precision (float32 from the model), as a
  # graph does with float32 thresholds: 1 - 0.1 in float32 reaches 0.9.
  hit = conf >= thresholds.astype(_float_dtype(conf))[None, :]
  hit[:, -1] = True
  # argmax finds the first True.
  return np.argmax(hit, axis=1).astype(np.int64)


def exit_steps(exit_probs, thresholds) -> np.ndarray:
  """The step at which each video exits.

  Video i exits after the first step e with
  ``max_c exit_probs[i, e, c] >= thresholds[e]``, and after the last step
  (E - 1) if none.

  Args:
    exit_probs: float [N, E, C], the prediction after each exit step.
    thresholds: float [E], eta_e (``load_thresholds``); the last is
      ignored.

  Returns:
    int64 [N]: 0-based exit steps; video i ran steps 0..exit_steps[i].
  """
  return exit_steps_from_confidences(confidences(exit_probs), thresholds)


def exit_predictions(exit_probs, steps) -> np.ndarray:
  """The prediction each video stops with: ``exit_probs[i, steps[i]]``.

  Args:
    exit_probs: float [N, E, C].
    steps: int [N] exit steps (``exit_steps``).

  Returns:
    float [N, C].
  """
  exit_probs = np.asarray(exit_probs)
  return exit_probs[np.arange(exit_probs.shape[0]), np.asarray(steps)]


# ---------------------------------------------------------------------------
# Profiles and cost.


def geometric_profile(q: float, num_steps: int) -> np.ndarray:
  """Fractions of videos exiting at each step, proportional to q^e.

  Args:
    q: ratio, >= 0. q < 1 front-loads exits, q = 1 is uniform, q > 1 keeps
      most videos to the end; 0 and ``inf`` put everyone at the first and
      at the last step.
    num_steps: E.

  Returns:
    float [E] summing to 1.
  """
  if q < 0 or math.isnan(q):
    raise ValueError(f"geometric ratio must be >= 0, got {q}")
  if q == 0:
    return np.eye(num_steps)[0]
  if math.isinf(q):
    return np.eye(num_steps)[-1]
  # In log space: q^e overflows for large q and E.
  logw = np.arange(num_steps) * math.log(q)
  w = np.exp(logw - logw.max())
  return w / w.sum()


def check_step_macs(step_macs) -> np.ndarray:
  """``step_macs`` as float64 [E], or a ValueError showing them.

  Args:
    step_macs: the MACs each exit step adds
      (``Recognizer.exit_step_macs``): finite, non-negative, at least one.
  """
  step_macs = np.asarray(step_macs, dtype=np.float64)
  if (step_macs.ndim != 1 or not step_macs.size
      or not np.all(np.isfinite(step_macs)) or (step_macs < 0).any()):
    raise ValueError("step_macs must be [E] finite non-negative MACs per "
                     f"exit step, got {step_macs!r}")
  return step_macs


def cumulative_macs(step_macs) -> np.ndarray:
  """MACs a video has spent by the end of each exit step.

  Args:
    step_macs: float [E], the MACs each exit step adds.

  Returns:
    float64 [E]: ``step_macs[0] + ... + step_macs[e]``.
  """
  return np.cumsum(check_step_macs(step_macs))


def expected_gflops(profile, step_macs) -> float:
  """Expected GFLOPs per video: sum_e profile_e x cumulative cost after e.

  Args:
    profile: float [E] fractions exiting at each step.
    step_macs: float [E] MACs each exit step adds.

  Returns:
    G MACs per video (the papers' GFLOPs).
  """
  profile = np.asarray(profile, dtype=np.float64)
  cum = cumulative_macs(step_macs)
  if profile.shape != cum.shape:
    raise ValueError(f"profile has {profile.shape} steps, step_macs "
                     f"{cum.shape}")
  return float(np.sum(profile * cum)) / flops.G


def measured_gflops(steps, step_macs) -> float:
  """Average GFLOPs per video of videos that exited at ``steps``.

  Args:
    steps: int [N] exit steps.
    step_macs: float [E] MACs each exit step adds.
  """
  return float(np.mean(cumulative_macs(step_macs)[np.asarray(steps)])) / flops.G


def ratio_for_budget(budget_gflops: float, step_macs,
                     iterations: int = 200) -> float:
  """The geometric ratio q whose profile's expected cost meets a budget.

  The expected cost grows monotonically with q (a larger q moves exits to
  later steps, whose cumulative cost is no smaller), from the cost of step 0
  at q = 0 to the full cost as q -> inf, so bisection on log q finds it.

  Args:
    budget_gflops: target average GFLOPs per video.
    step_macs: float [E] MACs each exit step adds.
    iterations: bisection steps.

  Returns:
    q; 0 for a budget of step 0's cost or less, ``inf`` for the full cost or
    more.
  """
  cum = cumulative_macs(step_macs)
  num_steps = len(cum)
  target = budget_gflops * flops.G
  if target <= cum[0]:
    return 0.0
  if target >= cum[-1]:
    return math.inf
  lo, hi = -50.0, 50.0
  for _ in range(iterations):
    mid = 0.5 * (lo + hi)
    if np.sum(geometric_profile(math.exp(mid), num_steps) * cum) < target:
      lo = mid
    else:
      hi = mid
  return math.exp(0.5 * (lo + hi))


def parse_profile(text: str, num_steps: int) -> np.ndarray:
  """A profile from the command line.

  Args:
    text: ``geometric:Q`` (fractions proportional to Q^e) or E
      comma-separated non-negative weights (normalised to sum to 1).
    num_steps: E.

  Returns:
    float [E] summing to 1.

  Raises:
    ValueError: the text is neither form.
  """
  if text.startswith("geometric:"):
    return geometric_profile(float(text.split(":", 1)[1]), num_steps)
  try:
    w = np.array([float(x) for x in text.split(",")])
  except ValueError:
    raise ValueError(f"profile {text!r}: use geometric:Q or E comma-separated "
                     "weights") from None
  if w.shape != (num_steps,) or (w < 0).any() or w.sum() <= 0:
    raise ValueError(f"profile {text!r}: need {num_steps} non-negative "
                     "weights, not all zero")
  return w / w.sum()


# ---------------------------------------------------------------------------
# Fitting.


def _fitting_inputs(conf, profile):
  """Checked (conf [N, E] in a float dtype, profile float64 [E]).

  Thresholds are rounded to the confidences' precision, so that they mean
  the same in exit_steps, in float32 JSON round trips and in a graph.
  """
  conf = np.asarray(conf)
  conf = conf.astype(_float_dtype(conf))
  n, e_max = conf.shape
  if n == 0:
    raise ValueError("no videos to fit thresholds on")
  profile = np.asarray(profile, dtype=np.float64)
  if profile.shape != (e_max,):
    raise ValueError(f"profile has {profile.shape} steps, confidences "
                     f"{e_max}")
  return conf, profile


def fit_thresholds(conf, profile) -> np.ndarray:
  """Thresholds under which ``profile[e]`` of the videos exit at step e.

  Walks the steps in order. The target number exited by the end of step e
  is round(N x cumsum(profile)[e]); k_e, the videos still missing from it,
  are let go from those still running: eta_e is the midpoint between the
  k_e-th and (k_e+1)-th largest running confidence (the 1 - k_e / n_e
  quantile of the running confidences), ``NEVER`` when k_e = 0, 0 when all
  remaining must go. Counting the cumulative target keeps rounding (and
  ties, which let a few more go) from drifting away from the profile.

  Args:
    conf: float [N, E] confidences of the fitting videos (``confidences``).
    profile: float [E] fractions exiting at each step (sums to 1).

  Returns:
    float64 [E] thresholds; the last is 0.
  """
  conf, profile = _fitting_inputs(conf, profile)
  dtype = conf.dtype.type
  n, e_max = conf.shape
  target = np.round(n * np.cumsum(profile) / profile.sum()).astype(np.int64)
  thresholds = np.zeros(e_max)
  running = np.ones(n, bool)
  exited = 0
  for e in range(e_max - 1):
    c = conf[running, e]
    k = int(np.clip(target[e] - exited, 0, len(c)))
    if k == 0:
      thresholds[e] = NEVER
    elif k == len(c):
      thresholds[e] = 0.0
    else:
      desc = np.sort(c)[::-1]
      thresholds[e] = dtype(0.5 * (np.float64(desc[k - 1]) + desc[k]))
    leaving = running & (conf[:, e] >= dtype(thresholds[e]))
    exited += int(leaving.sum())
    running &= ~leaving
  return thresholds


def fit_top_thresholds(conf, profile) -> np.ndarray:
  """AdaFocusV2's fitting rule (docs/METHOD.md V2-7) for ``MAX_LOGIT``.

  For each step e but the last, among the videos still running, the
  floor(N x profile[e]) with the highest confidence at step e are let go
  (all of them when fewer are left), and eta_e is the lowest confidence
  among those let go (``NEVER_LOGIT`` when none is); every running video
  whose confidence reaches eta_e leaves (ties may let a few more go). The
  last threshold is ``ALWAYS_LOGIT``. Unlike ``fit_thresholds`` each step's
  count is its own (no cumulative target).

  Args:
    conf: float [N, E] confidences of the fitting videos.
    profile: float [E] fractions exiting at each step (normalised here).

  Returns:
    float64 [E] thresholds, each a value of ``conf``'s dtype.
  """
  conf, profile = _fitting_inputs(conf, profile)
  dtype = conf.dtype.type
  n, e_max = conf.shape
  counts = np.floor(n * profile / profile.sum()).astype(np.int64)
  thresholds = np.full(e_max, ALWAYS_LOGIT)
  running = np.ones(n, bool)
  for e in range(e_max - 1):
    k = int(min(counts[e], running.sum()))
    if k == 0:
      thresholds[e] = NEVER_LOGIT
    else:
      thresholds[e] = np.sort(conf[running, e])[::-1][k - 1]
    running &= ~(conf[:, e] >= dtype(thresholds[e]))
  return thresholds


def fit(conf, profile, criterion: str = MAX_PROB) -> np.ndarray:
  """Thresholds for ``profile`` by the criterion's fitting rule.

  Args:
    conf: float [N, E] confidences under ``criterion``.
    profile: float [E] fractions exiting at each step.
    criterion: ``MAX_PROB`` (``fit_thresholds``) or ``MAX_LOGIT``
      (``fit_top_thresholds``).
  """
  if criterion == MAX_LOGIT:
    return fit_top_thresholds(conf, profile)
  return fit_thresholds(conf, profile)


def summarize(exit_probs, labels, thresholds, step_macs, conf=None) -> dict:
  """Accuracy and cost of early exit with ``thresholds`` on some videos.

  Args:
    exit_probs: float [N, E, C], the prediction after each exit step.
    labels: int [N] class ids or [N, C] multi-hot.
    thresholds: float [E].
    step_macs: float [E] MACs each exit step adds.
    conf: float [N, E] the confidences the thresholds apply to (default
      ``confidences(exit_probs)``, the ``MAX_PROB`` criterion).

  Returns:
    JSON-serialisable dict: ``top1``, ``top5``, ``mAP`` (x100, of the
    predictions at exit), ``gflops`` (measured average per video),
    ``mean_steps`` (mean exit step + 1: frames, for the V1 model) and
    ``exits`` (videos exiting at each step).
  """
  conf = confidences(exit_probs) if conf is None else conf
  steps = exit_steps_from_confidences(conf, thresholds)
  probs = exit_predictions(exit_probs, steps)
  return {
      "top1": metrics.topk_accuracy(probs, labels, 1),
      "top5": metrics.topk_accuracy(probs, labels, 5),
      "mAP": metrics.mean_average_precision(probs, labels),
      "gflops": measured_gflops(steps, step_macs),
      "mean_steps": float(np.mean(steps + 1.0)),
      "exits": np.bincount(steps, minlength=np.shape(exit_probs)[1]).tolist(),
  }


# ---------------------------------------------------------------------------
# Storage with the run.


def path(run: str) -> str:
  """``<run>/early_exit.json``."""
  return io_utils.join(run, FILENAME)


def save(run: str, thresholds, profile, step_macs,
         budget_gflops: Optional[float], expected_gflops_train: float,
         weights: final_weights.FinalWeights, criterion: str = MAX_PROB,
         **extra) -> dict:
  """Writes ``<run>/early_exit.json`` atomically.

  Args:
    run: run directory (local or ``s3://``).
    thresholds: float [E] fitted thresholds.
    profile: float [E] the exit profile they were fitted to.
    step_macs: float [E] MACs each exit step adds, the costs were computed
      with.
    budget_gflops: the target budget (None when the profile was given).
    expected_gflops_train: the profile's expected GFLOPs per video (on the
      training videos the thresholds were fitted on).
    weights: the weights the thresholds were fitted on (recorded: their
      checkpoint, stage and content digest).
    criterion: what the thresholds compare with (``MAX_PROB``,
      ``MAX_LOGIT``).
    **extra: further JSON-serialisable fields (ratio q, patch choice, ...).

  Returns:
    The dict written.

  Raises:
    ValueError: thresholds, profile and step_macs differ in length.
  """
  thresholds = np.asarray(thresholds, dtype=np.float64)
  step_macs = check_step_macs(step_macs)
  if not len(thresholds) == len(profile) == len(step_macs):
    raise ValueError(f"{len(thresholds)} thresholds, {len(profile)} profile "
                     f"fractions and {len(step_macs)} step costs: need one "
                     "of each per exit step")
  record = {
      "thresholds": [float(x) for x in thresholds],
      "profile": [float(x) for x in profile],
      "exit_step_macs": [float(x) for x in step_macs],
      "budget_gflops": None if budget_gflops is None else float(budget_gflops),
      "expected_gflops_train": float(expected_gflops_train),
      "criterion": criterion,
      "rule": RULES[criterion],
      **weights.provenance(),
      **extra,
  }
  io_utils.write_json(path(run), record)
  return record


def load(run: str) -> Optional[dict]:
  """The whole ``early_exit.json`` of a run, or None if it has none.

  Files written before exit steps had costs of their own (V1 runs: one
  ``per_frame_macs`` for every frame) get the equivalent
  ``exit_step_macs``.
  """
  p = path(run)
  if not io_utils.exists(p):
    return None
  record = io_utils.read_json(p)
  if "exit_step_macs" not in record and "per_frame_macs" in record:
    record["exit_step_macs"] = ([float(record["per_frame_macs"])]
                                * len(record["thresholds"]))
  return record


def load_criterion(run: str) -> str:
  """The criterion of the run's thresholds (``MAX_PROB`` for older files).
  """
  record = load(run)
  return (record or {}).get("criterion", MAX_PROB)


def refit_command(run: str) -> str:
  """The command that fits a run's thresholds anew."""
  return (f"adafocus-calibrate-exit --run={run} --budget_gflops=<G> (or "
          "--profile=geometric:<q>)")


def check_fitted_on(run: str, record: dict,
                    weights: final_weights.FinalWeights) -> None:
  """Refuses thresholds fitted on other weights than ``weights``.

  Args:
    run: the run directory.
    record: its ``early_exit.json`` (``load``).
    weights: the weights they would be applied to.

  Raises:
    StaleThresholdsError: the recorded digest differs, or there is none
      (a file written before thresholds recorded it); the message says how
      to refit.
  """
  fitted = record.get("weights_digest")
  if fitted == weights.digest:
    return
  if fitted is None:
    why = ("records no digest of the weights it was fitted on (it was "
           "written by an older adafocus-tf), so it may not fit the run's "
           f"final weights ({weights.model_checkpoint})")
  else:
    why = (f"was fitted on other weights ({record.get('checkpoint')}) than "
           f"the run's final ones now ({weights.model_checkpoint}): a stage "
           "was retrained or a checkpoint replaced since")
  raise StaleThresholdsError(f"{path(run)} {why}; refit the thresholds: "
                             f"{refit_command(run)}")


def load_thresholds(run: str, weights: final_weights.FinalWeights
                    ) -> Optional[np.ndarray]:
  """The run's fitted thresholds, if they fit its final weights.

  Args:
    run: run directory (local or ``s3://``).
    weights: the weights they will be applied to
      (``final_weights.resolve``).

  Returns:
    float32 [E] thresholds for ``exit_steps``, or None when
    ``launch/calibrate_exit.py`` has not been run on it.

  Raises:
    StaleThresholdsError: see ``check_fitted_on``.
  """
  record = load(run)
  if record is None:
    return None
  check_fitted_on(run, record, weights)
  return np.asarray(record["thresholds"], dtype=np.float32)

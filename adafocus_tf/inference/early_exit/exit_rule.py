"""The early-exit rule: each exit step's confidence, and where videos exit.

A recognizer predicts after each of its E *exit steps*
(``Recognizer.exit_probs``): the V1 model after every frame (E = T), the
two-stream model after the glance and the policy (step 0, the glance's
prediction) and after the focus stream (step 1, the full prediction). A
video stops after exit step e (0-based) as soon as its confidence there,
the largest class probability of the prediction after step e, reaches a
threshold eta_e; the last step always exits.

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
(``MAX_LOGIT``; ``MAX_PROB`` is the rule above). A model family declares
its criterion (``ModelFamily.exit_criterion``); ``criterion_of`` says
which a config uses and ``never`` dispatches on it; everything else here
(``exit_steps``, ``exit_predictions``) is shared. Costs and profiles are
in ``exit_cost``, fitting in ``threshold_fit``, the stored thresholds in
``threshold_file``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from adafocus_tf.families import model_family
from adafocus_tf.families import registry

# Confidences are probabilities, so a threshold of 2 is never reached.
NEVER = 2.0
RULE = ("exit after exit step e (0-based) when max class probability >= "
        "thresholds[e]; the last step always exits")
# The criteria: the largest class probability (V1, the two-stream models),
# or the largest raw logit (AdaFocusV2, docs/METHOD.md V2-7).
MAX_PROB = model_family.MAX_PROB
MAX_LOGIT = model_family.MAX_LOGIT
# Logit thresholds nobody reaches and everybody reaches: finite, so that
# JSON and float32 keep them (the official code's +-infinity).
NEVER_LOGIT = float(np.finfo(np.float32).max)
ALWAYS_LOGIT = -NEVER_LOGIT
RULES = {
    MAX_PROB: RULE,
    MAX_LOGIT: ("exit after exit step e (0-based) when the largest raw logit "
                ">= thresholds[e]; the last step always exits"),
}


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
  """The exit criterion of the config's model family: ``MAX_LOGIT`` for
  AdaFocusV2 (``v2``), ``MAX_PROB`` for the others (V2-TSM too: the
  official code ships no exit for it, and its two exit steps are the
  two-stream model's).

  Args:
    cfg: an ``ExperimentConfig``.
  """
  return registry.of(cfg).exit_criterion


def step_confidences(recognizer, outputs):
  """float32 [B, E]: each exit step's confidence, from whole-clip outputs.

  The largest class probability of ``recognizer.exit_probs(outputs)``, or,
  for a ``MAX_LOGIT`` recognizer, the largest logit of each exit step
  (``exit_logits``).

  Args:
    recognizer: an ``inference.recognizer.Recognizer``.
    outputs: its whole-clip ``Outputs``.
  """
  if criterion_of(recognizer.cfg) == MAX_LOGIT:
    return tf.reduce_max(tf.cast(recognizer.exit_logits(outputs), tf.float32),
                         axis=-1)
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

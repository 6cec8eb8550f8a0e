"""Per-step rewards of the patch policy and their returns (METHOD.md sec. 2).

conf_t is the classifier's probability of the true class after frame t,
``softmax(logits_t)[label]`` (for multi-label videos: the probability mass
on the labels, weighted as in training, i.e. their mean).

  ``random`` (default): conf_t with the policy's patch minus conf_t with a
      uniformly random patch, both scored from the same classifier state;
      the state then advances along the policy's patch only.
  ``prev``: conf_t - conf_{t-1}, with conf_{-1} = 0 (as the reference
      implementation), so r_0 = conf_0 and the rewards telescope to conf_T-1.
  ``conf``: conf_t.

Returns are discounted over the T steps of a video (one episode) and then
normalised by their mean and standard deviation over every step of every
video of the batch; the normalisation's cross-replica part lives in
``agent.py``, these functions are the per-device maths.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

REWARDS = ("random", "prev", "conf")
# The reference implementation's epsilon: (R - mean) / (std + 1e-5).
RETURN_NORM_EPSILON = 1e-5


def check_kind(kind: str) -> None:
  """Raises ValueError unless ``kind`` is one of ``REWARDS``."""
  if kind not in REWARDS:
    raise ValueError(f"unknown reward {kind!r}; choose one of {REWARDS}")


def confidence(logits, targets):
  """Probability of the true class(es): [B, C] logits, [B, C] targets -> [B].

  Args:
    logits: classifier logits of one step.
    targets: the training target distribution (one-hot for a single label).
  """
  probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
  return tf.reduce_sum(probs * tf.cast(targets, tf.float32), axis=-1)


def step_rewards(kind: str, conf, baseline_conf: Optional[tf.Tensor] = None):
  """Per-step rewards [B, T] from confidences [B, T].

  Args:
    kind: one of ``REWARDS``.
    conf: conf_t with the policy's patches.
    baseline_conf: conf_t with random patches from the same classifier
      states; required for ``random``.

  Returns:
    float32 [B, T] rewards.
  """
  check_kind(kind)
  conf = tf.cast(conf, tf.float32)
  if kind == "conf":
    return conf
  if kind == "prev":
    previous = tf.pad(conf[:, :-1], [[0, 0], [1, 0]])
    return conf - previous
  if baseline_conf is None:
    raise ValueError("the 'random' reward needs the random patches' "
                     "confidences")
  return conf - tf.cast(baseline_conf, tf.float32)


def discounted_returns(rewards, discount: float):
  """R_t = sum_{k >= t} discount^(k - t) r_k within each video.

  Args:
    rewards: [B, T] rewards of complete episodes (one video each).
    discount: the per-step discount.

  Returns:
    [B, T] returns.
  """
  rewards = tf.cast(rewards, tf.float32)
  # A reverse cumulative sum in time-major order.
  returns = tf.scan(lambda acc, r: r + discount * acc,
                    tf.transpose(rewards), reverse=True,
                    initializer=tf.zeros_like(rewards[:, 0]))
  return tf.transpose(returns)


def normalize(values, mean, std, epsilon: float = RETURN_NORM_EPSILON):
  """(values - mean) / (std + epsilon).

  Args:
    values: any float tensor.
    mean: scalar mean.
    std: scalar standard deviation.
    epsilon: added to ``std``.
  """
  return (values - mean) / (std + epsilon)


def normalize_returns(returns, epsilon: float = RETURN_NORM_EPSILON):
  """Returns normalised over all their entries (one device's batch).

  The standard deviation is the unbiased one (n - 1), as PyTorch's
  ``Tensor.std`` in the reference implementation.

  Args:
    returns: [B, T] returns.
    epsilon: added to the standard deviation.

  Returns:
    [B, T] normalised returns.
  """
  n = tf.cast(tf.size(returns), tf.float32)
  mean = tf.reduce_mean(returns)
  var = tf.reduce_sum(tf.square(returns - mean)) / tf.maximum(n - 1.0, 1.0)
  return normalize(returns, mean, tf.sqrt(var), epsilon)

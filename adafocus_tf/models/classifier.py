"""What the classifiers share: dropout and losses (docs/METHOD.md 2).

The recurrent ("gru", ``recurrent_classifier.py``) and per-frame ("fc",
``linear_classifier.py``) classifiers of the V1 model expose the same
interface:

  ``call(features [B, T, D], seeds, training) -> logits [B, T, C]``
  ``step_probs(logits) -> [B, T, C]``: the prediction after each frame
  ``loss(logits, targets) -> [B]``: per-video training loss
  ``step(x [B, D], state) -> (logits [B, C], state)``: one frame at a time

``LogitMeanClassifier`` (``logit_mean_classifier.py``) makes one prediction
per video, returned with a time axis of 1 so that ``step_probs`` and
``loss`` read the same way. ``classifier_factory.build_classifier`` builds
a V1 classifier by name.

Dropout draws its mask statelessly from each video's seed, so a step is
reproducible whatever replica runs it and after a resume.
"""
import tensorflow as tf


def per_video_dropout(x, rate: float, seeds):
  """Inverted dropout whose mask for video i depends only on ``seeds[i]``.

  Args:
    x: [B, ...] activations.
    rate: fraction dropped.
    seeds: int [B, 2] stateless seeds.

  Returns:
    ``x`` with dropped entries zeroed and the rest scaled by 1 / (1 - rate).
  """
  if rate <= 0.0:
    return x
  shape = tf.shape(x)[1:]
  keep = tf.map_fn(
      lambda s: tf.random.stateless_uniform(shape, s) >= rate, seeds,
      fn_output_signature=tf.bool)
  return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def soft_cross_entropy(logits, targets):
  """Cross-entropy against a distribution over classes, per leading index."""
  return -tf.reduce_sum(tf.cast(targets, logits.dtype)
                        * tf.nn.log_softmax(logits), axis=-1)


def per_step_loss(logits, targets):
  """[B]: cross-entropy of every step's logits [B, T, C], averaged over steps.

  Args:
    logits: [B, T, C].
    targets: [B, C] target distributions, the same at every step.
  """
  t = tf.shape(logits)[1]
  tiled = tf.repeat(targets[:, None, :], t, axis=1)
  return tf.reduce_mean(soft_cross_entropy(logits, tiled), axis=1)

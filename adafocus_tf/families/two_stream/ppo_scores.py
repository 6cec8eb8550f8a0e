"""The two-stream family's patch scores for the PPO reward (stage 2)."""
import tensorflow as tf


def scores_along(recognizer, batch, glance, offsets, alternative=None):
  """The logits of the policy's patch, and of an alternative patch, per
  video (the PPO reward's; see ``one_stream/ppo_scores.py``).

  Args:
    recognizer: the stage's ``TwoStreamRecognizer``.
    batch: the pipeline batch.
    glance: ``recognizer.glance(batch)``.
    offsets: [B, 1, 2] the policy's patch.
    alternative: [B, 1, 2] another patch, or None.

  Returns:
    (logits [B, 1, C], alternative logits [B, 1, C] or None).
  """
  model, frames = recognizer.model, batch["focus_frames"]
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

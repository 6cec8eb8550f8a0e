"""The one-stream family's patch scores for the PPO reward (stage 2)."""
import tensorflow as tf

from adafocus_tf.models import adafocus
from adafocus_tf.models import patches


def scores_along(recognizer, batch, glance, offsets, alternative=None):
  """Logits at each policy step, and of an alternative patch at each step.

  What the PPO reward needs (``training.ppo``): the logits after each of
  the policy's K steps with its patches, and, at every step, the logits
  the model would give with the alternative patch instead, from the same
  state (the alternative does not advance it). All patches go through
  the focus net in one call.

  Args:
    recognizer: the stage's ``OneStreamRecognizer``.
    batch: the pipeline batch.
    glance: ``recognizer.glance(batch)``.
    offsets: [B, K, 2] the policy's patches.
    alternative: [B, K, 2] other patches (e.g. random ones), or None.

  Returns:
    (logits [B, K, C], alternative logits [B, K, C] or None).
  """
  model, frames = recognizer.model, batch["frames"]
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
    x = adafocus.fuse(glance.pooled[:, t], feats[0, :, t])
    if alternative is None:
      step, state = model.classifier.step(x, state)
    else:
      # Both inputs from the same state in one batched step; only the
      # policy's patch advances it.
      xr = adafocus.fuse(glance.pooled[:, t], feats[1, :, t])
      both, states = model.classifier.step(tf.concat([x, xr], 0),
                                           tf.concat([state, state], 0))
      step, state = both[:b], states[:b]
      other.append(both[b:])
    logits.append(step)
  return (tf.stack(logits, 1),
          tf.stack(other, 1) if alternative is not None else None)

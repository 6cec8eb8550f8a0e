"""Where the patches go: random, centre, oracle (object box) or a policy."""
import tensorflow as tf

from adafocus_tf.models import patches

CHOICES = ("random", "centre", "oracle", "policy")
# Offset added to a video's seed for its random patches, so that they are
# independent of its dropout mask (which uses the seed itself).
_RANDOM_PATCH_STREAM = 1


def random_patch_seeds(seeds):
  return seeds + tf.constant([_RANDOM_PATCH_STREAM, 0], seeds.dtype)


def choose_offsets(kind: str, batch, frame_size: int, patch_size: int,
                   policy_fn=None):
  """Patch offsets [B, T, 2] for a batch of the input pipeline.

  Args:
    kind: one of ``CHOICES``.
    batch: pipeline batch (``frames``, ``seed``, and ``boxes`` for oracle).
    frame_size: S.
    patch_size: P.
    policy_fn: for ``policy``: a function batch -> offsets [B, T, 2].

  Raises:
    ValueError: an unknown kind, or oracle without boxes, or policy without
      a policy.
  """
  frames = batch["frames"]
  shape = tf.shape(frames)[:2]
  if kind == "random":
    return patches.random_offsets(random_patch_seeds(batch["seed"]),
                                  frames.shape[1], frame_size, patch_size)
  if kind == "centre":
    return patches.centre_offsets(shape, frame_size, patch_size)
  if kind == "oracle":
    if "boxes" not in batch:
      raise ValueError("oracle patches need object boxes in the records "
                       "(only the synthetic dataset has them)")
    return patches.box_offsets(batch["boxes"], frame_size, patch_size)
  if kind == "policy":
    if policy_fn is None:
      raise ValueError("policy patches need a trained policy (stage 2)")
    return policy_fn(batch)
  raise ValueError(f"unknown patch choice {kind!r}; choose one of {CHOICES}")

"""The baseline patch choices: random, centre and oracle (the object box).

The learned policy's patches come from ``policy.greedy`` through the
recognizer (``Recognizer.offsets``), which also serves these. Offsets are
[B, K, 2] top-left pixels: K = T (one patch per frame, V1) or K = 1
(``model.patch_per_video``: one location per video, cropped from every
focus frame); ``patch_steps`` gives K.
"""
import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.models import patches

BASELINES = ("random", "centre", "oracle")
POLICY = "policy"
CHOICES = BASELINES + (POLICY,)
# Offset added to a video's seed for its random patches, so that they are
# independent of its dropout mask (which uses the seed itself).
_RANDOM_PATCH_STREAM = 1
# Batch keys that give a step's random patches explicitly instead of
# drawing them from the videos' seeds (``training.one_step``): integer
# top-left offsets [B, K, 2] of random patches (V1), and positions
# [B, K, 2] in [0, 1] of V2's random branch; both chronological.
RANDOM_OFFSETS = "random_offsets"
RANDOM_POSITIONS = "random_positions"


def random_patch_seeds(seeds):
  return seeds + tf.constant([_RANDOM_PATCH_STREAM, 0], seeds.dtype)


def patch_steps(cfg: ExperimentConfig) -> int:
  """K, the patch locations per video: 1 per video, or 1 per focus frame."""
  return registry.of(cfg).patch_steps(cfg)


def patch_stream(cfg: ExperimentConfig) -> str:
  """The input key whose frames the patches are cropped from."""
  return registry.of(cfg).patch_stream(cfg)


def choose_offsets(kind: str, batch, cfg: ExperimentConfig):
  """Baseline patch offsets [B, K, 2] (K = ``patch_steps(cfg)``) of a batch.

  Args:
    kind: one of ``BASELINES``. ``oracle`` centres the patch on the object
      box of each frame, or, with one patch per video, on the mean of the
      frames' box centres.
    batch: pipeline batch (``seed``, and ``boxes`` [B, T, 4] for oracle;
      ``RANDOM_OFFSETS`` gives random patches instead of the seeds).
    cfg: the run's config (frame and patch sizes, ``patch_per_video``).

  Raises:
    ValueError: an unknown kind, or oracle without boxes.
  """
  frame_size, patch_size = cfg.data.frame_size, cfg.model.patch_size
  steps = patch_steps(cfg)
  if kind == "random":
    if RANDOM_OFFSETS in batch:
      return batch[RANDOM_OFFSETS]
    return patches.random_offsets(random_patch_seeds(batch["seed"]), steps,
                                  frame_size, patch_size)
  if kind == "centre":
    return patches.centre_offsets(tf.stack([tf.shape(batch["seed"])[0], steps]),
                                  frame_size, patch_size)
  if kind == "oracle":
    if "boxes" not in batch:
      raise ValueError("oracle patches need object boxes in the records "
                       "(only the synthetic dataset has them)")
    boxes = batch["boxes"]
    if steps == 1:
      # The mean box's centre is the mean of the boxes' centres.
      boxes = tf.reduce_mean(boxes, axis=1, keepdims=True)
    return patches.box_offsets(boxes, frame_size, patch_size)
  raise ValueError(f"unknown patch choice {kind!r}; choose one of "
                   f"{BASELINES} (or the recognizer's {POLICY!r})")

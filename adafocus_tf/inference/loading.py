"""A ``Recognizer`` from checkpoints, or around a model in memory.

  recognizer = loading.from_checkpoints(cfg, model_checkpoint, policy_ckpt)
  outputs = recognizer(batch)          # logits, probs, offsets, glance probs

Loading builds the family's model and, with a stage-2 checkpoint, the
policy's actor network: no PPO agent, critic or optimiser. A trained run
is opened with ``runs.trained_run.TrainedRun`` (its final checkpoints,
``runs.final_weights``), whose ``recognizer()`` comes here.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.models import batchnorm_folding
from adafocus_tf.models import factory
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.runs import checkpoints


def build(cfg: ExperimentConfig, model, policy=None,
          policy_glance=None) -> recognizer_lib.Recognizer:
  """A recognizer around a model (and policy) already in memory.

  Args:
    cfg: the model's config.
    model: a model of ``factory.build_model(cfg)``.
    policy: a ``greedy.GreedyPolicy``, or None.
    policy_glance: see ``Recognizer``.
  """
  return registry.of(cfg).build_recognizer(cfg, model, policy, policy_glance)


def _same_weights(a, b) -> bool:
  va, vb = a.variables, b.variables
  return len(va) == len(vb) and all(
      x.shape == y.shape and np.array_equal(x.numpy(), y.numpy())
      for x, y in zip(va, vb))


def from_checkpoints(cfg: ExperimentConfig, model_checkpoint: str,
                     policy_checkpoint: Optional[str] = None,
                     fold_batch_norms: bool = True
                     ) -> recognizer_lib.Recognizer:
  """A recognizer from a config and checkpoint prefixes.

  Args:
    cfg: the run's config.
    model_checkpoint: a stage checkpoint whose ``model`` to restore.
    policy_checkpoint: a stage-2 checkpoint (its ``actor``, and the glance
      net the policy was trained with), or None: no policy.
    fold_batch_norms: run the glance and focus backbones with each batch
      norm folded into its convolution (``batchnorm_folding``): the same
      outputs to float round-off, 5-15% faster on a CPU.

  Returns:
    The recognizer. Its policy reads the final model's glance maps when the
    two checkpoints' glance nets are equal (the normal case: later stages
    keep the glance frozen), else its own glance net's.
  """
  model = factory.build_model(cfg)
  model.build_all()
  checkpoints.restore_model(model, model_checkpoint)
  # Imported here: tf-agents loads only when a Keras recognizer is built
  # (a predictor on a cached ready form builds none).
  from adafocus_tf.policy import greedy  # pylint: disable=g-import-not-at-top
  policy = greedy.load(cfg, model.glance.map_shape, policy_checkpoint)
  policy_glance = None
  if policy is not None and policy_checkpoint != model_checkpoint:
    other = glance_lib.from_config(cfg)
    s = cfg.data.frame_size
    other(tf.zeros([cfg.data.glance_frames or 1, s, s, 3]))
    checkpoints.restore_glance(other, policy_checkpoint)
    if not _same_weights(other, model.glance):
      policy_glance = other
  if fold_batch_norms:
    for net in (model, policy_glance):
      if net is not None:
        batchnorm_folding.fold_at_inference(net)
  return build(cfg, model, policy, policy_glance)

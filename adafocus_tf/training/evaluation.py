"""Evaluation of a model on a prepared split with a given patch choice.

Besides the patch choices of ``patch_choice.CHOICES``, ``glance_only``
scores the glance network alone with its head: for the V1 model the
per-frame softmax averaged over the frames seen so far, for the two-stream
model the softmax of its mean glance logits (its own prediction rule
without the focus term).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
import tqdm

from adafocus_tf import metrics
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.training import patch_choice

GLANCE_ONLY = "glance_only"


def batch_step(model, cfg: ExperimentConfig, choice: str, policy_fn=None):
  """The per-batch evaluation function: batch -> (step_probs, offsets).

  Args:
    model: a model of ``models.factory.build_model``.
    cfg: the run's config.
    choice: patch choice (``patch_choice.CHOICES``) or ``glance_only``.
    policy_fn: the policy for ``choice == "policy"``.
  """
  def step(batch):
    if choice == GLANCE_ONLY:
      # No patch: zero offsets keep the output's shape of the other choices.
      offsets = tf.zeros([tf.shape(batch["seed"])[0],
                          patch_choice.patch_steps(cfg), 2], tf.int32)
      return model.glance_only_probs(batch), offsets
    offsets = patch_choice.choose_offsets(choice, batch, cfg, policy_fn)
    logits = model.batch_logits(batch, offsets, training=False)
    return model.classifier.step_probs(logits), offsets
  return step


def predict_split(model, cfg: ExperimentConfig, split_dir: str, choice: str,
                  policy_fn=None, max_videos: int = 0, progress: bool = True,
                  strategy: Optional[tf.distribute.Strategy] = None):
  """Runs the model over a split (evaluation transform, one pass).

  Args:
    model: a model of ``models.factory.build_model`` (built under
      ``strategy.scope()`` when a strategy is given).
    cfg: the run's config.
    split_dir: prepared split to read.
    choice: patch choice (``patch_choice.CHOICES``) or ``glance_only``.
    policy_fn: the policy for ``choice == "policy"``.
    max_videos: stop after this many videos (0: all).
    progress: show a progress bar.
    strategy: a single-process strategy; each batch of
      ``cfg.eval_batch_size`` videos is split across its replicas and the
      results gathered back in order. None: one device.

  Returns:
    dict with ``step_probs`` [N, T, C] (T = 1 for the two-stream model),
    ``labels`` [N], ``multi_hot`` [N, C], ``offsets`` [N, K, 2]
    (``patch_choice.patch_steps``) and ``video_ids`` [N].
  """
  ds = pipeline.make_dataset(cfg.data, split_dir, training=False,
                             batch_size=cfg.eval_batch_size, seed=cfg.seed,
                             with_boxes=choice == "oracle")
  step = batch_step(model, cfg, choice, policy_fn)
  if strategy is None or strategy.num_replicas_in_sync == 1:
    run_step = tf.function(step)
    local = lambda x: [x]
  else:
    run_step = tf.function(lambda batch: strategy.run(step, args=(batch,)))
    local = strategy.experimental_local_results
    ds = strategy.experimental_distribute_dataset(ds)

  out = {"step_probs": [], "labels": [], "multi_hot": [], "offsets": [],
         "video_ids": []}
  seen = 0
  bar = tqdm.tqdm(desc=f"eval ({choice} patches)", unit="video",
                  disable=not progress, leave=False)
  for batch in ds:
    probs, offsets = run_step(batch)
    out["step_probs"] += [x.numpy() for x in local(probs)]
    out["offsets"] += [x.numpy() for x in local(offsets)]
    for key, field in (("labels", "label"), ("multi_hot", "multi_hot"),
                       ("video_ids", "video_id")):
      out[key] += [x.numpy() for x in local(batch[field])]
    count = sum(len(x) for x in local(batch["label"]))
    seen += count
    bar.update(count)
    if max_videos and seen >= max_videos:
      break
  bar.close()
  result = {k: np.concatenate(v) for k, v in out.items()}
  if max_videos:
    result = {k: v[:max_videos] for k, v in result.items()}
  return result


def summarize(pred: dict, multi_label: bool) -> dict:
  """Top-1, top-5, mAP and per-step mAP of ``predict_split``'s output."""
  labels = pred["multi_hot"] if multi_label else pred["labels"]
  return metrics.summarize(pred["step_probs"][:, -1], pred["step_probs"],
                           labels)

"""A recognizer over a prepared split: the predictions evaluation scores.

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

from adafocus_tf.data import pipeline
from adafocus_tf.data import record_integrity
from adafocus_tf.evaluation import metrics
from adafocus_tf.evaluation import views
from adafocus_tf.inference import clips
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.inference.early_exit import exit_rule

GLANCE_ONLY = recognizer_lib.GLANCE_ONLY


def views_read(cfg, choice: str, training_transform: bool = False) -> int:
  """Views of each video ``predict_split`` reads: ``data.test_crops``, or
  one for the oracle (its boxes are one view's) and the training
  transform."""
  return (1 if training_transform or choice == "oracle"
          else cfg.data.test_crops)


def gflops_per_video(recognizer, cost: dict, choice: str) -> float:
  """What ``predict_split`` runs per video: the choice's GFLOPs
  (``Recognizer.choice_gflops`` of ``flops.video_macs``' ``cost``) times
  the views read."""
  return (recognizer.choice_gflops(cost, choice)
          * views_read(recognizer.cfg, choice))


def predict_split(recognizer, split_dir: str, choice: str,
                  max_videos: int = 0, progress: bool = True,
                  strategy: Optional[tf.distribute.Strategy] = None,
                  training_transform: bool = False):
  """Runs a recognizer over a split (evaluation transform, one pass).

  Args:
    recognizer: an ``inference.recognizer.Recognizer`` (its model built
      under ``strategy.scope()`` when a strategy is given).
    split_dir: prepared split to read.
    choice: patch choice (``policy`` or ``patch_choice.CHOICES``) or
      ``glance_only``.
    max_videos: stop after this many videos (0: all).
    progress: show a progress bar.
    strategy: a single-process strategy; each batch of
      ``cfg.eval_batch_size`` videos is split across its replicas and the
      results gathered back in order. None: one device.
    training_transform: read the split as training does (random segment
      offsets, augmentation, shuffled, the last partial batch dropped; the
      model still in inference mode): how AdaFocusV2 fits its early-exit
      thresholds (docs/METHOD.md V2-7).

  Each video is read in ``data.test_crops`` views (evaluation transform;
  the oracle and ``training_transform`` read one), its prediction from
  the mean of their logits (``views.video_outputs``).

  Returns:
    dict with ``step_probs`` [N, S, C] (S = T, or 1 for the two-stream
    model), ``exit_probs`` [N, E, C] (the prediction at each early-exit
    step, ``Recognizer.exit_probs``), ``exit_confidences`` [N, E] (what
    early-exit thresholds compare with, ``exit_rule.step_confidences``),
    ``labels`` [N], ``multi_hot`` [N, C], ``offsets`` [N, K, D]
    (``patch_choice.patch_steps``; D the recognizer's ``offset_dims``) and
    ``video_ids`` [N]. With
    ``data.skip_bad_records`` the corrupt records skipped are logged.

  Raises:
    errors.RefusedError: a shard of the split is corrupt (without
      ``data.skip_bad_records``).
  """
  cfg = recognizer.cfg
  num_views = views_read(cfg, choice, training_transform)
  frame_keys = clips.frame_streams(cfg)

  def step(batch):
    if num_views == 1:
      out = recognizer(batch, choice)
    else:
      out = views.video_outputs(recognizer, recognizer(
          views.per_view_batch(batch, frame_keys, num_views), choice),
                                num_views)
    return (out.probs, recognizer.exit_probs(out),
            exit_rule.step_confidences(recognizer, out), out.offsets)

  ds = pipeline.make_dataset(cfg.data, split_dir,
                             training=training_transform,
                             batch_size=cfg.eval_batch_size, seed=cfg.seed,
                             with_boxes=choice == "oracle", views=num_views)
  if strategy is None or strategy.num_replicas_in_sync == 1:
    run_step = tf.function(step)
    local = lambda x: [x]
  else:
    run_step = tf.function(lambda batch: strategy.run(step, args=(batch,)))
    local = strategy.experimental_local_results
    ds = strategy.experimental_distribute_dataset(ds)

  out = {"step_probs": [], "exit_probs": [], "exit_confidences": [],
         "labels": [], "multi_hot": [], "offsets": [], "video_ids": []}
  seen = 0
  bar = tqdm.tqdm(desc=f"eval ({recognizer.choice_label(choice)})",
                  unit="video",
                  disable=not progress, leave=False)
  with record_integrity.refuse_corrupt_shards():
    for batch in ds:
      probs, exit_probs, conf, offsets = run_step(batch)
      out["step_probs"] += [x.numpy() for x in local(probs)]
      out["exit_probs"] += [x.numpy() for x in local(exit_probs)]
      out["exit_confidences"] += [x.numpy() for x in local(conf)]
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
  record_integrity.log_skipped(f"the evaluation of {split_dir}")
  result = {k: np.concatenate(v) for k, v in out.items()}
  if max_videos:
    result = {k: v[:max_videos] for k, v in result.items()}
  return result


def summarize(pred: dict, multi_label: bool) -> dict:
  """Top-1, top-5, mAP and per-step mAP of ``predict_split``'s output."""
  labels = pred["multi_hot"] if multi_label else pred["labels"]
  return metrics.summarize(pred["step_probs"][:, -1], pred["step_probs"],
                           labels)

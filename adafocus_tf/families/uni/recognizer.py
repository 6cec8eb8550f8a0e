"""Uni-AdaFocus's recognizer, ActivityNet family (``models/uni``).

Its "offsets" are focus plans (``models/uni/focus_plan.py``): the selected
candidate frames and a region in each. Exit steps (docs/METHOD.md V2-11.5):
(0) the glance frames and the classifier's glance steps, no policy and no
focus work; (k = 1..K) the k-th selected frame through the focus net (the
policies run at step 1). The exit rule compares raw logits, as V2's.
"""
import functools

import numpy as np
import tensorflow as tf

from adafocus_tf.families.uni import cost as cost_lib
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.policy import patch_choice

POLICY = patch_choice.POLICY


def uniform_indices(num_candidates: int, num_focus: int):
  """K candidates spread evenly (each the middle of its 1/K of the video)."""
  return ((np.arange(num_focus) + 0.5) * num_candidates
          / num_focus).astype(np.int32)


def random_indices(seeds, num_candidates: int, num_focus: int):
  """K distinct candidates per video, uniformly at random, increasing."""
  def one(seed):
    keys = tf.random.stateless_uniform([num_candidates], seed)
    return tf.sort(tf.math.top_k(keys, num_focus).indices)
  return tf.map_fn(one, seeds, fn_output_signature=tf.int32)


class UniRecognizer(stepwise_recognizer.StepwiseRecognizer):
  """Uni-AdaFocus: the model carries both policies."""

  offset_dims = focus_plan.PLAN_DIMS
  chooses_frames = True
  plan_noun = "frames and regions"
  # The official sweep of exit profiles (docs/METHOD.md V2-11.5).
  exit_ratios = tuple(round(0.05 * i, 2) for i in range(1, 20))

  def __init__(self, cfg, model):
    super().__init__(cfg, model, model.spatial_policy)

  # -- plans ------------------------------------------------------------------
  def policy_offsets(self, glance):
    return self.model.policy_plan(glance.maps, glance.pooled)

  def offsets(self, batch, glance, choice=None):
    """The focus plan [B, K, 5] of a choice: ``policy`` (learned frames and
    regions), ``random`` (random frames, random regions of side P),
    ``centre`` (uniform frames, the centred P x P region) or ``oracle``
    (uniform frames, P x P on the object box)."""
    choice = choice or self.default_choice()
    if choice == POLICY:
      return self.policy_offsets(glance)
    model = self.model
    n, k = model.num_candidates, model.num_focus
    b = tf.shape(glance.pooled)[0]
    if choice == "random":
      seeds = patch_choice.random_patch_seeds(batch["seed"])
      idx = random_indices(seeds, n, k)
      positions = tf.map_fn(lambda s: tf.random.stateless_uniform([k, 2], s),
                            seeds + tf.constant([7, 0], seeds.dtype),
                            fn_output_signature=tf.float32)
    else:
      idx = tf.tile(uniform_indices(n, k)[None], [b, 1])
      positions = tf.fill([b, k, 2], 0.5)
    side = float(model.patch_size)
    regions = tf.concat([positions * (model.frame_size - side),
                         tf.fill([b, k, 2], side)], -1)
    if choice == "oracle":
      offsets = patch_choice.choose_offsets("oracle", batch, self.cfg)
      corner = tf.cast(tf.gather(offsets, idx, batch_dims=1), tf.float32)
      regions = tf.concat([corner, regions[..., 2:]], -1)
    elif choice not in ("random", "centre"):
      raise ValueError(f"unknown patch choice {choice!r}; choose one of "
                       f"{patch_choice.CHOICES}")
    return focus_plan.make(idx, regions)

  def patch_pictures(self, batch, offsets):
    return focus_plan.pictures(batch[self.family.patch_stream(self.cfg)],
                               offsets, batch.get("boxes"),
                               self.cfg.data.frame_size)

  def patch_regions(self, offsets):
    plan = tf.cast(offsets, tf.float32)
    return focus_plan.indices(plan), focus_plan.regions(plan)

  def glance_frame_positions(self):
    return self.model.glance_indices(1)[0].numpy()

  def patch_exit_steps(self):
    return np.arange(1, self.model.num_focus + 1)

  def choice_label(self, choice):
    return {POLICY: "learned frames and regions",
            "random": "random frames and regions",
            "centre": "uniform frames, centre region",
            "oracle": "uniform frames, region on the object box",
            recognizer_lib.GLANCE_ONLY: "glance frames only (exit step 0)",
            }.get(choice, super().choice_label(choice))

  # -- whole clips ------------------------------------------------------------
  def logits(self, batch, glance, offsets, training=False, train_focus=None):
    return self.model.head_logits(glance.pooled, batch["frames"], offsets,
                                  batch.get("seed"), training=training,
                                  train_focus=train_focus)

  def glance_probs(self, glance):
    # The classifier's glance steps; the last holds through the focus steps.
    logits = self.model.classifier.glance_logits(
        self.model.classifier.glance_state(glance.pooled))
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    tail = tf.repeat(probs[:, -1:], self.model.num_focus, axis=1)
    return tf.concat([probs, tail], 1)

  @property
  def num_exit_steps(self) -> int:
    return self.model.num_focus + 1

  def exit_logits(self, outputs):
    return outputs.logits[:, self.model.num_glance - 1:]

  def exit_probs(self, outputs):
    return tf.nn.softmax(tf.cast(self.exit_logits(outputs), tf.float32), -1)

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    focus_step = cost_lib.classifier_steps(self.cfg, cost)[1]
    steps = np.full(self.num_exit_steps, float(cost["focus"] + focus_step))
    steps[0] = cost_lib.glance_exit_macs(self.cfg, cost)
    if choice == POLICY:
      steps[1] += cost["per_video"]["policy"]
    return steps

  # -- step by step (early exit) ------------------------------------------------
  def step_inputs(self, batch, e: int) -> dict:
    del e  # Every step may read any candidate.
    return {"frames": batch["frames"]}

  def initial_state(self, n: int):
    m = self.model
    maps_shape = m.glance.map_shape
    hidden = m.classifier.hidden
    return (tf.zeros([n, m.num_glance, *maps_shape]),
            tf.zeros([n, m.num_glance, maps_shape[-1]]),
            tf.zeros([n, m.num_focus, focus_plan.PLAN_DIMS]),
            tf.zeros([n, hidden]), tf.zeros([n, hidden]))

  def step_kind(self, e: int):
    return e

  def offset_slots(self, e: int, first: int, count: int):
    del first, count
    return [e - 1]

  def step_logits(self, inputs, state, e: int):
    """Exit step ``e``: float32 logits [n, C], this step's plan entry
    [n, 0 or 1, 5] and the state. Compiled once per step."""
    return self.compiled(("logits", e), functools.partial(
        self._step_logits, e=e))(inputs, state)

  def _step_logits(self, inputs, state, e):
    model, frames = self.model, inputs["frames"]
    maps, pooled, plan, glance_max, running = state
    cls = model.classifier
    if e == 0:
      maps, pooled = model.glance_features(frames)
      glance_run = cls.glance_state(pooled)
      glance_max = glance_run[:, -1]
      logits = cls.glance_heads[-1](glance_max)  # The last glance step's.
      return (tf.cast(logits, tf.float32),
              tf.zeros([tf.shape(frames)[0], 0, focus_plan.PLAN_DIMS]),
              (maps, pooled, plan, glance_max, running))
    if e == 1:
      plan = model.policy_plan(maps, pooled)
    step_plan = plan[:, e - 1:e]
    feats = model.focus_features(frames, step_plan)[:, 0]
    logits, running = cls.focus_step(feats, running, glance_max, e - 1)
    return (tf.cast(logits, tf.float32), step_plan,
            (maps, pooled, plan, glance_max, running))

  def _step(self, inputs, state, e_kind):
    logits, plan, state = self._step_logits(inputs, state, e_kind)
    return tf.nn.softmax(logits, axis=-1), plan, state

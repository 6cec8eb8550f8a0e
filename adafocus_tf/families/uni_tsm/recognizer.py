"""Uni-AdaFocus-TSM's recognizer (``models/uni/uni_tsm.py``).

Its "offsets" are focus plans [B, K, 5] as the ActivityNet family's
(``models/uni/focus_plan.py``): the selected candidates, each with the
video's one region. Its per-step logits are two: the glance-only exit
(the mean glance ``aux_head`` logits) and the prediction (glance ``head``
mean + focus ``head`` mean). Exit steps (docs/METHOD.md V2-11.5): (0) the
glance frames and the glance-only prediction, no policy; (1) both
policies and the focus net on the K patches. The exit rule compares raw
logits, as the official early-exit script's ``confidence``.
"""
import functools

import numpy as np
import tensorflow as tf

from adafocus_tf.families.uni import recognizer as uni_recognizer
from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.models import patches as patches_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops

POLICY = patch_choice.POLICY


class UniTSMRecognizer(stepwise_recognizer.StepwiseRecognizer):
  """Uni-AdaFocus-TSM: two frame streams; the model carries both policies.
  """

  offset_dims = focus_plan.PLAN_DIMS
  chooses_frames = True
  plan_noun = "frames and regions"
  # The official sweep of exit profiles (p_e proportional to q^e over the
  # two exits): q = 0.01, ..., 3.99 and 40, 400, 4000, 40000
  # (ops/early_exit_uni_adafocus_tsm.py).
  exit_ratios = (tuple(round(0.01 * i, 2) for i in range(1, 400))
                 + (40.0, 400.0, 4000.0, 40000.0))

  def __init__(self, cfg, model):
    super().__init__(cfg, model, model.spatial_policy)

  # -- plans ------------------------------------------------------------------
  def policy_offsets(self, glance):
    return self.model.policy_plan(glance.maps, glance.pooled)

  def offsets(self, batch, glance, choice=None):
    """The focus plan [B, K, 5] of a choice: ``policy`` (learned frames and
    region), ``random`` (K random candidates, a random P x P region),
    ``centre`` (evenly spread candidates, the centred P x P region) or
    ``oracle`` (evenly spread, P x P centred on the mean of the chosen
    frames' object boxes). One region per video, repeated for its K
    frames."""
    choice = choice or self.default_choice()
    if choice == POLICY:
      return self.policy_offsets(glance)
    model = self.model
    n, k = model.num_candidates, model.num_focus
    b = tf.shape(glance.pooled)[0]
    side = float(model.patch_size)
    span = model.frame_size - side
    if choice == "random":
      seeds = patch_choice.random_patch_seeds(batch["seed"])
      idx = uni_recognizer.random_indices(seeds, n, k)
      corner = tf.map_fn(lambda s: tf.random.stateless_uniform([2], s),
                         seeds + tf.constant([7, 0], seeds.dtype),
                         fn_output_signature=tf.float32) * span
    elif choice in ("centre", "oracle"):
      idx = tf.tile(uni_recognizer.uniform_indices(n, k)[None], [b, 1])
      corner = tf.fill([b, 2], 0.5 * span)
      if choice == "oracle":
        if "boxes" not in batch:
          raise ValueError("oracle patches need object boxes in the records "
                           "(only the synthetic dataset has them)")
        boxes = tf.reduce_mean(tf.gather(batch["boxes"], idx, batch_dims=1),
                               axis=1)
        corner = tf.cast(patches_lib.box_offsets(
            boxes, model.frame_size, model.patch_size), tf.float32)
    else:
      raise ValueError(f"unknown patch choice {choice!r}; choose one of "
                       f"{patch_choice.CHOICES}")
    region = tf.concat([corner, tf.fill([b, 2], side)], -1)
    return focus_plan.make(idx, tf.repeat(region[:, None], k, axis=1))

  def patch_pictures(self, batch, offsets):
    return focus_plan.pictures(batch[self.family.patch_stream(self.cfg)],
                               offsets, batch.get("boxes"),
                               self.cfg.data.frame_size)

  def patch_regions(self, offsets):
    plan = tf.cast(offsets, tf.float32)
    return focus_plan.indices(plan), focus_plan.regions(plan)

  def patch_exit_steps(self):
    # Every selected frame is read at exit step 1.
    return np.ones(self.model.num_focus, np.int64)

  def choice_label(self, choice):
    return {POLICY: "learned frames and region",
            "random": "random frames and region",
            "centre": "uniform frames, centre region",
            "oracle": "uniform frames, region on the object box",
            }.get(choice, super().choice_label(choice))

  # -- whole clips ------------------------------------------------------------
  def logits(self, batch, glance, offsets, training=False, train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's."""
    return self.model.head_logits(glance.pooled, batch["focus_frames"],
                                  offsets, batch.get("seed"),
                                  training=training, train_focus=train_focus)

  def step_probs(self, logits):
    # No classifier of its own: each step's softmax.
    return tf.nn.softmax(logits, axis=-1)

  def glance_probs(self, glance):
    logits = self.model.glance_only_logits(glance.pooled)
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, None]

  @property
  def num_exit_steps(self) -> int:
    return 2

  def exit_logits(self, outputs):
    return outputs.logits

  def exit_probs(self, outputs):
    return tf.nn.softmax(tf.cast(outputs.logits, tf.float32), axis=-1)

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    # Step 0: the glance net and the glance-only head on every glance
    # frame; step 1: the rest (both policies for the policy's plan, the
    # focus net on K patches and the prediction's heads).
    glance = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
    total = round(flops.choice_gflops(cost, choice) * flops.G)
    return np.array([glance, total - glance], np.float64)

  # -- step by step (early exit) ----------------------------------------------
  def step_inputs(self, batch, e: int) -> dict:
    key = "glance_frames" if e == 0 else "focus_frames"
    return {key: batch[key]}

  def initial_state(self, n: int):
    m = self.model
    maps_shape = m.glance.map_shape
    return (tf.zeros([n, m.num_glance, *maps_shape]),
            tf.zeros([n, m.num_glance, maps_shape[-1]]))

  def step_logits(self, inputs, state, e: int):
    """Exit step ``e``: float32 logits [n, C], this step's plan entries
    [n, 0 or K, 5] and the state. Compiled once per step."""
    return self.compiled(("logits", e), functools.partial(
        self._step_logits, e=e))(inputs, state)

  def _step_logits(self, inputs, state, e):
    model = self.model
    if e == 0:
      maps, pooled = model.glance_features(inputs["glance_frames"])
      logits = model.glance_only_logits(pooled)
      return (tf.cast(logits, tf.float32),
              tf.zeros([tf.shape(pooled)[0], 0, focus_plan.PLAN_DIMS]),
              (maps, pooled))
    maps, pooled = state
    plan = model.policy_plan(maps, pooled)
    logits = (self._glance_summand(maps, pooled)
              + model.focus_logits(inputs["focus_frames"], plan))
    return tf.cast(logits, tf.float32), plan, state

  def _glance_summand(self, maps, pooled):
    """The prediction's glance logits [n, C] at exit step 1.

    Args:
      maps: the glance maps (the state's first part).
      pooled: [n, G, C] the pooled per-frame glance features.

    Returns:
      The TSM glance ``head``'s mean over the per-frame features.
    """
    del maps  # The TSM head reads the pooled per-frame features.
    return self.model.glance_logits(pooled)

  def _step(self, inputs, state, e_kind):
    logits, plan, state = self._step_logits(inputs, state, e_kind)
    return tf.nn.softmax(logits, axis=-1), plan, state

"""The V1 one-stream family's recognizer: a patch per frame, a prediction
after every frame (``models/adafocus.py``), step by step for early exit.
AdaFocusV2's recognizer derives from it."""
import numpy as np
import tensorflow as tf

from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.models import patches
from adafocus_tf.profiling import flops


class OneStreamRecognizer(stepwise_recognizer.StepwiseRecognizer):
  """The V1 model: a patch per frame, a prediction after every frame."""

  def policy_offsets(self, glance):
    return self.policy.offsets(glance.policy_maps)

  def logits(self, batch, glance, offsets, training=False,
             train_focus=None):
    return self.model.head_logits(glance.pooled, batch["frames"], offsets,
                                  batch.get("seed"), training=training,
                                  train_focus=train_focus)

  def glance_probs(self, glance):
    return self.model.glance_only_probs(glance.pooled)

  @property
  def num_exit_steps(self) -> int:
    return self.cfg.data.num_frames

  def exit_probs(self, outputs):
    return outputs.probs

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    # MACs are whole counts: rounding undoes the G round trip, so that a
    # step costs exactly the frame's MACs.
    per_frame = (round(flops.choice_gflops(cost, choice) * flops.G)
                 / cost["num_frames"])
    return np.full(self.num_exit_steps, per_frame)

  def step_inputs(self, batch, e: int) -> dict:
    return {"frames": batch["frames"][:, e]}

  def initial_state(self, n: int):
    policy_state = (self.policy.initial_state(n) if self.policy is not None
                    else ())
    return (policy_state, self.model.classifier.initial_state(n))

  def step_kind(self, e: int):
    # The first step starts the policy's episode; the rest share a trace.
    return e == 0

  def _step(self, inputs, state, e_kind):
    first = e_kind
    model = self.model
    frames_t = inputs["frames"]
    policy_state, cls_state = state
    maps, pooled = model.glance(frames_t, training=False)
    if self.policy is not None:
      offsets_t, policy_state = self.policy.step(
          self._policy_maps(frames_t, maps), first, policy_state)
    else:
      offsets_t = patches.centre_offsets(tf.shape(frames_t)[:1],
                                         model.frame_size, model.patch_size)
    logits, cls_state = model.step_logits(pooled, frames_t, offsets_t,
                                          cls_state)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    return probs, offsets_t[:, None], (policy_state, cls_state)

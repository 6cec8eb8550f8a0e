"""The two-stream family's recognizer: two frame streams, one patch per
video (``models/two_stream.py``), in two exit steps (the glance and the
policy, then the focus net). V2-TSM's recognizer derives from it."""
import numpy as np
import tensorflow as tf

from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.models import patches
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops


class TwoStreamRecognizer(stepwise_recognizer.StepwiseRecognizer):
  """The Something-Something model: two frame streams, one patch per video."""

  def policy_offsets(self, glance):
    return self.policy.offsets(frame_stack.stack_frames(glance.policy_maps))

  def logits(self, batch, glance, offsets, training=False,
             train_focus=None):
    return self.model.head_logits(glance.pooled, batch["focus_frames"],
                                  offsets, batch.get("seed"),
                                  training=training, train_focus=train_focus)

  def glance_probs(self, glance):
    return self.model.glance_only_probs(glance.pooled)

  @property
  def num_exit_steps(self) -> int:
    return 2

  def exit_probs(self, outputs):
    return tf.concat([outputs.glance_probs, outputs.probs], 1)

  def exit_step_macs(self, cost: dict, choice: str) -> np.ndarray:
    # Step 0: the glance stream with its head, and the policy; step 1: the
    # focus stream on the patch with its head.
    glance = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
    if choice == patch_choice.POLICY:
      glance += cost["per_video"]["policy"]
    total = round(flops.choice_gflops(cost, choice) * flops.G)
    return np.array([glance, total - glance], np.float64)

  def step_inputs(self, batch, e: int) -> dict:
    return {k: batch[k] for k in (("glance_frames",) if e == 0
                                  else ("focus_frames",))}

  def initial_state(self, n: int):
    return (tf.zeros([n, self.cfg.data.num_classes]),
            tf.zeros([n, 1, 2], tf.int32))

  def _step(self, inputs, state, e_kind):
    model = self.model
    if e_kind == 0:
      g = self.glance(inputs)
      offsets = (self.policy_offsets(g) if self.policy is not None else
                 patches.centre_offsets(tf.stack([tf.shape(g.pooled)[0], 1]),
                                        model.frame_size, model.patch_size))
      glance_logits = tf.cast(model.glance_logits(g.pooled), tf.float32)
      # The glance-only prediction, as ``exit_probs`` has it: V2-TSM's is
      # its auxiliary head's (trained alone), not the summand
      # ``glance_logits`` the full prediction adds at step 1.
      return (tf.cast(self.glance_probs(g)[:, 0], tf.float32), offsets,
              (glance_logits, offsets))
    glance_logits, offsets = state
    focus_logits = model.focus_logits(inputs["focus_frames"], offsets)
    logits = model.combine(glance_logits, focus_logits)[:, 0]
    return (tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1),
            offsets[:, :0], state)

"""AdaFocusV2's recognizer (``models/adafocus_v2.py``): the model carries
its position policy; patches at real-valued offsets; exit steps read the
frames in ``model.frame_order`` and give raw logits for V2's exit rule
(docs/METHOD.md V2-7)."""
import functools

import tensorflow as tf

from adafocus_tf.families.one_stream import recognizer as one_stream_recognizer
from adafocus_tf.models import patches


class V2Recognizer(one_stream_recognizer.OneStreamRecognizer):
  """AdaFocusV2 (``models.adafocus_v2``): its policy is the model's own.

  Patches sit at real-valued offsets (bilinear sampling); the model reads
  the frames in ``model.frame_order``, so exit step e reads frame
  ``model.order[e]``. Per-step outputs are in reading order, offsets
  chronological (``models.adafocus_v2``).
  """

  def __init__(self, cfg, model):
    super().__init__(cfg, model, model.policy)

  def policy_offsets(self, glance):
    return self.model.policy_offsets(glance.maps)

  def step_inputs(self, batch, e: int) -> dict:
    return {"frames": batch["frames"][:, int(self.model.order[e])]}

  def initial_state(self, n: int):
    return (self.policy.initial_state(n),
            self.model.classifier.initial_state(n))

  def step_kind(self, e: int):
    return e  # Each step has its own classifier head.

  def offset_slots(self, e: int, first: int, count: int):
    # Step e reads frame ``order[e]``: its patch is that frame's.
    del first, count
    return [int(self.model.order[e])]

  def step_logits(self, inputs, state, e: int):
    """Exit step ``e`` as ``step`` does, giving float32 logits [n, C].

    V2's early exit reads the step's raw logits (docs/METHOD.md V2-7);
    ``step`` gives their softmax. Compiled once per step kind.
    """
    kind = self.step_kind(e)
    return self.compiled(("logits", kind), functools.partial(
        self._step_logits, e_kind=kind))(inputs, state)

  def _step_logits(self, inputs, state, e_kind):
    model, frame = self.model, inputs["frames"]
    policy_state, cls_state = state
    maps, pooled = model.glance(frame, training=False)
    positions, policy_state = self.policy.step(maps, policy_state)
    offsets = patches.continuous_offsets(positions, model.frame_size,
                                         model.patch_size)
    logits, cls_state = model.step_logits(pooled, frame, offsets, cls_state,
                                          e_kind)
    return (tf.cast(logits, tf.float32), offsets[:, None],
            (policy_state, cls_state))

  def _step(self, inputs, state, e_kind):
    logits, offsets, state = self._step_logits(inputs, state, e_kind)
    return tf.nn.softmax(logits, axis=-1), offsets, state

"""V2-TSM's recognizer (``models/v2_two_stream.py``): the two-stream
recognizer with the model's own position policy, one real-valued patch per
video."""
import tensorflow as tf

from adafocus_tf.families.two_stream import recognizer as two_stream_recognizer


class V2TwoStreamRecognizer(two_stream_recognizer.TwoStreamRecognizer):
  """V2-TSM (``models.v2_two_stream``): one real-valued patch per video."""

  def __init__(self, cfg, model):
    super().__init__(cfg, model, model.policy)

  def policy_offsets(self, glance):
    return self.model.policy_offsets(glance.maps)

  def step_probs(self, logits):
    # No classifier of its own: the prediction is the summed logits'.
    return tf.nn.softmax(logits, axis=-1)

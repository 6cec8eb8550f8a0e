"""The dtype of the layers whose outputs feed a softmax or a loss."""
import tensorflow as tf


def output_dtype() -> str:
  """float32 under mixed precision (float16 logits lose too much), else the
  global Keras policy's own (float32, or float64 when a model is built in
  float64 to compare training with the official code, tests/convert)."""
  policy = tf.keras.mixed_precision.global_policy()
  return "float64" if policy.compute_dtype == "float64" else "float32"

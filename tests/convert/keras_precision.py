"""Keras computing in one dtype for a while: the parity tests' float64
runs of converted files."""
import contextlib

import adafocus_tf  # pylint: disable=unused-import
import tensorflow as tf


@contextlib.contextmanager
def global_dtype(dtype: str):
  """Keras' global policy and floatx ``dtype`` inside (every layer built
  there computes in it), as they were after.

  Args:
    dtype: ``float64`` or ``float32``.

  Yields:
    None.
  """
  saved = (tf.keras.mixed_precision.global_policy(), tf.keras.backend.floatx())
  tf.keras.mixed_precision.set_global_policy(dtype)
  tf.keras.backend.set_floatx(dtype)
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(saved[0])
    tf.keras.backend.set_floatx(saved[1])

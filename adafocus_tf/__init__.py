"""adafocus-tf: AdaFocus adaptive-focus video recognition in TensorFlow/Keras.

Importing the package selects Keras 2 (tf-keras) for ``tf.keras`` before
TensorFlow is imported: tensorflow-probability and tf-agents need it, and the
whole project uses one Keras.
"""
import os
import sys

from adafocus_tf import native_logging

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter hides our own messages.
native_logging.choose(sys.argv, os.environ)

__version__ = "0.1.0"

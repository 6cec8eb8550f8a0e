"""Which parts of a model compute in full precision under mixed precision.

Under a mixed Keras policy (``mixed_float16``, ``mixed_bfloat16``) a layer
built with no ``dtype`` computes in half precision. The official
Uni-AdaFocus code keeps some parts in float32 whatever its autocast does
(docs/METHOD.md V2-11.4): the layers whose outputs feed a softmax or a loss,
the policies, and, in its semi-AMP scripts (``main_semiAMP.py``,
``uni_adafocus_semiAMP.py``; the X3D family's ``uni_adafocus_X3D.py``),
everything after the backbones. Here that is a property of how a part is
built or where a backbone's output is read:

  * ``output_dtype``: the dtype to give a single such layer;
  * ``full_precision``: every layer built inside it (a whole policy or
    classifier) computes in, and keeps its variables in, ``output_dtype``;
    a layer or model so built casts its first input to it (Keras' autocast);
  * ``to_full_precision``: a backbone's outputs cast to ``output_dtype``
    where a semi-AMP model reads them (the official ``.float()``);
  * ``needs_loss_scaling``: whether the training step scales its loss.

Without a mixed policy all three change nothing: a float32 model stays
float32 bit for bit, and a float64 one (built to compare training with the
official code, tests/convert) stays float64.
"""
import contextlib

import tensorflow as tf


def output_dtype() -> str:
  """float32 under mixed precision (float16 logits lose too much), else the
  global Keras policy's own (float32, or float64 when a model is built in
  float64 to compare training with the official code, tests/convert)."""
  policy = tf.keras.mixed_precision.global_policy()
  return "float64" if policy.compute_dtype == "float64" else "float32"


@contextlib.contextmanager
def full_precision():
  """Layers built inside compute and keep their variables in
  ``output_dtype()``, whatever the global policy; it is restored on exit.

  Wrap the body of a model's ``__init__`` (``super().__init__`` included,
  so that the model itself autocasts its first input), e.g.::

    def __init__(self, hidden, name="temporal_policy"):
      with precision.full_precision():
        super().__init__(name=name)
        self.conv1 = tf.keras.layers.Conv1D(hidden, 3)
  """
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(output_dtype())
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(saved)


def needs_loss_scaling() -> bool:
  """Whether a step's gradients need dynamic loss scaling: the global
  policy computes in float16 (whose small gradients underflow; the
  official GradScaler). A config's ``mixed_precision`` takes effect only
  as that policy (``cli/train.py`` sets it), so a run whose precision fell
  back to float32, or a float32 or float64 step of a mixed config's run
  (tests/convert), trains unscaled."""
  return tf.keras.mixed_precision.global_policy().compute_dtype == "float16"


def to_full_precision(tensors):
  """A backbone's outputs (a tensor or a nest of them) in ``output_dtype()``
  (unchanged when already so).

  Args:
    tensors: floating tensors, e.g. a glance net's (maps, pooled).
  """
  dtype = output_dtype()
  return tf.nest.map_structure(lambda t: tf.cast(t, dtype), tensors)

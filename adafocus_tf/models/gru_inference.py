"""A GRU over a whole known sequence at inference, input projection hoisted.

Keras' GRU (and tf-agents' ``DynamicUnroll`` of a ``GRUCell``) multiply
each step's input by the input kernel inside the recurrence: at batch 1
that is T matrix-vector products, each reading the whole [D, 3H] kernel
from memory. Only the recurrent product depends on the previous step, so
here the input product runs once over all T steps (one matrix product) and
the loop keeps the recurrent one. The ``actnet`` classifier's GRU then
takes 12.5 ms instead of 43 ms per video at batch 1 (docs/BENCHMARKS.md,
issue 15); the outputs equal the cell's to float round-off. Training keeps
the Keras layers, so its numbers do not move.
"""
from typing import Optional, Tuple

import tensorflow as tf


def applies(inputs, training) -> bool:
  """Whether ``gru_sequence`` should replace the layer's loop on ``inputs``.

  At inference over more than one step of a static count: a single step has
  no product to hoist, so it keeps the layer's own call (which the MAC
  counter, ``profiling.mac_counter``, counts through the cell's call).

  Args:
    inputs: [B, T, ...] the sequence.
    training: the Keras training flag.
  """
  return not training and (inputs.shape[1] or 0) > 1


def gru_sequence(cell: tf.keras.layers.GRUCell, inputs, initial_state,
                 reset: Optional[tf.Tensor] = None
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Runs a built ``reset_after`` GRU cell over a sequence of static length.

  Args:
    cell: a built ``tf.keras.layers.GRUCell`` with ``reset_after=True`` and
      a bias (the PyTorch formulation every GRU here uses), no dropout.
    inputs: [B, T, D], T known when traced (the loop is unrolled).
    initial_state: [B, H] the state before the first step.
    reset: optional bool [B, T]: the state is set to zeros before each
      step where True (tf-agents' episode starts).

  Returns:
    (outputs [B, T, H], final state [B, H]), in the cell's compute dtype.

  Raises:
    ValueError: a cell of another formulation, or an unknown T.
  """
  if not (cell.reset_after and cell.use_bias):
    raise ValueError(f"{cell.name}: only reset_after GRU cells with a bias")
  steps = inputs.shape[1]
  if steps is None:
    raise ValueError("gru_sequence needs a static number of steps")
  dtype = cell.compute_dtype
  kernel, recurrent_kernel, bias = (
      tf.cast(v, dtype) for v in (cell.kernel, cell.recurrent_kernel,
                                  cell.bias))
  input_bias, recurrent_bias = tf.unstack(bias)
  projected = tf.einsum("btd,dk->btk", tf.cast(inputs, dtype),
                        kernel) + input_bias
  h = tf.cast(initial_state, dtype)
  outputs = []
  for t in range(steps):
    if reset is not None:
      h = tf.where(reset[:, t, None], tf.zeros_like(h), h)
    x_z, x_r, x_h = tf.split(projected[:, t], 3, axis=-1)
    inner = tf.matmul(h, recurrent_kernel) + recurrent_bias
    h_z, h_r, h_h = tf.split(inner, 3, axis=-1)
    z = cell.recurrent_activation(x_z + h_z)
    r = cell.recurrent_activation(x_r + h_r)
    h = z * h + (1 - z) * cell.activation(x_h + r * h_h)
    outputs.append(h)
  return tf.stack(outputs, axis=1), h

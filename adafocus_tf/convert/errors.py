"""The converter's errors: each names the PyTorch key and the Keras variable.

A conversion is all or nothing: a checkpoint tensor that no Keras variable
takes, a Keras variable that no tensor fills, or a tensor whose shape does
not fit its variable stops it, so that no weight is silently dropped or
left at its random initial value.
"""


class ConversionError(ValueError):
  """A checkpoint does not map onto the model (base class)."""


class MissingKeyError(ConversionError):
  """A Keras variable's PyTorch tensor is not in the checkpoint."""


class UnusedKeyError(ConversionError):
  """Checkpoint tensors that no Keras variable takes."""


class ShapeMismatchError(ConversionError):
  """A tensor's shape does not fit the Keras variable it maps to."""


class UnfilledVariableError(ConversionError):
  """Keras variables that no checkpoint tensor filled."""


class ArchitectureError(ConversionError):
  """The checkpoint's architecture does not fit the requested config."""

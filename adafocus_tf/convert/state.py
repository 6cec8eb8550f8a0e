"""Tracked access to a PyTorch state dict, and tracked filling of Keras weights.

``TensorSource`` hands out a state dict's tensors by key and remembers which
it handed out; ``finish`` then names every tensor that nobody took.
``Filler`` assigns arrays to Keras variables with a shape check and
remembers which it filled; ``check_filled`` names every variable left out.
Errors name both sides: the PyTorch key (with the checkpoint entry it came
from) and the Keras variable.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional

import numpy as np

from adafocus_tf.convert import errors


class TensorSource:
  """A state dict whose tensors are taken by key, with bookkeeping.

  Args:
    tensors: key -> numpy array (a PyTorch ``state_dict`` read from file).
    origin: where the dict came from, for messages (e.g.
      ``"128s3.pth.tar['focuser']"``).
    ignored_suffixes: key endings that are consumed without a home, because
      they hold no weight (``num_batches_tracked``: a batch-norm step
      counter that only matters when its momentum is None).
  """

  def __init__(self, tensors: Dict[str, np.ndarray], origin: str,
               ignored_suffixes: Iterable[str] = ("num_batches_tracked",)):
    bad = [k for k, v in tensors.items() if not isinstance(v, np.ndarray)]
    if bad:
      raise errors.ConversionError(
          f"{origin}: entries {bad[:5]} are not tensors (a state dict holds "
          "only tensors)")
    self.tensors = dict(tensors)
    self.origin = origin
    self.used = {k for k in self.tensors
                 if any(k.endswith(s) for s in ignored_suffixes)}

  def describe(self, key: str) -> str:
    return f"{self.origin}[{key!r}]"

  def has(self, key: str) -> bool:
    return key in self.tensors

  def keys(self) -> Iterator[str]:
    return iter(self.tensors)

  def take(self, key: str, for_what: str) -> np.ndarray:
    """The tensor under ``key``, marked used.

    Args:
      key: the PyTorch state-dict key.
      for_what: the Keras variable it fills (named in the error).

    Raises:
      MissingKeyError: no such key.
    """
    if key not in self.tensors:
      near = sorted(k for k in self.tensors
                    if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0])[:4]
      hint = f"; keys of that module: {near}" if near else ""
      raise errors.MissingKeyError(
          f"{self.describe(key)} is missing: the Keras variable {for_what} "
          f"has no tensor{hint}")
    self.used.add(key)
    return self.tensors[key]

  def skip(self, key: str) -> None:
    """Marks ``key`` consumed without a home (a known duplicate)."""
    self.used.add(key)

  def unused(self):
    return sorted(set(self.tensors) - self.used)

  def finish(self) -> None:
    """Raises ``UnusedKeyError`` naming every tensor nobody took."""
    left = self.unused()
    if left:
      shown = ", ".join(repr(k) for k in left[:12])
      more = f" and {len(left) - 12} more" if len(left) > 12 else ""
      raise errors.UnusedKeyError(
          f"{len(left)} tensor(s) of {self.origin} have no Keras variable: "
          f"{shown}{more}")


def variable_name(variable) -> str:
  """A Keras variable's full name without the ``:0`` suffix."""
  return variable.name.split(":")[0]


class Filler:
  """Assigns arrays to Keras variables, checking shapes, and records them."""

  def __init__(self):
    self.filled: Dict[int, str] = {}

  def assign(self, variable, value: np.ndarray, source: str) -> None:
    """``variable.assign(value)`` after a shape check.

    Args:
      variable: a Keras (tf) variable.
      value: the converted array (already in Keras layout).
      source: the PyTorch side, for messages (``origin['key']``).

    Raises:
      ShapeMismatchError: the shapes differ.
      ConversionError: the variable was already filled (two tensors for
        one home).
    """
    want = tuple(variable.shape)
    if tuple(value.shape) != want:
      raise errors.ShapeMismatchError(
          f"{source} has shape {tuple(value.shape)} after conversion, but "
          f"the Keras variable {variable_name(variable)} has shape {want}")
    key = id(variable)
    if key in self.filled:
      raise errors.ConversionError(
          f"{variable_name(variable)} is filled twice: by "
          f"{self.filled[key]} and by {source}")
    variable.assign(value.astype(variable.dtype.as_numpy_dtype))
    self.filled[key] = source

  def check_filled(self, variables, what: Optional[str] = None) -> None:
    """Raises ``UnfilledVariableError`` naming variables not filled.

    Args:
      variables: the Keras variables that must all have been filled.
      what: the model part, for the message.
    """
    left = [variable_name(v) for v in variables if id(v) not in self.filled]
    if left:
      shown = ", ".join(left[:12])
      more = f" and {len(left) - 12} more" if len(left) > 12 else ""
      raise errors.UnfilledVariableError(
          f"{len(left)} Keras variable(s) of {what or 'the model'} got no "
          f"tensor from the checkpoint: {shown}{more}")

"""Opens a ``.pth``/``.pth.tar`` file: tensors become numpy arrays.

With PyTorch importable, ``torch.load(path, map_location="cpu",
weights_only=True)`` reads it (PyTorch's own safe loader: no code named by
the file runs); a file it refuses (its allowlist has no numpy scalars,
which training checkpoints may hold as accuracies) goes to the numpy-only
reader. Without PyTorch (the normal case: PyTorch cannot be installed
beside this project's TensorFlow stack, see docs/CONVERT.md) the numpy-only
reader ``torch_pickle`` reads it with the same allowlist idea. Either way
the result is the saved object with numpy arrays for tensors. This module
imports neither TensorFlow nor PyTorch at import time.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from adafocus_tf.convert import torch_pickle
from adafocus_tf.convert.torch_pickle import CheckpointFormatError

# Which reader ``read`` uses: "auto" (torch when importable), "torch" or
# "numpy". The parity tests set it to compare the two.
READER_ENV = "ADAFOCUS_CHECKPOINT_READER"


def _torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def _to_numpy(obj):
  """Recursively replaces torch tensors by numpy arrays."""
  import torch  # pylint: disable=g-import-not-at-top
  if isinstance(obj, torch.Tensor):
    t = obj.detach().cpu()
    if t.dtype == torch.bfloat16:
      t = t.float()
    return t.numpy().copy()
  if isinstance(obj, dict):
    return type(obj)((k, _to_numpy(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_to_numpy(v) for v in obj)
  return obj


def _read_with_torch(path: str):
  import torch  # pylint: disable=g-import-not-at-top
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # A crafted file can make torch.load raise almost anything (an
    # UnpicklingError, a RuntimeError of a bad stride, a zip error, a
    # MemoryError): all are the one-line refusal, not a traceback.
    raise CheckpointFormatError(
        f"{path} is not a PyTorch checkpoint that a weights-only load "
        f"accepts: {type(e).__name__}: {torch_pickle.one_line(e)}") from None
  return _to_numpy(obj)


def read(path: str, reader: str = ""):
  """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.

  Args:
    path: a local checkpoint file.
    reader: "torch", "numpy" or "" for the ``ADAFOCUS_CHECKPOINT_READER``
      environment variable, else "auto" (torch when importable).

  Raises:
    FileNotFoundError: no such file.
    CheckpointFormatError: not a PyTorch checkpoint.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint {path} not found")
  reader = reader or os.environ.get(READER_ENV, "auto")
  if reader not in ("auto", "torch", "numpy"):
    raise ValueError(f"reader {reader!r}: use auto, torch or numpy")
  if reader == "torch":
    return _read_with_torch(path)
  if reader == "auto" and _torch_available():
    try:
      return _read_with_torch(path)
    except CheckpointFormatError:
      # torch's weights-only unpickler refuses any global off its list,
      # numpy scalars included (the reference saves accuracies that may be
      # numpy floats); the numpy reader keeps such objects as inert
      # placeholders, and says so if the file is no checkpoint at all.
      pass
  return torch_pickle.load(path)


def is_tensor(value) -> bool:
  return isinstance(value, np.ndarray)

"""Reads PyTorch checkpoint files into numpy without PyTorch, safely.

Why not ``torch.load``: torch 2.x needs ``typing-extensions>=4.10`` and
tf-agents 0.19 pins ``typing-extensions==4.5.0``, so PyTorch cannot be
installed beside this project's stack (see docs/CONVERT.md). This module
reads the two formats ``torch.save`` writes, and, like
``torch.load(weights_only=True)``, never runs code named by the file:

  * the zip format (PyTorch >= 1.6, what the AdaFocus and TSM checkpoints
    use): ``<root>/data.pkl`` is a pickle whose tensors point, by persistent
    id, at raw storages ``<root>/data/<key>``;
  * the legacy format (``_use_new_zipfile_serialization=False``): a magic
    number, a protocol number and system info pickled one after another,
    then the object pickle, the list of storage keys, and each storage's
    bytes (an 8-byte element count, then the data).

The unpickler resolves only an allowlist of globals (tensor and storage
rebuilders, ``OrderedDict``, numpy scalars); any other global becomes an
inert ``Opaque`` placeholder that records its name and arguments and runs
nothing (optimizer or scaler state of a training checkpoint may hold such
objects; the converter reads only weights and rejects a placeholder where
it needs a tensor).
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, Callable, Dict, Tuple

import numpy as np

# torch.save's legacy format starts with this pickled integer.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

# Storage classes (``torch.FloatStorage`` ...) -> numpy dtype. bfloat16 has
# no numpy dtype: its 16 bits are widened to float32 (exact).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointFormatError(ValueError):
  """The file is not a PyTorch checkpoint this reader can read."""


class Opaque:
  """An object of a class the reader does not allow: inert data only.

  Args:
    name: the pickled global's ``module.qualname``.
    args: the arguments the pickle would have called it with.
  """

  def __init__(self, name: str, args: Tuple = ()):
    self.name = name
    self.args = args
    self.state = None

  def __setstate__(self, state):
    # BUILD on an instance: keep the state, call nothing.
    self.state = state

  def __repr__(self):
    return f"Opaque({self.name})"


class _OpaqueClass:
  """Stands in for a disallowed global; calling it makes an ``Opaque``."""

  def __init__(self, name: str):
    self.name = name

  def __call__(self, *args, **kwargs):
    del kwargs
    return Opaque(self.name, args)


class _Storage:
  """A raw storage: its bytes, read lazily, and its element dtype."""

  def __init__(self, dtype, read: Callable[[], bytes], little_endian: bool):
    self.dtype = dtype
    self._read = read
    self._little = little_endian
    self._array = None

  def array(self) -> np.ndarray:
    """The storage as a flat numpy array (bfloat16 widened to float32)."""
    if self._array is None:
      data = self._read()
      if self.dtype == "bfloat16":
        raw = np.frombuffer(data, dtype="<u2" if self._little else ">u2")
        arr = (raw.astype(np.uint32) << 16).view(np.float32)
      else:
        dt = np.dtype(self.dtype).newbyteorder("<" if self._little else ">")
        arr = np.frombuffer(data, dtype=dt).astype(self.dtype, copy=False)
      self._array = arr
    return self._array


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """``torch._utils._rebuild_tensor(_v2)``: a strided view, copied out."""
  del unused
  if not isinstance(storage, _Storage):
    raise CheckpointFormatError(f"a tensor refers to {storage!r}, not a "
                                "storage")
  flat = storage.array()
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if any(s == 0 for s in size):
    return np.zeros(size, flat.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= flat.size or storage_offset < 0:
    raise CheckpointFormatError(
        f"a tensor of size {size} and stride {stride} at offset "
        f"{storage_offset} overruns its storage of {flat.size} elements")
  view = np.lib.stride_tricks.as_strided(
      flat[storage_offset:], shape=size,
      strides=tuple(s * flat.itemsize for s in stride), writeable=False)
  return np.array(view)


def _rebuild_parameter(data, *unused):
  """``torch._utils._rebuild_parameter``: a parameter is its data."""
  del unused
  return data


def _rebuild_from_type(func, new_type, args, state):
  """``torch._tensor._rebuild_from_type_v2``: the tensor, without its type."""
  del new_type, state
  return func(*args)


def _numpy_scalar(dtype, data=None):
  """``numpy.core.multiarray.scalar``: a numpy scalar from its bytes."""
  if data is None:
    return dtype.type(0)
  if isinstance(data, str):
    data = data.encode("latin1")
  return np.frombuffer(data, dtype=dtype)[0]


def _codecs_encode(text, encoding="utf-8"):
  # numpy scalars pickled with protocol 2 pass their bytes through this.
  return text.encode(encoding)


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
}


class _Unpickler(pickle.Unpickler):
  """Resolves allowed globals, storages by persistent id, the rest inert.

  Args:
    file: the pickle stream.
    load_storage: (storage class name, key, location) -> ``_Storage``.
  """

  def __init__(self, file, load_storage):
    super().__init__(file, encoding="latin1")
    self._load_storage = load_storage

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      # A storage class: only ever a marker inside a persistent id.
      return ("storage_class", name)
    return _OpaqueClass(f"{module}.{name}")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise CheckpointFormatError(f"unexpected persistent id {pid!r}")
    storage_class = pid[1]
    if (not isinstance(storage_class, tuple)
        or storage_class[0] != "storage_class"):
      raise CheckpointFormatError(
          f"unsupported storage type {storage_class!r} (only typed storages "
          f"{sorted(_STORAGE_DTYPES)} are read)")
    return self._load_storage(storage_class[1], str(pid[2]), pid)


def _load_zip(path: str):
  """Reads the zip format (``<root>/data.pkl`` and ``<root>/data/<key>``)."""
  archive = zipfile.ZipFile(path)
  names = archive.namelist()
  pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
  if len(pkl) != 1:
    raise CheckpointFormatError(
        f"{path} is a zip archive but not a PyTorch checkpoint (no "
        "<name>/data.pkl record)")
  root = pkl[0].split("/")[0]
  little = True
  if f"{root}/byteorder" in names:
    little = archive.read(f"{root}/byteorder").decode().strip() != "big"
  storages = {}

  def load_storage(class_name, key, pid):
    del pid
    if key not in storages:
      member = f"{root}/data/{key}"
      if member not in names:
        raise CheckpointFormatError(f"{path}: storage {member} is missing")
      storages[key] = _Storage(_STORAGE_DTYPES[class_name],
                               lambda m=member: archive.read(m), little)
    return storages[key]

  with archive.open(pkl[0]) as f:
    obj = _Unpickler(io.BytesIO(f.read()), load_storage).load()
  # Storages read lazily need the archive open until every tensor exists;
  # the tensors were copied out during unpickling, so it can close now.
  archive.close()
  return obj


def _load_legacy(path: str):
  """Reads the legacy stream format (pickles, then raw storages)."""
  with open(path, "rb") as f:
    data = f.read()
  stream = io.BytesIO(data)

  def plain_load():
    return _Unpickler(stream, lambda *a: None).load()

  try:
    magic = plain_load()
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointFormatError(
        f"{path} is neither a zip archive nor a pickle stream: not a "
        f"PyTorch checkpoint ({type(e).__name__}: {e})") from None
  if magic != _LEGACY_MAGIC:
    raise CheckpointFormatError(
        f"{path} is a pickle but not one torch.save wrote (no PyTorch magic "
        "number; a .pth.tar must come from torch.save)")
  protocol = plain_load()
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointFormatError(f"{path}: unsupported legacy protocol "
                                f"{protocol!r}")
  sys_info = plain_load()
  little = not isinstance(sys_info, dict) or sys_info.get(
      "little_endian", True)
  # Storages are filled after the object pickle, so the tensors are built
  # from placeholders first and materialised once the bytes are known.
  pending = {}

  def load_storage(class_name, key, pid):
    if len(pid) > 5 and pid[5] is not None:
      raise CheckpointFormatError(f"{path}: storage views are not supported")
    if key not in pending:
      pending[key] = _Storage(_STORAGE_DTYPES[class_name],
                              lambda k=key: raw[k], little)
    return pending[key]

  raw: Dict[str, bytes] = {}
  deferred = []

  def rebuild_later(storage, offset, size, stride, *unused):
    del unused
    holder = [storage, offset, size, stride]
    deferred.append(holder)
    return holder

  # Tensors are rebuilt once the raw storages (after this pickle) are read.
  allowed_legacy = dict(_ALLOWED)
  allowed_legacy[("torch._utils", "_rebuild_tensor")] = rebuild_later
  allowed_legacy[("torch._utils", "_rebuild_tensor_v2")] = rebuild_later

  class _LegacyUnpickler(_Unpickler):

    def find_class(self, module, name):
      if (module, name) in allowed_legacy:
        return allowed_legacy[(module, name)]
      return super().find_class(module, name)

  obj = _LegacyUnpickler(stream, load_storage).load()
  keys = _Unpickler(stream, lambda *a: None).load()
  for key in keys:
    header = stream.read(8)
    if len(header) != 8:
      raise CheckpointFormatError(f"{path}: truncated storage {key}")
    (numel,) = struct.unpack("<q" if little else ">q", header)
    storage = pending.get(str(key))
    if storage is None:
      raise CheckpointFormatError(f"{path}: unknown storage {key}")
    itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(
        storage.dtype).itemsize
    raw[str(key)] = stream.read(numel * itemsize)
  return _materialise(obj, {id(h): _rebuild_tensor(*h) for h in deferred})


def _materialise(obj, tensors):
  """Replaces the legacy reader's tensor placeholders by arrays."""
  if isinstance(obj, list) and id(obj) in tensors:
    return tensors[id(obj)]
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialise(v, tensors)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, tensors) for v in obj)
  return obj


def load(path: str):
  """Loads a ``torch.save`` file with tensors as numpy arrays.

  Args:
    path: a local file written by ``torch.save`` (``.pth``, ``.pth.tar``).

  Returns:
    The saved object (dicts, lists, numbers, strings) with every tensor a
    numpy array and every object of a disallowed class an ``Opaque``.

  Raises:
    FileNotFoundError: no such file.
    CheckpointFormatError: the file is not a checkpoint this reader reads.
  """
  with open(path, "rb") as f:
    head = f.read(4)
  if not head:
    raise CheckpointFormatError(f"{path} is empty: not a PyTorch checkpoint")
  if zipfile.is_zipfile(path):
    try:
      return _load_zip(path)
    except (pickle.UnpicklingError, EOFError, KeyError, zipfile.BadZipFile,
            struct.error) as e:
      raise CheckpointFormatError(f"{path}: damaged PyTorch checkpoint "
                                  f"({type(e).__name__}: {e})") from None
  if head[:1] != b"\x80":
    raise CheckpointFormatError(
        f"{path} is not a PyTorch checkpoint (neither a zip archive nor a "
        "pickle; its first bytes are {!r})".format(head))
  try:
    return _load_legacy(path)
  except (pickle.UnpicklingError, EOFError, struct.error) as e:
    raise CheckpointFormatError(f"{path}: damaged PyTorch checkpoint "
                                f"({type(e).__name__}: {e})") from None

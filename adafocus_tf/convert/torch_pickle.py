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

The file is untrusted, so nothing in it is touched before it is checked:
every tensor's offset, size and stride must stay inside the elements its
storage declares (no negative strides), each zip record must hold exactly
the bytes its storage declares, a storage is read, with a bounded read,
only as far as its tensors reach, and all that a load decompresses and
allocates is capped by the file's size (``_Budget``). The pure-Python
unpickler is used: the C one allocates a memo array as large as any index
the pickle names. Any malformed file raises ``CheckpointFormatError`` with
a one-line message.
"""
from __future__ import annotations

import collections
import io
import math
import operator
import os
import pickle
import reprlib
import struct
import zipfile
from typing import Any, Callable, Dict, List, Tuple

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

# A load may decompress and allocate at most _EXPANSION times the file's
# size plus _SLACK_BYTES. torch.save stores each storage once, uncompressed,
# so a real checkpoint needs about twice its size (the bytes read, then the
# arrays); only a crafted file (a zip bomb, a zero stride with a huge size,
# many views of one storage) needs more.
_EXPANSION = 8
_SLACK_BYTES = 64 << 20
# numpy arrays have at most this many dimensions (NPY_MAXDIMS).
_MAX_DIMS = 32


class CheckpointFormatError(ValueError):
  """The file is not a PyTorch checkpoint this reader can read."""


class _ShortRepr(reprlib.Repr):
  """``reprlib`` with bytes clipped too: messages quote untrusted values."""

  def repr_bytes(self, value, level):
    del level
    text = repr(value[:self.maxstring])
    return text if len(value) <= self.maxstring else text + "..."


_REPR = _ShortRepr()
_REPR.maxstring = _REPR.maxother = 60


def one_line(text: str, limit: int = 300) -> str:
  """``text`` on one line (whitespace runs become one space), clipped.

  Args:
    text: a message, possibly multi-line (an exception's text).
    limit: the longest result, in characters.
  """
  text = " ".join(str(text).split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(value) -> str:
  """A short one-line repr of an untrusted value, for messages."""
  return one_line(_REPR.repr(value), 120)


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

  def __repr__(self):
    return f"OpaqueClass({self.name})"


class _Budget:
  """The bytes one load may still decompress and allocate.

  Args:
    file_size: the checkpoint file's size in bytes.
  """

  def __init__(self, file_size: int):
    self.file_size = file_size
    self.limit = _EXPANSION * file_size + _SLACK_BYTES
    self.spent = 0

  def spend(self, nbytes: int, what: str):
    """Counts ``nbytes`` more, refusing the file once past the limit.

    Args:
      nbytes: bytes about to be decompressed or allocated.
      what: what needs them, for the message.
    """
    if self.spent + nbytes > self.limit:
      raise CheckpointFormatError(
          f"{what} needs {nbytes} bytes, past the {self.limit} bytes a "
          f"checkpoint file of {self.file_size} bytes may expand to "
          "(torch.save stores each tensor once, uncompressed; a zip bomb or "
          "a crafted size or stride needs more)")
    self.spent += nbytes


class _StorageRef:
  """A storage the pickle names, read once its tensors are known.

  Args:
    key: its key (the zip record ``<root>/data/<key>``).
    dtype: its element dtype (numpy, or "bfloat16").
    numel: the number of elements the pickle declares it holds.
  """

  def __init__(self, key: str, dtype, numel: int):
    self.key = key
    self.dtype = dtype
    self.numel = numel
    # Elements from the start that its tensors reach (set by _TensorRef).
    self.need = 0

  @property
  def itemsize(self) -> int:
    """Bytes per element in the file."""
    return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

  @property
  def out_itemsize(self) -> int:
    """Bytes per element of the arrays made from it (bfloat16 widens)."""
    return 4 if self.dtype == "bfloat16" else self.itemsize

  def array(self, data: bytes, little_endian: bool) -> np.ndarray:
    """``data`` (whole elements of this storage) as a flat native array.

    Args:
      data: the storage's first bytes, as read from the file.
      little_endian: the file's byte order.
    """
    if self.dtype == "bfloat16":
      raw = np.frombuffer(data, dtype="<u2" if little_endian else ">u2")
      return (raw.astype(np.uint32) << 16).view(np.float32)
    dt = np.dtype(self.dtype).newbyteorder("<" if little_endian else ">")
    return np.frombuffer(data, dtype=dt).astype(self.dtype, copy=False)

  def __repr__(self):
    return f"storage {self.key}"


def _ints(value, what: str) -> Tuple[int, ...]:
  """``value`` (a tuple or list of integers) as a tuple of ints.

  Args:
    value: the untrusted value.
    what: what it is, for the message.
  """
  try:
    if not isinstance(value, (tuple, list)):
      raise TypeError
    return tuple(operator.index(v) for v in value)
  except TypeError:
    raise CheckpointFormatError(
        f"{what} {_describe(value)} is not a tuple of integers") from None


class _TensorRef:
  """A tensor as the pickle describes it; an array once it is checked.

  Args:
    args: the arguments of ``torch._utils._rebuild_tensor(_v2)``: storage,
      storage offset, size, stride (then ones this reader ignores).
  """

  def __init__(self, *args):
    self.args = args
    # Set by ``check``.
    self.storage = None
    self.shape = self.strides = ()
    self.offset = 0

  def check(self, name: str, budget: _Budget):
    """Checks the tensor against its storage before anything is read.

    Sets ``shape``, ``strides`` (in elements) and ``offset`` and raises the
    storage's ``need`` to the elements the tensor reaches.

    Args:
      name: where the tensor sits in the saved object, for messages.
      budget: the load's budget, charged with the array and the bytes read.
    """
    where = f"tensor {name}"
    if len(self.args) < 4:
      raise CheckpointFormatError(
          f"{where} is rebuilt from {len(self.args)} arguments, not the 4 "
          "(storage, offset, size, stride) torch writes")
    storage, offset, size, stride = self.args[:4]
    if not isinstance(storage, _StorageRef):
      raise CheckpointFormatError(
          f"{where} refers to {_describe(storage)}, not a storage")
    try:
      offset = operator.index(offset)
    except TypeError:
      raise CheckpointFormatError(
          f"{where}: storage offset {_describe(offset)} is not an "
          "integer") from None
    size = _ints(size, f"{where}: size")
    stride = _ints(stride, f"{where}: stride")
    where = (f"{where} (size {_describe(size)}, stride {_describe(stride)}, "
             f"offset {offset}, on {storage})")
    if len(size) != len(stride):
      raise CheckpointFormatError(f"{where}: size and stride differ in length")
    if len(size) > _MAX_DIMS:
      raise CheckpointFormatError(
          f"{where} has {len(size)} dimensions; at most {_MAX_DIMS} are read")
    if offset < 0 or min(size + stride, default=0) < 0:
      raise CheckpointFormatError(
          f"{where}: a negative offset, size or stride would read outside "
          "the storage")
    numel = math.prod(size)
    # The elements from the storage's start that the tensor spans.
    reach = (offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
             if numel else 0)
    if reach > storage.numel:
      raise CheckpointFormatError(
          f"{where} reaches element {reach - 1}, but its storage declares "
          f"{storage.numel} elements")
    budget.spend(numel * storage.out_itemsize, where)
    if reach > storage.need:
      budget.spend((reach - storage.need) * storage.itemsize,
                   f"{where}: reading {storage}")
      storage.need = reach
    self.storage = storage
    self.shape, self.strides, self.offset = size, stride, offset

  def build(self, flat: np.ndarray) -> np.ndarray:
    """The checked tensor as an array copied out of its storage.

    Args:
      flat: the storage's first ``need`` elements (at least what ``check``
        found this tensor reaches).
    """
    if not math.prod(self.shape):
      return np.zeros(self.shape, flat.dtype)
    # ``check`` proved every index offset + sum(i_k * stride_k) lies in
    # [0, need): the strided view stays inside ``flat``.
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.shape,
        strides=tuple(s * flat.itemsize for s in self.strides),
        writeable=False)
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
  """``numpy.core.multiarray.scalar``: a numpy number from its bytes.

  Only plain numbers are read, through a dtype rebuilt from its name: a
  pickled dtype's state can declare an object field while its flags deny
  it, and numpy would then read a pointer from the file's bytes.

  Args:
    dtype: the scalar's dtype, as unpickled.
    data: its bytes (a latin-1 string in protocol-2 pickles), or None for 0.
  """
  if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc"
          and dtype.fields is None and dtype.subdtype is None):
    raise CheckpointFormatError(
        f"a numpy scalar of dtype {_describe(dtype)}: only numbers are read")
  dtype = np.dtype(dtype.str)
  if data is None:
    return dtype.type(0)
  if isinstance(data, str):
    data = data.encode("latin1")
  if not isinstance(data, bytes) or len(data) != dtype.itemsize:
    raise CheckpointFormatError(
        f"a numpy scalar of dtype {dtype} holds {_describe(data)}, not "
        f"{dtype.itemsize} bytes")
  return np.frombuffer(data, dtype=dtype)[0]


def _codecs_encode(text, encoding="utf-8"):
  # numpy scalars pickled with protocol 2 pass their bytes through this.
  return text.encode(encoding)


# Rebuilt as ``_TensorRef``s, made arrays once the whole pickle is read.
_REBUILD_TENSOR = {("torch._utils", "_rebuild_tensor"),
                   ("torch._utils", "_rebuild_tensor_v2")}
_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
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


class _Unpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Resolves allowed globals, storages by persistent id, the rest inert.

  The pure-Python unpickler: its memo is a dict, where the C unpickler
  allocates (and zero-fills) an array as long as the largest memo index
  the pickle names.

  Args:
    file: the pickle stream.
    storages: key -> ``_StorageRef`` of the storages named so far, filled
      by this pickle's persistent ids; None: the pickle may name none.
    legacy: the legacy format (whose persistent ids may carry a view).
  """

  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, storages=None, legacy: bool = False):
    super().__init__(file, encoding="latin1")
    self.storages = storages
    self.legacy = legacy
    # Every tensor the pickle rebuilds, in order.
    self.tensors: List[_TensorRef] = []

  def find_class(self, module, name):
    if (module, name) in _REBUILD_TENSOR:
      return self._rebuild_tensor
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      # A storage class: only ever a marker inside a persistent id.
      return ("storage_class", name)
    return _OpaqueClass(f"{module}.{name}")

  def _rebuild_tensor(self, *args):
    ref = _TensorRef(*args)
    self.tensors.append(ref)
    return ref

  def persistent_load(self, pid):
    # torch writes ("storage", class, key, location, numel[, view]).
    if (self.storages is None or not isinstance(pid, tuple) or len(pid) < 5
        or pid[0] != "storage"):
      raise CheckpointFormatError(f"unexpected persistent id {_describe(pid)}")
    storage_class, key, numel = pid[1], pid[2], pid[4]
    if (not isinstance(storage_class, tuple) or len(storage_class) != 2
        or storage_class[0] != "storage_class"
        or storage_class[1] not in _STORAGE_DTYPES):
      raise CheckpointFormatError(
          f"unsupported storage type {_describe(storage_class)} (only typed "
          f"storages {sorted(_STORAGE_DTYPES)} are read)")
    if (not isinstance(key, str) or isinstance(numel, bool)
        or not isinstance(numel, int) or numel < 0):
      raise CheckpointFormatError(
          f"persistent id {_describe(pid)}: its key is not a string or its "
          "element count not a count")
    if self.legacy and len(pid) > 5 and pid[5] is not None:
      raise CheckpointFormatError("storage views are not supported")
    storage = _StorageRef(key, _STORAGE_DTYPES[storage_class[1]], numel)
    known = self.storages.setdefault(key, storage)
    if (known.dtype, known.numel) != (storage.dtype, storage.numel):
      raise CheckpointFormatError(
          f"storage {_describe(key)} is declared twice, with different types "
          "or sizes")
    return known

  def _load_build(self):
    # BUILD sets an object's state: only on objects that keep it as data
    # (an Opaque, a state dict's OrderedDict, whose _metadata it sets, a
    # numpy dtype), never on the reader's functions or classes.
    inst = self.stack[-2]
    if not isinstance(inst, (Opaque, collections.OrderedDict, np.dtype)):
      raise CheckpointFormatError(
          f"the pickle sets the state of {_describe(inst)}, which takes none")
    pickle._Unpickler.load_build(self)  # pylint: disable=protected-access

  def _load_bytearray8(self):
    # The base class allocates the declared length before reading; this
    # reads first, so a length past the data allocates nothing.
    (length,) = struct.unpack("<Q", self.read(8))
    self.append(bytearray(self.read(length)))

  dispatch[pickle.BUILD[0]] = _load_build
  dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def _replace_tensors(obj, path: str, replace: Callable, done: dict):
  """Puts ``replace(tensor, path)`` in the place of every ``_TensorRef``.

  Looks in dict values, lists, tuples and ``Opaque`` arguments and state,
  changing mutable containers in place (so shared ones stay shared).

  Args:
    obj: the unpickled object, or a part of it.
    path: where ``obj`` sits ("state_dict.conv.weight"), for messages.
    replace: (tensor, path) -> what takes its place.
    done: id -> result of each container already visited: a pickle may be
      cyclic, or share one tuple so often that walking every occurrence
      would take exponential time.

  Returns:
    ``obj`` with its tensors replaced (a new tuple where a tuple held one).
  """
  if isinstance(obj, _TensorRef):
    return replace(obj, path or "<the saved object>")
  if not isinstance(obj, (tuple, dict, list, Opaque)):
    return obj
  if id(obj) in done:
    return done[id(obj)]
  done[id(obj)] = obj
  if isinstance(obj, tuple):
    items = tuple(_replace_tensors(v, f"{path}[{i}]", replace, done)
                  for i, v in enumerate(obj))
    if any(a is not b for a, b in zip(items, obj)):
      done[id(obj)] = items
  elif isinstance(obj, dict):
    for key, value in obj.items():
      label = one_line(key if isinstance(key, str) else _describe(key), 80)
      obj[key] = _replace_tensors(value, f"{path}.{label}" if path else label,
                                  replace, done)
  elif isinstance(obj, list):
    for i, value in enumerate(obj):
      obj[i] = _replace_tensors(value, f"{path}[{i}]", replace, done)
  else:
    obj.args = _replace_tensors(obj.args, f"{path}<{obj.name}>", replace,
                                done)
    obj.state = _replace_tensors(obj.state, f"{path}<{obj.name}>.state",
                                 replace, done)
  return done[id(obj)]


def _make_tensors(obj, unpickler: _Unpickler, budget: _Budget,
                  read_storage: Callable, little_endian: bool):
  """Checks the tensors, reads what they need, puts arrays in their place.

  Args:
    obj: what ``unpickler`` loaded.
    unpickler: the unpickler that loaded it (its tensors and storages).
    budget: the load's budget.
    read_storage: (``_StorageRef``, nbytes) -> the storage's first
      ``nbytes`` bytes; it refuses a storage whose bytes do not match its
      declaration.
    little_endian: the file's byte order.

  Returns:
    ``obj`` with every tensor a numpy array.
  """
  names = {}

  def name(ref, path):
    names.setdefault(id(ref), path)
    return ref

  _replace_tensors(obj, "", name, {})
  for ref in unpickler.tensors:
    if id(ref) not in names:
      raise CheckpointFormatError(
          "a tensor sits where this reader does not look for one (a dict "
          "key, a set, an object's attributes)")
    ref.check(names[id(ref)], budget)
  flats = {
      key: storage.array(read_storage(storage,
                                      storage.need * storage.itemsize),
                         little_endian)
      for key, storage in unpickler.storages.items()}
  arrays = {id(ref): ref.build(flats[ref.storage.key])
            for ref in unpickler.tensors}
  return _replace_tensors(obj, "", lambda ref, path: arrays[id(ref)], {})


def _read_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                 nbytes: int) -> bytes:
  """The first ``nbytes`` bytes of a zip record, decompressing no more.

  Args:
    archive: the open archive.
    info: the record.
    nbytes: how many bytes to read (at most its declared size).
  """
  if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
    raise CheckpointFormatError(
        f"record {_describe(info.filename)} uses zip compression method "
        f"{info.compress_type} (torch.save stores records uncompressed)")
  with archive.open(info) as f:
    data = f.read(nbytes)
  if len(data) != nbytes:
    raise CheckpointFormatError(
        f"record {_describe(info.filename)} is truncated: {len(data)} of "
        f"its {nbytes} bytes")
  return data


def _load_zip(path: str, budget: _Budget):
  """Reads the zip format (``<root>/data.pkl`` and ``<root>/data/<key>``)."""
  with zipfile.ZipFile(path) as archive:
    names = set(archive.namelist())
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise CheckpointFormatError(
          "a zip archive but not a PyTorch checkpoint (no <name>/data.pkl "
          "record)")
    root = pkl[0].split("/")[0]
    little = True
    if f"{root}/byteorder" in names:
      info = archive.getinfo(f"{root}/byteorder")
      little = _read_record(archive, info, min(info.file_size, 16)).decode(
          "latin1").strip() != "big"
    info = archive.getinfo(pkl[0])
    budget.spend(info.file_size, f"record {_describe(pkl[0])}")
    unpickler = _Unpickler(
        io.BytesIO(_read_record(archive, info, info.file_size)), {})
    obj = unpickler.load()

    def read_storage(storage, nbytes):
      record = f"{root}/data/{storage.key}"
      if record not in names:
        raise CheckpointFormatError(
            f"{storage}'s record {_describe(record)} is missing")
      info = archive.getinfo(record)
      declared = storage.numel * storage.itemsize
      if info.file_size != declared:
        raise CheckpointFormatError(
            f"record {_describe(record)} holds {info.file_size} bytes, but "
            f"its storage declares {storage.numel} elements ({declared} "
            "bytes)")
      return _read_record(archive, info, nbytes)

    return _make_tensors(obj, unpickler, budget, read_storage, little)


def _load_legacy(path: str, budget: _Budget):
  """Reads the legacy stream format (pickles, then raw storages)."""
  with open(path, "rb") as f:
    data = f.read()
  stream = io.BytesIO(data)

  def plain_load():
    return _Unpickler(stream).load()

  try:
    magic = plain_load()
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointFormatError(
        "neither a zip archive nor a pickle stream: not a PyTorch checkpoint "
        f"({type(e).__name__}: {e})") from None
  if magic != _LEGACY_MAGIC:
    raise CheckpointFormatError(
        "a pickle but not one torch.save wrote (no PyTorch magic number; a "
        ".pth.tar must come from torch.save)")
  protocol = plain_load()
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointFormatError(
        f"unsupported legacy protocol {_describe(protocol)}")
  sys_info = plain_load()
  little = not isinstance(sys_info, dict) or sys_info.get(
      "little_endian", True)
  unpickler = _Unpickler(stream, {}, legacy=True)
  obj = unpickler.load()
  raw: Dict[str, bytes] = {}
  for key in plain_load():
    storage = unpickler.storages.get(key)
    if storage is None or key in raw:
      raise CheckpointFormatError(
          f"the storage list names {_describe(key)}, which no tensor uses "
          "or which it names twice")
    header = stream.read(8)
    if len(header) != 8:
      raise CheckpointFormatError(f"{storage} is truncated")
    (numel,) = struct.unpack("<q" if little else ">q", header)
    nbytes = numel * storage.itemsize
    left = len(data) - stream.tell()
    if numel != storage.numel or nbytes > left:
      raise CheckpointFormatError(
          f"{storage}: its data claims {numel} elements ({nbytes} bytes), "
          f"the pickle declares {storage.numel}, and {left} bytes are left "
          "in the file")
    raw[key] = stream.read(nbytes)

  def read_storage(storage, nbytes):
    if storage.key not in raw:
      raise CheckpointFormatError(f"{storage} has no data in the file")
    return raw[storage.key][:nbytes]

  return _make_tensors(obj, unpickler, budget, read_storage, little)


def load(path: str):
  """Loads a ``torch.save`` file with tensors as numpy arrays.

  Args:
    path: a local file written by ``torch.save`` (``.pth``, ``.pth.tar``).

  Returns:
    The saved object (dicts, lists, numbers, strings) with every tensor a
    numpy array and every object of a disallowed class an ``Opaque``.

  Raises:
    FileNotFoundError: no such file.
    CheckpointFormatError: the file is not a checkpoint this reader reads
      (any malformed file: a one-line message that starts with ``path``).
  """
  with open(path, "rb") as f:
    head = f.read(4)
  if not head:
    raise CheckpointFormatError(f"{path} is empty: not a PyTorch checkpoint")
  budget = _Budget(os.path.getsize(path))
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path, budget)
    if head[:1] != b"\x80":
      raise CheckpointFormatError(
          "not a PyTorch checkpoint (neither a zip archive nor a pickle; "
          f"its first bytes are {head!r})")
    return _load_legacy(path, budget)
  except CheckpointFormatError as e:
    raise CheckpointFormatError(f"{path}: {one_line(e, 600)}") from None
  except Exception as e:  # pylint: disable=broad-except
    # Whatever else a malformed file provokes (MemoryError, RecursionError,
    # a TypeError of a wrongly typed field, zipfile's errors) is the same
    # refusal, not a traceback.
    raise CheckpointFormatError(
        f"{path}: damaged PyTorch checkpoint ({type(e).__name__}: "
        f"{one_line(e)})") from None

"""The numpy-only checkpoint reader on crafted, untrusted files.

Each file is built here, in the zip layout ``torch.save`` writes (or its
legacy stream format), by a pickler that names torch's rebuild functions
and storage classes without importing torch; then a stride, size, offset,
storage length or record is corrupted. A malformed file must give one
``CheckpointFormatError`` line that names the tensor or storage, read no
byte outside a storage, and decompress or allocate no more than its
tensors need.
"""
import collections
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import helpers
from adafocus_tf.convert import torch_pickle
from adafocus_tf.convert.torch_pickle import CheckpointFormatError

ITEMSIZE = {"FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8}


class Global:
  """A global the pickle names (``module.name``) without importing it."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):
    raise AssertionError("only ever pickled")


class Storage:
  """A storage: its bytes, and the element count the pickle declares."""

  def __init__(self, key, data, kind="FloatStorage", numel=None):
    self.key, self.data, self.kind = key, data, kind
    self.numel = len(data) // ITEMSIZE[kind] if numel is None else numel


class Tensor:
  """Pickles as torch does: ``_rebuild_tensor_v2(storage, offset, ...)``."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, size, stride)

  def __reduce__(self):
    return (Global("torch._utils", "_rebuild_tensor_v2"),
            self.args + (False, collections.OrderedDict()))


class Writer(pickle._Pickler):  # pylint: disable=protected-access
  """Protocol 2, storages as torch's persistent ids, ``Global``s by name."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy
    self.storages = {}

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    self.storages[obj.key] = obj
    pid = ("storage", Global("torch", obj.kind), obj.key, "cpu", obj.numel)
    return pid + (None,) if self.legacy else pid

  def save_named_global(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  dispatch[Global] = save_named_global


def dumps(obj, legacy=False):
  buf = io.BytesIO()
  writer = Writer(buf, legacy)
  writer.dump(obj)
  return buf.getvalue(), writer.storages


def write_zip(path, obj=None, pkl=None):
  """``torch.save``'s zip layout; ``pkl`` replaces the pickle of ``obj``."""
  storages = {}
  if pkl is None:
    pkl, storages = dumps(obj)
  with zipfile.ZipFile(path, "a") as z:
    z.writestr("archive/data.pkl", pkl)
    z.writestr("archive/byteorder", "little")
    for key, s in storages.items():
      z.writestr(f"archive/data/{key}", s.data)
    z.writestr("archive/version", "3\n")
  return str(path)


def write_legacy(path, obj, header_numel=None):
  """The legacy stream; ``header_numel`` replaces each storage's count."""
  buf = io.BytesIO()
  for head in (0x1950a86a20f9469cfc6c, 1001,
               {"protocol_version": 1001, "little_endian": True}):
    pickle.dump(head, buf, protocol=2)
  pkl, storages = dumps(obj, legacy=True)
  buf.write(pkl)
  keys = sorted(storages)
  pickle.dump(keys, buf, protocol=2)
  for key in keys:
    s = storages[key]
    buf.write(struct.pack("<q", s.numel if header_numel is None
                          else header_numel))
    buf.write(s.data)
  path.write_bytes(buf.getvalue())
  return str(path)


BASE = np.arange(30, dtype=np.float32).reshape(6, 5)


def base_storage(**kwargs):
  return Storage("0", BASE.tobytes(), **kwargs)


def refused(path):
  """The reader's message for ``path``, checked to be a single line."""
  with pytest.raises(CheckpointFormatError) as info:
    torch_pickle.load(path)
  message = str(info.value)
  assert message.startswith(f"{path}: ") and "\n" not in message, message
  return message


def peak_bytes(fn):
  """(fn's result or the error it raised, the peak bytes it allocated)."""
  tracemalloc.start()
  try:
    result = fn()
  except CheckpointFormatError as e:
    result = e
  finally:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  return result, peak


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_a_well_formed_file_reads_every_kind_of_view(tmp_path, fmt):
  s = base_storage()
  half = Storage("1", np.array([1.5, -2, 0.25], np.float16).tobytes(),
                 kind="HalfStorage")
  obj = {"state_dict": collections.OrderedDict(
      whole=Tensor(s, 0, (6, 5), (5, 1)),
      transposed=Tensor(s, 0, (5, 6), (1, 5)),
      slice=Tensor(s, 11, (3, 3), (5, 1)),
      scalar=Tensor(s, 7, (), ()),
      expanded=Tensor(s, 2, (4, 2), (0, 1)),
      empty=Tensor(s, 0, (0, 3), (3, 1)),
      half=Tensor(half, 0, (3,), (1,))),
         "acc": np.float64(71.25), "epoch": 3}
  write = write_zip if fmt == "zip" else write_legacy
  got = torch_pickle.load(write(tmp_path / "ok.pth.tar", obj))
  sd = got["state_dict"]
  expected = {"whole": BASE, "transposed": BASE.T, "slice": BASE[2:5, 1:4],
              "scalar": np.float32(7), "expanded": np.tile([2, 3], (4, 1)),
              "empty": np.zeros((0, 3)), "half": [1.5, -2, 0.25]}
  assert list(sd) == list(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(sd[key], value)
  assert sd["half"].dtype == np.float16 and sd["whole"].dtype == np.float32
  assert got["acc"] == 71.25 and got["epoch"] == 3


@pytest.mark.parametrize("offset,size,stride,words", [
    # Elements -1 and -2: before the storage's first byte.
    (0, (3,), (-1,), "negative offset, size or stride"),
    (-1, (2,), (1,), "negative offset, size or stride"),
    (0, (5, -1), (1, 1), "negative offset, size or stride"),
    (28, (3,), (1,), "reaches element 30, but its storage declares 30"),
    (0, (2**33,), (0,), "needs 34359738368 bytes, past the"),
    (0, ("3",), (1,), "size ('3',) is not a tuple of integers"),
    (0, None, (1,), "size None is not a tuple of integers"),
    (1.5, (3,), (1,), "storage offset 1.5 is not an integer"),
    (0, (2, 3), (1,), "size and stride differ in length"),
])
def test_a_tensor_outside_its_storage_is_refused_by_name(tmp_path, offset,
                                                         size, stride, words):
  obj = {"state_dict": {"conv.weight": Tensor(base_storage(), offset, size,
                                              stride)}}
  message = refused(write_zip(tmp_path / "bad.pth.tar", obj))
  assert "tensor state_dict.conv.weight" in message and words in message


def test_a_record_longer_or_shorter_than_its_storage_is_refused(tmp_path):
  for numel in (29, 31):
    obj = [Tensor(base_storage(numel=numel), 0, (2,), (1,))]
    message = refused(write_zip(tmp_path / f"n{numel}.pth.tar", obj))
    assert (f"record 'archive/data/0' holds 120 bytes, but its storage "
            f"declares {numel} elements ({numel * 4} bytes)") in message


@pytest.mark.parametrize("header,data,words", [
    # The storage is declared (pickle and header) with 4 elements; the
    # file ends after 2.
    (4, np.float32([1, 2]).tobytes(), "claims 4 elements (16 bytes), the "
     "pickle declares 4, and 8 bytes are left"),
    (-1, np.float32([1, 2, 3, 4]).tobytes(), "claims -1 elements"),
])
def test_a_legacy_storage_shorter_than_declared_is_refused(tmp_path, header,
                                                           data, words):
  obj = {"w": Tensor(Storage("7", data, numel=4), 0, (2,), (1,))}
  message = refused(write_legacy(tmp_path / "legacy.pth.tar", obj, header))
  assert "storage 7" in message and words in message


ZEROS = 200 << 20


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
  """A zip whose storage record is 200 MB of zeros, deflated to < 1 MB."""
  path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("archive/data/0", "w") as f:
      chunk = bytes(1 << 20)
      for _ in range(ZEROS // len(chunk)):
        f.write(chunk)
  assert os.path.getsize(path) < 1 << 20
  return path


@pytest.mark.parametrize("numel,size,words", [
    # The record is 50 times larger than the 4 elements declared.
    (4, (4,), "holds 209715200 bytes, but its storage declares 4 elements"),
    # Declared as large as the record, but the tensor reaches 4 elements.
    (ZEROS // 4, (4,), None),
    # A tensor as large as the record: more than the file may expand to.
    (ZEROS // 4, (ZEROS // 4,), "needs 209715200 bytes, past the"),
])
def test_a_zip_bomb_decompresses_only_what_the_tensors_need(
    bomb, tmp_path, numel, size, words):
  path = tmp_path / "bomb.pth.tar"
  shutil.copy(bomb, path)
  pkl, _ = dumps({"w": Tensor(Storage("0", b"", numel=numel), 0, size, (1,))})
  write_zip(path, pkl=pkl)
  result, peak = peak_bytes(lambda: torch_pickle.load(str(path)))
  assert peak < 8 << 20, peak
  if words is None:
    np.testing.assert_array_equal(result["w"], np.zeros(4, np.float32))
  else:
    message = str(result)
    assert "\n" not in message and words in message, message


def test_a_huge_memo_index_allocates_nothing(tmp_path):
  # EMPTY_DICT, LONG_BINPUT 2**24: the C unpickler would allocate (and
  # zero) a 256 MB memo array for it.
  pkl = b"\x80\x02}r" + struct.pack("<I", 1 << 24) + b"."
  result, peak = peak_bytes(
      lambda: torch_pickle.load(write_zip(tmp_path / "memo.pth.tar", pkl=pkl)))
  assert result == {} and peak < 8 << 20, (result, peak)


def test_the_pickle_cannot_set_attributes_of_the_readers_functions(tmp_path):
  # BUILD (None, {"__defaults__": (1,)}) on _rebuild_parameter.
  pkl = (b"\x80\x02ctorch._utils\n_rebuild_parameter\nN}"
         b"X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.")
  message = refused(write_zip(tmp_path / "build.pth.tar", pkl=pkl))
  assert "sets the state of" in message
  assert torch_pickle._rebuild_parameter.__defaults__ is None  # pylint: disable=protected-access


def pointer_dtype():
  """A dtype whose pickled flags deny its object field (numpy trusts them)."""
  dtype = np.dtype("V8", False, True)
  dtype.__setstate__((3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1,
                      0))
  return dtype


class PointerScalar:
  """Pickles as numpy's scalar(dtype, bytes): bytes read as an object."""

  def __reduce__(self):
    return (np.core.multiarray.scalar, (pointer_dtype(), b"A" * 8))


def test_a_scalar_that_would_read_a_pointer_is_one_error_line(tmp_path):
  # The command line a user runs: numpy would dereference 0x4141414141414141
  # (a segmentation fault); the converter must refuse the file instead.
  path = write_zip(tmp_path / "scalar.pth.tar", {"best_acc": PointerScalar()})
  run = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch",
                                    "convert_checkpoint.py"),
       f"--checkpoint={path}", "--dataset=actnet", "--patch_size=96",
       f"--out={run}"],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert lines[-2:] == [
      f"error: {path}: a numpy scalar of dtype {pointer_dtype()!r}: only "
      "numbers are read", "nothing was written"], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and not run.exists()

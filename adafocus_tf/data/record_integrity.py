"""Reading TFRecord shards that may be corrupt: each bad record named, or
skipped.

``tf.data.TFRecordDataset`` stops at a corrupt record (a checksum that does
not match, or a file that ends inside a record) with a ``DataLossError``
that gives a byte offset but not the file; with ``ignore_errors`` it drops
the rest of the file silently, and a file cut inside a record's header or
at a record boundary reads as a clean end.

``read_shard`` reads one shard with errors ignored while a ``scan`` counts
the records and bytes read (a record takes its length plus 16 bytes of
framing: an 8-byte length, the masked CRC32C of the length and the masked
CRC32C of the data). After the shard's last record it compares them with
the file's size and its manifest's record count, taken once when the
pipeline is built (``shard_dataset``): a healthy shard passes through
native ops only. A short read names the file, the index of the first
record that did not read and its byte offset. That fails the pipeline (an
``InvalidArgumentError`` that ``refuse_corrupt_shards`` turns into an
``errors.RefusedError``), or with ``salvage`` a Python function reads the
rest of the file past the bad records (``read_records``) and notes them
for ``log_skipped``. A read error of another kind (say, the network) is
ignored too, and shows as a corrupt record.

TensorFlow's ``tf_record_random_reader`` reads the records of that rare
path: its C++ reader checks both checksums as ``TFRecordDataset`` does, so
no CRC32C package is needed.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import re
import threading
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
# Not in tf.*: TensorFlow's own reader of one record at a byte offset.
from tensorflow.python.lib.io import tf_record  # pylint: disable=g-direct-tensorflow-import

from adafocus_tf import errors
from adafocus_tf.data import shards

# Bytes of a record besides its data: the 8-byte length and its 4-byte
# masked CRC32C (the header), and the data's 4-byte masked CRC32C.
_HEADER = 12
_FRAMING = 16
# Bytes searched at a time for the next record after a corrupt one.
_SCAN_CHUNK = 1 << 20
# Marks the pipeline's own failure in the error's message, which
# ``refuse_corrupt_shards`` extracts from TensorFlow's text around it.
_MARKER = "corrupt TFRecord shard: "
_HINT = "; set data.skip_bad_records=true to skip it"
_MESSAGE = re.compile(re.escape(_MARKER) + "(.*?" + re.escape(_HINT) + ")")
# Shards stat'ed and manifests read at once when a pipeline is built (on
# S3 each is a request).
_LOOKUP_THREADS = 16


@dataclasses.dataclass(frozen=True)
class BadRecord:
  """A record of a shard that does not read.

  Attributes:
    file: the shard's path.
    record: the record's index in the shard (records read before it,
      corrupt ones counted as one each).
    offset: its byte offset.
    reason: why it does not read.
  """
  file: str
  record: int
  offset: int
  reason: str

  def __str__(self):
    return (f"{self.file}: record {self.record} at byte {self.offset} is "
            f"corrupt ({self.reason})")


def shard_dataset(files: Sequence[str]) -> tf.data.Dataset:
  """The shards to read, each with what ``read_shard`` checks it against.

  Args:
    files: shard paths (``shards.list_records``).

  Returns:
    A dataset of ``(path, size in bytes, record count of its manifest or -1
    where the manifest lists no videos)``, in the order of ``files``.
  """
  def facts(path):
    return tf.io.gfile.stat(path).length, shards.manifest_count(path)
  with concurrent.futures.ThreadPoolExecutor(_LOOKUP_THREADS) as pool:
    sizes, counts = zip(*pool.map(facts, files)) if files else ((), ())
  return tf.data.Dataset.from_tensor_slices((
      tf.constant(files, tf.string), tf.constant(sizes, tf.int64),
      tf.constant(counts, tf.int64)))


def _end_problem(path, size, count, records, offset):
  """Names the first record of a shard that did not read: "" if none.

  No quotes: ``tf.debugging.Assert`` would escape them.

  Args:
    path: the shard (string scalar tensor).
    size: its size in bytes (int64 scalar).
    count: its manifest's record count, -1 when unknown (int64 scalar).
    records: records read (int64 scalar).
    offset: bytes they take (int64 scalar).
  """
  short = offset < size
  missing = tf.logical_and(count >= 0, records < count)
  reason = tf.where(
      short,
      tf.strings.join(["a checksum or length is wrong, or the file ends "
                       "inside it; the file has ",
                       tf.strings.as_string(size), " bytes"]),
      tf.strings.join(["the file ends there, but its manifest lists ",
                       tf.strings.as_string(count), " records"]))
  return tf.where(
      tf.logical_or(short, missing),
      tf.strings.join([path, ": record ", tf.strings.as_string(records),
                       " at byte ", tf.strings.as_string(offset),
                       " is corrupt (", reason, ")"]),
      "")


def _fail(problem):
  """No records; fails with ``problem`` (our text) unless it is empty."""
  check = tf.debugging.Assert(tf.equal(problem, ""), [
      tf.strings.join([_MARKER, problem, _HINT])])
  with tf.control_dependencies([check]):
    return tf.constant([], tf.string)


def _salvage(path, count, records, offset):
  """The records after a shard's first unreadable one; notes the bad ones.

  The rare path, in Python (``tf.py_function``).

  Args:
    path: the shard (string scalar tensor).
    count: its manifest's record count, -1 when unknown (int64 scalar).
    records: index of the record that did not read (int64 scalar).
    offset: its byte offset (int64 scalar).

  Returns:
    string [N], the records that read, in file order.
  """
  def rest(path, count, records, offset):
    good = []
    for _, _, item in read_records(path.numpy().decode(), int(records),
                                   int(offset), int(count)):
      if isinstance(item, BadRecord):
        _note(item)
      else:
        good.append(item)
    return tf.constant(good, tf.string)
  out = tf.py_function(rest, [path, count, records, offset], tf.string)
  out.set_shape([None])
  return out


def read_shard(path, size, count, salvage: bool) -> tf.data.Dataset:
  """The records of one shard, checked to be all there.

  Args:
    path: the shard (string scalar tensor).
    size: its size in bytes when the pipeline was built (int64 scalar).
    count: its manifest's record count, -1 when unknown (int64 scalar).
    salvage: past a record that does not read, read the rest of the file
      in Python and note the bad records (``log_skipped``); otherwise fail
      with an ``InvalidArgumentError`` naming the file, the record's index
      and its byte offset.

  Returns:
    A dataset of ``(serialized record, path)``: each record travels with
    its shard's path, for error messages.
  """
  # One scan function, in place of a map, tallies the records, checks the
  # shard's end and attaches the path. The end is an empty vector after the
  # scalar records (``concatenate`` relaxes the shape): a record leaves the
  # scan as a batch of one, the end as the batch of records salvaged (none
  # when the shard is whole), and ``unbatch`` flattens them. (Batching the
  # records before the scan would copy each one.)
  end = tf.data.Dataset.from_tensors(tf.constant([], tf.string))

  def tally(state, element):
    read, offset = state
    batch = tf.reshape(element, [-1])

    def at_end():
      problem = _end_problem(path, size, count, read, offset)
      if not salvage:
        return _fail(problem)
      return tf.cond(tf.equal(problem, ""),
                     lambda: tf.constant([], tf.string),
                     lambda: _salvage(path, count, read, offset))
    out = tf.cond(tf.equal(tf.size(batch), 0), at_end, lambda: batch)
    length = tf.cast(tf.reduce_sum(tf.strings.length(batch)), tf.int64)
    return ((read + 1, offset + length + _FRAMING),
            (out, tf.fill(tf.shape(out), path)))

  zero = tf.constant(0, tf.int64)
  return (tf.data.TFRecordDataset(path).ignore_errors().concatenate(end)
          .scan((zero, zero), tally).unbatch())


def read_records(path: str, index: int = 0, offset: int = 0,
                 count: int = -1
                 ) -> Iterator[Tuple[int, int, Union[bytes, BadRecord]]]:
  """Reads a TFRecord file from one record on, past corrupt records.

  A record that does not read is reported, and reading goes on at the next
  offset where a whole record reads (both checksums match); a file that
  ends before its manifest's count is reported too.

  Args:
    path: the file (local or ``s3://``).
    index: the index of the record at ``offset``.
    offset: where to start, a record's first byte.
    count: the file's record count from its manifest (-1: unknown).

  Yields:
    ``(index, offset, record)``: the serialized record, or a ``BadRecord``.
  """
  reader = tf_record.tf_record_random_reader(path)
  size = tf.io.gfile.stat(path).length
  with tf.io.gfile.GFile(path, "rb") as f:
    while offset < size:
      try:
        record, end = reader.read(offset)
      except (tf.errors.DataLossError, IndexError):
        # IndexError: fewer bytes left than a record's header.
        yield index, offset, BadRecord(path, index, offset,
                                       _reason(f, offset, size))
        offset = _next_record(reader, f, offset + 1, size)
      else:
        yield index, offset, record
        offset = end
      index += 1
  if 0 <= index < count:
    yield index, size, BadRecord(path, index, size, "the file ends there, "
                                 f"but its manifest lists {count} records")


def _reason(f, offset: int, size: int) -> str:
  """Why the record at ``offset`` of open file ``f`` does not read."""
  if size - offset < _HEADER:
    return "the file ends inside it"
  f.seek(offset)
  length = int.from_bytes(f.read(8), "little")
  if offset + _FRAMING + length > size:
    return "its length is corrupt, or the file ends inside it"
  return "a checksum does not match"


def _next_record(reader, f, start: int, size: int) -> int:
  """The first offset from ``start`` on where a whole record reads, else
  ``size``.

  Only the offsets whose 8-byte length fits in the rest of the file are
  tried; ``reader.read`` checks the length's and the data's checksums.

  Args:
    reader: a ``tf_record_random_reader`` of the file.
    f: the file, open for reading bytes.
    start: the first offset to try.
    size: the file's size.
  """
  pos = start
  while pos + _FRAMING <= size:
    f.seek(pos)
    chunk = np.frombuffer(f.read(_SCAN_CHUNK + 7), np.uint8)
    n = len(chunk) - 7
    lengths = np.zeros(n, np.uint64)
    for i in range(8):
      lengths |= chunk[i:i + n].astype(np.uint64) << np.uint64(8 * i)
    room = size - _FRAMING - pos - np.arange(n, dtype=np.int64)
    fits = (room >= 0) & (lengths <= np.maximum(room, 0).astype(np.uint64))
    for candidate in pos + np.flatnonzero(fits):
      try:
        reader.read(int(candidate))
        return int(candidate)
      except (tf.errors.DataLossError, IndexError):
        continue
    pos += n
  return size


# The corrupt records skipped since the last ``log_skipped``, by file,
# index and offset (a shard read twice is listed once).
_skipped: Dict[Tuple[str, int, int], BadRecord] = {}
_skipped_lock = threading.Lock()


def _note(bad: BadRecord) -> None:
  with _skipped_lock:
    _skipped.setdefault((bad.file, bad.record, bad.offset), bad)


def drain_skipped() -> List[BadRecord]:
  """The corrupt records skipped since the last call, by file and index."""
  with _skipped_lock:
    found = [_skipped[k] for k in sorted(_skipped)]
    _skipped.clear()
  return found


def log_skipped(when: str) -> List[BadRecord]:
  """Warns of each corrupt record skipped since the last call, and their
  count.

  Args:
    when: what read them, for the count's line (e.g. ``epoch 3``).

  Returns:
    Those records (``drain_skipped``).
  """
  found = drain_skipped()
  for bad in found:
    logging.warning("data.skip_bad_records: skipped %s", bad)
  if found:
    logging.warning("data.skip_bad_records: %d corrupt record(s) skipped in "
                    "%s", len(found), when)
  return found


@contextlib.contextmanager
def refuse_corrupt_shards():
  """Turns the input pipeline's failure on a corrupt shard into a
  ``RefusedError`` with its one line; any other error passes unchanged.

  Wrap where batches are read (``next`` on the iterator).
  """
  try:
    yield
  except tf.errors.OpError as e:
    found = _MESSAGE.search(e.message)
    if not found:
      raise
    raise errors.RefusedError(found.group(1)) from None

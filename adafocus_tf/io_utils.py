"""File access for local paths and ``s3://`` URIs, with atomic writes.

Everything goes through ``tf.io.gfile`` so that data, runs and exports may
live on S3 (through tensorflow-io's filesystem plugin) as well as on disk.
A write goes to a temporary name in the same directory and is renamed into
place, so a killed process never leaves a half-written file under the final
name.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import sys
import uuid

import tensorflow as tf

_REMOTE_SCHEMES = ("s3://",)


def ensure_filesystem(path: str) -> None:
  """Registers the filesystem plugin that ``path`` needs (S3: tensorflow-io)."""
  if path.startswith(_REMOTE_SCHEMES):
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import


def join(*parts: str) -> str:
  """Joins path parts with ``/`` for URIs and ``os.path.join`` otherwise."""
  if parts and "://" in parts[0]:
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])
  return os.path.join(*parts)


def exists(path: str) -> bool:
  ensure_filesystem(path)
  return tf.io.gfile.exists(path)


def makedirs(path: str) -> None:
  ensure_filesystem(path)
  tf.io.gfile.makedirs(path)


def temp_name(path: str) -> str:
  """A sibling of ``path`` that listings of final files ignore."""
  head, tail = path.rsplit("/", 1) if "/" in path else ("", path)
  name = f".tmp-{uuid.uuid4().hex[:8]}-{tail}"
  return f"{head}/{name}" if head else name


def commit(tmp: str, path: str) -> None:
  """Moves a finished temporary file onto its final name."""
  if path.startswith(_REMOTE_SCHEMES) and _remote_size(tmp) in (0, None):
    # An empty file on S3: tensorflow-io uploads nothing for a file nothing
    # was written to, and its rename (a copy) refuses an empty object. An
    # empty object is written whole or not at all anyway, so write it in
    # place; the empty write makes the plugin upload it.
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(b"")
    if _remote_size(tmp) is not None:
      tf.io.gfile.remove(tmp)
    return
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _remote_size(path: str):
  """Size of an object, or None when there is none."""
  try:
    return tf.io.gfile.stat(path).length
  except tf.errors.NotFoundError:
    return None


def write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically."""
  ensure_filesystem(path)
  tmp = temp_name(path)
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  commit(tmp, path)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_text(path: str) -> str:
  ensure_filesystem(path)
  with tf.io.gfile.GFile(path, "r") as f:
    return f.read()


def read_json(path: str):
  try:
    return json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def glob(pattern: str):
  ensure_filesystem(pattern)
  return sorted(tf.io.gfile.glob(pattern))


def exit_process(status: int) -> None:
  """Ends the process with ``status``, even after S3 was used.

  tensorflow-io 0.37.1's S3 filesystem aborts in its C++ static destructors
  at process exit ("pure virtual method called", status 134;
  tensorflow/io#2039, fixed after 0.37.1). Once tensorflow_io is loaded this
  flushes Python's streams and log handlers and leaves with ``os._exit``,
  which skips those destructors (and atexit handlers); otherwise it is
  ``sys.exit``.

  Args:
    status: the exit status.
  """
  if "tensorflow_io" not in sys.modules:
    sys.exit(status)
  # Finalise what is already unreachable (multiprocessing semaphores would
  # otherwise be reported as leaked), then flush.
  gc.collect()
  logging.shutdown()
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(status)  # pylint: disable=protected-access

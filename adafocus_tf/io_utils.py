"""File access for local paths and ``s3://`` URIs, with atomic writes.

Everything goes through ``tf.io.gfile`` so that data, runs and exports may
live on S3 (through tensorflow-io's filesystem plugin) as well as on disk.
A write goes to a temporary name in the same directory and is renamed into
place, so a killed process never leaves a half-written file under the final
name.
"""
from __future__ import annotations

import json
import os
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
  tf.io.gfile.rename(tmp, path, overwrite=True)


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

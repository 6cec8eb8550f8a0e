"""File access for local paths and ``s3://`` URIs, with atomic writes.

Everything goes through ``tf.io.gfile`` so that data, runs and exports may
live on S3 (through tensorflow-io's filesystem plugin) as well as on disk.
A write goes to a temporary name in the same directory and is renamed into
place, so a killed process never leaves a half-written file under the final
name.

Before the first ``s3://`` access of a process, the S3 endpoint is probed
(one HTTP request, bounded by ``ADAFOCUS_S3_CONNECT_TIMEOUT`` seconds) and
tensorflow-io's client gets bounded timeouts and retries, so that an
endpoint that is down is an error within seconds instead of minutes of
retries followed by "file not found".
"""
from __future__ import annotations

import gc
import http.client
import json
import logging
import os
import ssl
import sys
import urllib.parse
import uuid

import tensorflow as tf

_REMOTE_SCHEMES = ("s3://",)

# Seconds the endpoint probe (and tensorflow-io's connect) may take.
S3_TIMEOUT_ENV = "ADAFOCUS_S3_CONNECT_TIMEOUT"
DEFAULT_S3_TIMEOUT = 10.0
# Stall limit of one S3 request (no byte for this long; not a total time).
_S3_REQUEST_TIMEOUT_MSEC = "60000"
# Endpoints (URLs) that answered the probe in this process.
_REACHED = set()


class S3UnreachableError(ConnectionError):
  """The S3 endpoint did not answer; the message names it and why."""


def ensure_filesystem(path: str) -> None:
  """Makes ``path``'s filesystem usable: for S3, bounds tensorflow-io's
  timeouts and retries, probes the endpoint (once per process) and
  registers tensorflow-io's plugin.

  Args:
    path: a local path or URI.

  Raises:
    S3UnreachableError: ``path`` is on S3 and the endpoint does not answer.
  """
  if path.startswith(_REMOTE_SCHEMES):
    timeout = s3_timeout()
    _bound_s3_client(timeout)
    check_s3_endpoint(timeout)
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import


def s3_timeout() -> float:
  """``ADAFOCUS_S3_CONNECT_TIMEOUT`` in seconds (default 10).

  Raises:
    ValueError: the variable is not a positive number.
  """
  text = os.environ.get(S3_TIMEOUT_ENV, "")
  if not text:
    return DEFAULT_S3_TIMEOUT
  try:
    value = float(text)
  except ValueError:
    value = 0.0
  if not value > 0:
    raise ValueError(f"{S3_TIMEOUT_ENV}={text!r}: give a number of seconds "
                     "> 0")
  return value


def _bound_s3_client(timeout: float) -> None:
  """Bounded defaults for tensorflow-io 0.37.1's S3 client; values the user
  set are kept. Read once, when the process's client is first created.

  Without them the client waits up to 300 s to connect and the AWS SDK's
  legacy retry mode retries 10 times (51 s against a refused connection,
  then a missing object is reported). The "standard" mode makes 3 attempts
  (``AWS_MAX_ATTEMPTS``; 5 s against a refused connection) and makes
  ``AWS_MAX_ATTEMPTS`` count, which the legacy mode ignores.

  Args:
    timeout: connect timeout in seconds.
  """
  os.environ.setdefault("AWS_RETRY_MODE", "standard")
  os.environ.setdefault("S3_CONNECT_TIMEOUT_MSEC", str(int(timeout * 1000)))
  os.environ.setdefault("S3_REQUEST_TIMEOUT_MSEC", _S3_REQUEST_TIMEOUT_MSEC)


def s3_endpoint() -> str:
  """The endpoint URL tensorflow-io's S3 client uses: ``S3_ENDPOINT`` (its
  scheme, https when none is written), else AWS's for ``AWS_REGION``."""
  endpoint = os.environ.get("S3_ENDPOINT", "")
  if not endpoint:
    region = (os.environ.get("AWS_REGION") or
              os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    return f"https://s3.{region}.amazonaws.com"
  return endpoint if "://" in endpoint else f"https://{endpoint}"


def check_s3_endpoint(timeout: float) -> None:
  """Raises unless the S3 endpoint answers an HTTP request within
  ``timeout`` seconds; an endpoint that answered once is not asked again.

  Any HTTP answer counts (S3 refuses an anonymous request): this checks
  that the server is there, not the credentials, which tensorflow-io's own
  errors name.

  Args:
    timeout: seconds for the connection and for the answer.

  Raises:
    S3UnreachableError: naming the endpoint and the reason.
  """
  url = s3_endpoint()
  if url in _REACHED:
    return
  parts = urllib.parse.urlsplit(url)
  if parts.scheme == "https":
    # Certificates are tensorflow-io's business (S3_VERIFY_SSL, S3_CA_FILE).
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port, timeout=timeout,
        context=ssl._create_unverified_context())  # pylint: disable=protected-access
  else:
    conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                      timeout=timeout)
  try:
    conn.request("HEAD", "/")
    conn.getresponse()
  except TimeoutError:
    raise S3UnreachableError(
        f"S3 endpoint {url} cannot be reached (no answer in {timeout:g} s; "
        f"{S3_TIMEOUT_ENV} sets the limit); check S3_ENDPOINT and that the "
        "server is up") from None
  except (OSError, http.client.HTTPException) as e:
    reason = getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"
    raise S3UnreachableError(
        f"S3 endpoint {url} cannot be reached ({reason}); check S3_ENDPOINT "
        "and that the server is up") from None
  finally:
    conn.close()
  _REACHED.add(url)


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

"""The training input pipeline on tf.data service (docs/SCALING.md).

``adafocus-train --data_service=grpc://HOST:PORT`` runs its training input
pipelines (shard reading, JPEG decoding, frame sampling, augmentation) on
the tf.data service workers of that dispatcher instead of the training
host's CPUs; ``adafocus-data-service`` starts them.

The address is a setting of the process, not of the run (``use``): where
the input is decoded changes no result, so it is not recorded in
``config.json``, and a run trained through the service resumes without it
(and one trained without it resumes through it).

Sharding: ``ShardingPolicy.DYNAMIC``. The dispatcher hands each worker the
next shard file of the epoch's order when it asks for one, so every video of
an epoch is decoded once, by one worker (no video twice, none missing, while
no worker fails: a worker that dies mid-shard loses the rest of that
shard's videos for the epoch). A video's frames and augmentation stay keyed
by (run seed, epoch, video id); the order in which videos arrive depends on
which worker finishes first, so batches are not bitwise reproducible.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Iterator, Optional, Tuple

import tensorflow as tf

from adafocus_tf import errors

SCHEME = "grpc://"
_ADDRESS = re.compile(r"^grpc://([^:/\s]+):(\d{1,5})$")
# Seconds a dispatcher has to answer before training is refused (the
# environment variable overrides the default).
CONNECT_TIMEOUT_ENV = "ADAFOCUS_DATA_SERVICE_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# The processing mode of every distributed pipeline (module doc).
SHARDING = tf.data.experimental.service.ShardingPolicy.DYNAMIC

# The dispatcher this process's training pipelines read from ("" none).
_ACTIVE = {"address": ""}


class DataServiceError(errors.RefusedError):
  """A data service address that is malformed or does not answer."""


def parse_address(address: str) -> str:
  """Checks the form ``grpc://HOST:PORT`` and returns ``address``.

  Args:
    address: a dispatcher address.

  Raises:
    DataServiceError: another form (named).
  """
  match = _ADDRESS.match(address)
  if not match or not 0 < int(match.group(2)) < 2**16:
    raise DataServiceError(f"--data_service={address}: expected "
                           f"{SCHEME}HOST:PORT of a tf.data service "
                           "dispatcher (adafocus-data-service)")
  return address


def connect_timeout() -> float:
  """``$ADAFOCUS_DATA_SERVICE_TIMEOUT`` seconds, else the default."""
  return float(os.environ.get(CONNECT_TIMEOUT_ENV) or
               DEFAULT_CONNECT_TIMEOUT_S)


def check_reachable(address: str, timeout: Optional[float] = None) -> None:
  """Registers an empty dataset with the dispatcher, waiting ``timeout``.

  tf.data service retries an absent dispatcher for a long time; this
  refuses it within ``timeout`` seconds instead, before training writes
  anything. (The waiting call goes on in a daemon thread, which the
  command's exit ends.)

  Args:
    address: ``grpc://HOST:PORT``.
    timeout: seconds to wait for the dispatcher's answer (default
      ``connect_timeout()``).

  Raises:
    DataServiceError: a malformed address, or no answer in time (named).
  """
  parse_address(address)
  timeout = connect_timeout() if timeout is None else timeout
  outcome = {}

  def register():
    try:
      tf.data.experimental.service.register_dataset(
          address, tf.data.Dataset.range(0))
      outcome["ok"] = True
    except Exception as e:  # pylint: disable=broad-except
      outcome["error"] = e

  thread = threading.Thread(target=register, daemon=True)
  thread.start()
  thread.join(timeout)
  if "ok" not in outcome:
    why = (f"{type(outcome['error']).__name__}: "
           f"{str(outcome['error']).splitlines()[0]}"
           if "error" in outcome else f"no answer in {timeout:g} s")
    raise DataServiceError(f"the tf.data service dispatcher {address} "
                           f"cannot be reached ({why}); start one with "
                           "adafocus-data-service")


@contextlib.contextmanager
def use(address: Optional[str]) -> Iterator[None]:
  """Training input pipelines built inside read through ``address``.

  Args:
    address: ``grpc://HOST:PORT``, or None/"" for the local pipeline.
  """
  saved = _ACTIVE["address"]
  _ACTIVE["address"] = address or ""
  try:
    yield
  finally:
    _ACTIVE["address"] = saved


def active() -> str:
  """The dispatcher of this process's training pipelines ("" for none)."""
  return _ACTIVE["address"]


def distribute(ds: tf.data.Dataset, address: str) -> tf.data.Dataset:
  """``ds`` produced by the service's workers, dynamically sharded.

  Each iteration of the result is a new job: one pass of ``ds``, split
  between the workers (module doc).

  Args:
    ds: an unbatched pipeline whose source is the list of shard files.
    address: ``grpc://HOST:PORT``.
  """
  return ds.apply(tf.data.experimental.service.distribute(
      processing_mode=SHARDING, service=address))


# Seconds adafocus-data-service may take to start (start_local).
START_TIMEOUT_S = 120.0
# What adafocus-data-service prints once its workers registered.
_READY = re.compile(r"dispatcher (grpc://\S+) with (\d+) local workers")


def start_local(num_workers: int, timeout: float = START_TIMEOUT_S,
                env: Optional[dict] = None
                ) -> Tuple[subprocess.Popen, str]:
  """Starts ``adafocus-data-service --port=0 --local_workers=N`` (a
  dispatcher on a free port and N worker processes) for benchmarks and
  tests; stop it with ``terminate()``.

  Args:
    num_workers: worker processes.
    timeout: seconds for the dispatcher to report its workers registered.
    env: the command's environment (default this process's).

  Returns:
    (the dispatcher's process, its ``grpc://`` address).

  Raises:
    RuntimeError: it exited or did not report in time.
  """
  proc = subprocess.Popen(
      [sys.executable, "-c", "from adafocus_tf.cli import data_service; "
       "data_service.run()", "--port=0", f"--local_workers={num_workers}"],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    match = _READY.search(line)
    if match:
      return proc, match.group(1)
  proc.kill()
  proc.wait()
  raise RuntimeError(f"adafocus-data-service --local_workers={num_workers} "
                     f"did not start (exit status {proc.returncode})")

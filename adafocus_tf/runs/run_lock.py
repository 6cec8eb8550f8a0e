"""One trainer per run directory.

Two trainers on one run would resume from each other's checkpoints
mid-flight and overwrite each other's ``ckpt-N`` files; the run would end as
a mix of both with nothing to say so. So the process that trains a run holds
its lock for as long as it trains:

* a local run: ``<run>/train.lock``, an OS file lock taken through the
  ``filelock`` library (the kernel frees it when the process ends, however
  it ends), with who holds it in ``<run>/train.lock.json`` (host, pid, start
  time, command);
* an ``s3://`` run: a lease, the object ``<run>/train.lease.json`` (the same
  fields, a random token and an expiry time) that the trainer renews every
  ``LEASE_SECONDS / 3`` seconds. Object stores have no lock: the trainer
  writes its lease, waits a moment and reads it back, and gives way if
  another token is there. A lease that is not renewed expires after
  ``LEASE_SECONDS``; one left by a process of this host that is no longer
  running is stale at once.

A second trainer refuses with ``RunLockedError`` (one ``error:`` line, exit
status 2) before writing anything. Readers (evaluate, predict, export) may
read a run that is being trained; ``holder`` tells them that it is.

Only the chief of a multi-worker job takes the lock; its workers write
nothing but their scratch checkpoints.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Optional

import filelock
import tensorflow as tf

from adafocus_tf import errors
from adafocus_tf import io_utils

LOCK_FILE = "train.lock"
HOLDER_FILE = "train.lock.json"
LEASE_FILE = "train.lease.json"
# An s3:// lease lives this long unless renewed (three renewals per life,
# so one slow write does not lose it).
LEASE_SECONDS = 90.0
# Between writing a lease and reading it back: time for a competing writer's
# lease to land, so that of two trainers starting together one gives way.
_LEASE_SETTLE_SECONDS = 1.0
# How long a trainer waits for the local lock: a reader's probe (``holder``)
# holds it for a moment.
_ACQUIRE_SECONDS = 2.0


class RunLockedError(errors.RefusedError):
  """Another trainer holds the run."""


def _utc(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(
      seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pid_running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who trains a run.

  Attributes:
    host: the trainer's host name.
    pid: its process id.
    since: when it took the run (seconds since the epoch).
    command: its command line.
    token: the lease's random token (``s3://`` runs), else "".
    expires: when the lease ends unless renewed (``s3://``), else 0.
  """
  host: str
  pid: int
  since: float
  command: str
  token: str = ""
  expires: float = 0.0

  @classmethod
  def of_this_process(cls, token: str = "", expires: float = 0.0):
    return cls(socket.gethostname(), os.getpid(), time.time(),
               " ".join(sys.argv), token, expires)

  @classmethod
  def read(cls, path: str) -> Optional["Holder"]:
    """The holder recorded in ``path``, or None (missing or unreadable)."""
    try:
      record = json.loads(io_utils.read_text(path))
      return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)
                    if f.name in record})
    except (tf.errors.NotFoundError, ValueError, TypeError, KeyError):
      return None

  def write(self, path: str) -> None:
    io_utils.write_json(path, dataclasses.asdict(self))

  def gone(self) -> bool:
    """Whether it was a process of this host that no longer runs."""
    return self.host == socket.gethostname() and not _pid_running(self.pid)

  def describe(self) -> str:
    """``pid 4242 on host h since 2026-12-06 19:50:01 UTC``."""
    return f"pid {self.pid} on host {self.host} since {_utc(self.since)}"


class RunLock:
  """The right to train one run directory, held from ``acquire`` to
  ``release`` (or as a context manager).

  Args:
    run: the run directory (local or ``s3://``); created if missing.
    lease_seconds: life of an ``s3://`` lease between renewals.

  Raises (``acquire``):
    RunLockedError: another trainer holds the run; the message names it
      and says how to clear a lock whose trainer is gone.
  """

  def __init__(self, run: str, lease_seconds: float = LEASE_SECONDS):
    self.run = run
    self.lease_seconds = lease_seconds
    self._remote = "://" in run
    self._file_lock = None
    self._token = ""
    self._stop = threading.Event()
    self._renewer = None

  def __enter__(self) -> "RunLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  # -- local ----------------------------------------------------------------
  def _holder_path(self) -> str:
    return io_utils.join(self.run, HOLDER_FILE)

  def _acquire_local(self) -> None:
    lock = filelock.FileLock(os.path.join(self.run, LOCK_FILE))
    try:
      lock.acquire(timeout=_ACQUIRE_SECONDS)
    except filelock.Timeout:
      raise RunLockedError(self._locked_message(
          Holder.read(self._holder_path()))) from None
    self._file_lock = lock
    previous = Holder.read(self._holder_path())
    if previous is not None:
      logging.info("%s: the previous trainer (%s) ended without releasing "
                   "it (killed?)", self.run, previous.describe())
    Holder.of_this_process().write(self._holder_path())

  def _locked_message(self, holder: Optional[Holder]) -> str:
    lock = os.path.join(self.run, LOCK_FILE)
    if holder is None:
      return (f"{self.run} is locked by another trainer ({lock} is held, "
              f"and {HOLDER_FILE} does not say by whom); one trainer per "
              "run directory: wait for it, or train into another --run_dir")
    if holder.gone():
      return (f"{self.run} is locked ({lock} is held), but the trainer that "
              f"took it ({holder.describe()}) is no longer running: a "
              "process it started may still hold the lock. If no trainer "
              f"runs on this run, clear the stale lock: rm {lock} "
              f"{self._holder_path()}")
    return (f"{self.run} is being trained by {holder.describe()} "
            f"({holder.command}); one trainer per run directory: wait for "
            "it, or train into another --run_dir. If that trainer is gone "
            "(a network filesystem may keep a stopped host's lock), clear "
            f"the stale lock: rm {lock} {self._holder_path()}")

  # -- s3:// -----------------------------------------------------------------
  def _lease_path(self) -> str:
    return io_utils.join(self.run, LEASE_FILE)

  def _write_lease(self) -> None:
    Holder.of_this_process(self._token,
                           time.time() + self.lease_seconds).write(
                               self._lease_path())

  def _acquire_lease(self) -> None:
    path = self._lease_path()
    current = Holder.read(path)
    if current is not None and current.expires > time.time() and (
        not current.gone()):
      raise RunLockedError(self._leased_message(current))
    if current is not None:
      logging.warning("%s: taking over the lease of %s, which %s", self.run,
                      current.describe(),
                      "is no longer running" if current.gone()
                      else f"expired at {_utc(current.expires)}")
    self._token = uuid.uuid4().hex
    self._write_lease()
    time.sleep(_LEASE_SETTLE_SECONDS)
    current = Holder.read(path)
    if current is None or current.token != self._token:
      self._token = ""
      raise RunLockedError(self._leased_message(current))
    self._renewer = threading.Thread(target=self._renew, daemon=True,
                                     name="run-lease")
    self._renewer.start()

  def _renew(self) -> None:
    while not self._stop.wait(self.lease_seconds / 3):
      try:
        self._write_lease()
      except (tf.errors.OpError, OSError) as e:
        # The next renewal retries; the lease lasts three periods.
        logging.warning("could not renew the lease of %s (%s)", self.run, e)

  def _leased_message(self, holder: Optional[Holder]) -> str:
    if holder is None:
      return f"{self.run}: another trainer took the run's lease just now"
    left = max(0, int(holder.expires - time.time()))
    return (f"{self.run} is being trained by {holder.describe()} "
            f"({holder.command}); one trainer per run directory: wait for "
            "it, or train into another --run_dir. Its lease expires in "
            f"{left} s unless renewed; if that trainer is gone, wait that "
            f"long, or clear the stale lease: delete {self._lease_path()}")

  # -- both ------------------------------------------------------------------
  def acquire(self) -> None:
    """Takes the run (see the class doc); raises ``RunLockedError``."""
    io_utils.makedirs(self.run)
    if self._remote:
      self._acquire_lease()
    else:
      self._acquire_local()

  def release(self) -> None:
    """Gives the run back (its holder record removed first)."""
    if self._remote and self._token:
      self._stop.set()
      self._renewer.join()
      current = Holder.read(self._lease_path())
      if current is not None and current.token == self._token:
        tf.io.gfile.remove(self._lease_path())
      self._token = ""
    elif self._file_lock is not None:
      if io_utils.exists(self._holder_path()):
        tf.io.gfile.remove(self._holder_path())
      self._file_lock.release()
      self._file_lock = None


def holder(run: str) -> Optional[Holder]:
  """The trainer holding ``run`` right now, or None.

  Args:
    run: the run directory (local or ``s3://``).
  """
  if "://" in run:
    lease = Holder.read(io_utils.join(run, LEASE_FILE))
    if lease is None or lease.expires <= time.time() or lease.gone():
      return None
    return lease
  recorded = Holder.read(io_utils.join(run, HOLDER_FILE))
  if recorded is None:
    return None
  probe = filelock.FileLock(os.path.join(run, LOCK_FILE))
  try:
    probe.acquire(timeout=0)
  except filelock.Timeout:
    return recorded
  except OSError:
    # A read-only run directory: the recorded process is all there is.
    return None if recorded.gone() else recorded
  probe.release()
  return None

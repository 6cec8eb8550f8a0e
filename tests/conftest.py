"""Shared pytest fixtures: a local S3 server (moto) for s3:// round trips.

Also, for every test and the command lines they start: TensorFlow's ops
on one thread each under xdist (below), and ``Predictor``'s
``auto`` backend takes the first backend that runs instead of timing them
(``$ADAFOCUS_AUTO_BACKEND=order``): on the shared CPU the suite runs on, a
backend's time varies several-fold with the load, so tests whose
assertions name the backend ``auto`` picks would pass or fail by chance,
and timing every backend would convert each run's models into every form.
tests/inference/test_ready_form.py sets ``measure`` to test the timing.
"""
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from adafocus_tf import local_cache
from adafocus_tf.inference import backend_calibration

os.environ.setdefault(backend_calibration.MODE_ENV, backend_calibration.ORDER)

# Under xdist (one worker per core, ``pytest_xdist_auto_num_workers``),
# every TensorFlow process of a worker, and the command lines it starts,
# computes each op on one thread: two workers each running TensorFlow's
# default pool of one thread per core, beside their subprocesses', spend
# the CPU on contention (measured on 2 cores: 7% less wall time for four
# training and inference modules). Set before TensorFlow starts its pools;
# a value in the environment wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# tensorflow-io 0.37's S3 filesystem reads S3_ENDPOINT (with the scheme:
# http:// means plain HTTP), S3_VERIFY_SSL and the AWS SDK's AWS_REGION /
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. It does not read S3_USE_HTTPS
# (TensorFlow's old built-in S3 did); it is set for other clients' sake.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "S3_USE_HTTPS": "0",
    "S3_VERIFY_SSL": "0",
    # No instance-metadata lookups (slow time-outs off EC2).
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclasses.dataclass
class S3Server:
  """A running moto S3 server.

  Attributes:
    endpoint: ``http://127.0.0.1:PORT``.
    env: the environment variables that point S3 clients at it (already
      set in ``os.environ`` while the fixture lives; pass them to
      subprocesses).
    process: the server process.
  """
  endpoint: str
  env: dict
  process: subprocess.Popen

  def client(self):
    """A boto3 S3 client for the server."""
    import boto3  # pylint: disable=g-import-not-at-top
    return boto3.client("s3", endpoint_url=self.endpoint,
                        region_name=self.env["AWS_REGION"],
                        aws_access_key_id="testing",
                        aws_secret_access_key="testing")

  def make_bucket(self, prefix: str = "test") -> str:
    """Creates a fresh bucket and returns its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    self.client().create_bucket(Bucket=name)
    return name

  def keys(self, bucket: str, prefix: str = ""):
    """Every object key under ``prefix``, sorted."""
    pages = self.client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


@pytest.fixture(scope="session", autouse=True)
def scratch_folder(tmp_path_factory):
  """One folder per test process for what tests and the libraries they
  drive write outside ``tmp_path``, removed when the session ends.

  ``tempfile``'s folder (trained runs shared across a module's tests,
  AutoGraph's generated sources, Beam's pipeline folders) and the
  package's machine cache (``local_cache``: converted TFLite models, cost
  and backend measurements) point into it, for this process and the
  commands it starts: without it every run of the suite would leave
  gigabytes in the system's temporary folder, and a test would read what
  an earlier run of other code had cached. pytest's own ``tmp_path``
  folders stay where pytest keeps them (asked for first).
  """
  tmp_path_factory.getbasetemp()
  scratch = tempfile.mkdtemp(prefix="adafocus-tests-")
  env = {"TMPDIR": os.path.join(scratch, "tmp"),
         local_cache.CACHE_DIR_ENV: os.path.join(scratch, "cache")}
  os.makedirs(env["TMPDIR"])
  try:
    with pytest.MonkeyPatch.context() as patch:
      for k, v in env.items():
        patch.setenv(k, v)
      patch.setattr(tempfile, "tempdir", env["TMPDIR"])
      yield scratch
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f"moto_server exited with {proc.returncode}")
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return
    except OSError:
      time.sleep(0.1)
  raise RuntimeError(f"moto_server did not listen on port {port} in "
                     f"{timeout:.0f} s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
  """A moto S3 server on 127.0.0.1 for the whole session.

  The S3 environment is set in ``os.environ`` for the session because
  tensorflow-io's S3 client reads it once, when the process first touches
  an s3:// path. The server is stopped at the end.
  """
  pytest.importorskip("moto.server", reason="needs moto[server]")
  pytest.importorskip("boto3")
  port = _free_port()
  endpoint = f"http://127.0.0.1:{port}"
  log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
  proc = subprocess.Popen(
      [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
       str(port)], stdout=log, stderr=subprocess.STDOUT)
  env = dict(S3_ENV, S3_ENDPOINT=endpoint)
  try:
    _wait_for_port(port, proc, timeout=60)
    with pytest.MonkeyPatch.context() as patch:
      for k, v in env.items():
        patch.setenv(k, v)
      _S3_STATE["used"] = True
      yield S3Server(endpoint, env, proc)
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
    log.close()


# tensorflow-io 0.37.1 aborts (status 134) in C++ teardown at the exit of a
# process that used S3 (tensorflow/io#2039), which would turn a passing
# session into a failed one. After a session that used the S3 server, end
# the process with pytest's own status once everything has been reported.
_S3_STATE = {"used": False, "status": None}


def pytest_sessionfinish(session, exitstatus):
  del session
  _S3_STATE["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
  del config
  if (_S3_STATE["used"] and _S3_STATE["status"] is not None and
      "tensorflow_io" in sys.modules):
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
    os._exit(_S3_STATE["status"])  # pylint: disable=protected-access


# Each worker imports TensorFlow and holds its module's tiny runs (1-3 GB);
# more than 4 gains little on the suite's longest modules.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
  """``-n auto`` (pytest.ini): one worker per core, at most ``MAX_WORKERS``."""
  del config
  return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


# Minutes each of the longest modules took in `.ci/run` (2 cores, test
# durations summed; 2026-12-07, 43 min of pytest: 86 test-minutes on two
# workers, so both were busy to the end). xdist hands whole modules to
# whichever worker is free, in the order of the items (pytest.ini turns off
# its reordering by test count, which queued these few-test modules last):
# starting the longest first keeps one worker from running the last long
# module alone while the other idles. Unlisted modules follow in
# collection order; the figures only rank, so a stale one costs minutes,
# never a result.
MODULE_MINUTES = {
    "tests/training/test_distributed.py": 14.7,
    "tests/convert/test_train_parity_v1.py": 6.7,
    "tests/training/test_resume.py": 6.3,
    "tests/convert/test_train_parity.py": 5.0,
    "tests/data/test_synthetic_objects.py": 3.7,
    "tests/convert/test_train_parity_uni.py": 3.4,
    "tests/convert/test_convert.py": 2.7,
    "tests/inference/test_predict.py": 2.6,
    "tests/cli/test_quickstart.py": 2.3,
    "tests/cli/test_cli.py": 2.1,
    "tests/convert/test_train_parity_uni_single_region.py": 2.1,
}


def pytest_collection_modifyitems(session, config, items):
  """Longest modules first (``MODULE_MINUTES``); a stable sort, so each
  module's tests keep their order."""
  del session, config
  items.sort(key=lambda item: -MODULE_MINUTES.get(
      item.nodeid.split("::", 1)[0], 0.0))

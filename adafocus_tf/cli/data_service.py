"""Starts a tf.data service: a dispatcher and workers that run training's
input pipeline (docs/SCALING.md).

  adafocus-data-service --port=5050 --local_workers=2
  adafocus-data-service --dispatcher=grpc://HEAD:5050 --local_workers=4 \\
      --worker_host=$(hostname)
  adafocus-train ... --data_service=grpc://HEAD:5050

(``python launch/data_service.py`` is the same command.)

With ``--port`` this process is the dispatcher and starts
``--local_workers`` worker processes beside it; with ``--dispatcher`` it
starts workers on this host for a dispatcher elsewhere (one worker runs in
this process). It prints one line once every worker has registered and
serves until it is stopped (Ctrl-C or SIGTERM), its workers with it.
Workers read the shards themselves: an ``s3://`` dataset needs the S3
variables (WORKSPACE.md) in their environment.
"""
import os
import signal
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.data import data_service

FLAGS = flags.FLAGS
COMMAND = common.Command(__name__)
flags.DEFINE_integer("port", None, "Start the dispatcher on this port "
                     "(0: a free one, printed) and --local_workers workers "
                     "for it.")
flags.DEFINE_string("dispatcher", None, "Start only workers, for the "
                    "dispatcher at grpc://HOST:PORT.")
flags.DEFINE_integer("local_workers", 1, "Worker processes started on this "
                     "host (with --port, 0: the dispatcher alone).")
flags.DEFINE_string("worker_host", "localhost", "The name by which training "
                    "hosts reach this host's workers.")
flags.DEFINE_float("register_timeout", 120.0, "Seconds the workers have to "
                   "register with the dispatcher.")

# Seconds between checks that the parent (or the workers) still run.
_POLL_S = 0.5
# The variables tensorflow-io's S3 filesystem reads: a worker given them
# registers it, and can read s3:// shards.
_S3_VARIABLES = ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID")


def _start_worker(dispatcher: str):
  """One worker in this process; returns its server.

  Args:
    dispatcher: ``grpc://HOST:PORT``.
  """
  if any(os.environ.get(v) for v in _S3_VARIABLES):
    io_utils.ensure_filesystem("s3://")
  return tf.data.experimental.service.WorkerServer(
      tf.data.experimental.service.WorkerConfig(
          dispatcher_address=dispatcher[len(data_service.SCHEME):],
          worker_address=f"{FLAGS.worker_host}:%port%"))


def _worker_processes(dispatcher: str, count: int):
  """``count`` processes of this command, each one worker of ``dispatcher``.

  Args:
    dispatcher: ``grpc://HOST:PORT``.
    count: how many.
  """
  argv = [sys.executable, "-c", f"from {__name__} import run; run()",
          f"--dispatcher={dispatcher}", "--local_workers=1",
          f"--worker_host={FLAGS.worker_host}",
          f"--log_level={FLAGS.log_level}"]
  return [subprocess.Popen(argv) for _ in range(count)]


def _exit_with_parent() -> None:
  """Ends this process when the process that started it ends."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(_POLL_S)
    io_utils.exit_process(0)
  threading.Thread(target=watch, daemon=True).start()


def _serve(children) -> int:
  """Waits for a signal or a worker process's end; stops the workers.

  Args:
    children: the worker processes.

  Returns:
    The exit status: 0 when stopped, 1 when a worker ended by itself.
  """
  stop = threading.Event()
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
  failed = None
  while not stop.wait(_POLL_S):
    failed = next((c for c in children if c.poll() is not None), None)
    if failed:
      print(f"error: tf.data service worker (pid {failed.pid}) exited with "
            f"status {failed.returncode}", file=sys.stderr)
      break
  for child in children:
    child.terminate()
  for child in children:
    child.wait()
  return 1 if failed else 0


def _wait_for_workers(dispatcher, count: int) -> None:
  """Waits until ``count`` workers registered with ``dispatcher``.

  Args:
    dispatcher: the ``DispatchServer``.
    count: workers expected.

  Raises:
    app.UsageError: not within ``--register_timeout`` seconds.
  """
  deadline = time.monotonic() + FLAGS.register_timeout
  # pylint: disable-next=protected-access
  while dispatcher._num_workers() < count:
    if time.monotonic() > deadline:
      raise app.UsageError(
          f"{count} tf.data service workers did not register in "
          f"{FLAGS.register_timeout:g} s")
    time.sleep(_POLL_S)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if (FLAGS.port is None) == (FLAGS.dispatcher is None):
    raise app.UsageError("give --port (start a dispatcher) or --dispatcher "
                         "(start workers for one), not both")
  if FLAGS.local_workers < 0 or (FLAGS.dispatcher and
                                 FLAGS.local_workers < 1):
    raise app.UsageError(f"--local_workers={FLAGS.local_workers}: at least "
                         f"{1 if FLAGS.dispatcher else 0}")
  if FLAGS.dispatcher:
    data_service.parse_address(FLAGS.dispatcher)
    if FLAGS.local_workers == 1:
      _exit_with_parent()
      worker = _start_worker(FLAGS.dispatcher)
      print(f"tf.data service worker for {FLAGS.dispatcher}", flush=True)
      worker.join()
      return 0
    children = _worker_processes(FLAGS.dispatcher, FLAGS.local_workers)
    print(f"tf.data service: {FLAGS.local_workers} workers for "
          f"{FLAGS.dispatcher}", flush=True)
    return _serve(children)
  dispatcher = tf.data.experimental.service.DispatchServer(
      tf.data.experimental.service.DispatcherConfig(port=FLAGS.port))
  # The bound port (--port=0 picks a free one).
  address = dispatcher.target
  children = _worker_processes(address, FLAGS.local_workers)
  try:
    _wait_for_workers(dispatcher, FLAGS.local_workers)
  except app.UsageError:
    for child in children:
      child.kill()
    raise
  print(f"tf.data service: dispatcher {address} with {FLAGS.local_workers} "
        f"local workers; train with --data_service={address}", flush=True)
  return _serve(children)


def run() -> None:
  """The ``adafocus-data-service`` console script (and
  ``launch/data_service.py``)."""
  COMMAND.run(main)

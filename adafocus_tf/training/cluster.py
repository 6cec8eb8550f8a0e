"""A multi-worker cluster joined within a bounded time, or a one-line error.

``MultiWorkerMirroredStrategy`` reads the cluster from ``TF_CONFIG`` and
waits, without a limit, for every worker it names to answer (and ignores
SIGTERM meanwhile); a ``TF_CONFIG`` naming one address twice makes two
tasks claim one port. ``join`` checks the cluster first, then builds the
strategy under a watchdog (``join_watchdog.py``): a peer that has not
joined within the timeout ends the process with one line naming it,
before anything was written.

Once joined, a worker that dies is noticed by TensorFlow's coordination
service (its heartbeats stop; about 10 s): the collectives of the others
are aborted with ``tf.errors.UnavailableError``, which ``lost_worker``
turns into one line.
"""
from __future__ import annotations

import faulthandler
import json
import os
import socket
import subprocess
import sys
from typing import Dict, List, Tuple

import tensorflow as tf

from adafocus_tf import errors
from adafocus_tf.training import join_watchdog

# Seconds to wait for the other workers to start (flag --cluster_timeout).
DEFAULT_JOIN_TIMEOUT_S = 300
# Seconds the watchdog may take to name the missing peers before this
# process ends: a probe of each.
_WATCHDOG_GRACE_S = 3 * join_watchdog.PROBE_TIMEOUT_S
# Where faulthandler's timer writes the tracebacks it must write.
_DEVNULL = open(os.devnull, "w")  # pylint: disable=consider-using-with
# The part of TensorFlow's message after this says why collectives stopped.
_ABORT_CAUSE = "Collective ops is aborted by: "


class ClusterError(errors.RefusedError):
  """A TF_CONFIG that cannot form a cluster (named in the message)."""


class WorkerLostError(errors.RefusedError):
  """A worker of a running multi-worker job stopped."""


def cluster_of(tf_config: str) -> Tuple[Dict[str, List[str]], str, int]:
  """Checks a ``TF_CONFIG`` and returns its cluster and this task.

  Args:
    tf_config: the ``TF_CONFIG`` text.

  Returns:
    (the cluster {job: [host:port]}, this task's type, its index).

  Raises:
    ClusterError: not JSON, no cluster or task, this task not in the
      cluster, or an address named twice (each named).
  """
  try:
    spec = json.loads(tf_config)
    cluster, task = spec["cluster"], spec["task"]
    task_type, index = task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ClusterError(f"TF_CONFIG is not a cluster and a task ({e!r}): "
                       f"{tf_config}") from None
  jobs = cluster.get(task_type)
  if not isinstance(jobs, list) or not 0 <= index < len(jobs):
    raise ClusterError(f"TF_CONFIG's task {task_type} {index} is not in "
                       f"its cluster {json.dumps(cluster)}")
  seen = {}
  for job, addresses in cluster.items():
    for i, address in enumerate(addresses):
      key = address.strip().lower()
      if key in seen:
        raise ClusterError(
            f"TF_CONFIG names {address} twice ({seen[key]} and {job} {i}): "
            "each worker needs its own host:port")
      seen[key] = f"{job} {i}"
  return cluster, task_type, index


def loopback_addresses(n: int) -> List[str]:
  """``n`` free ``127.0.0.1:port`` addresses: a cluster on this host (the
  tests', the benchmark's; free when asked, not reserved)."""
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
  for s in socks:
    s.close()
  return addresses


def join(timeout_s: float = DEFAULT_JOIN_TIMEOUT_S
         ) -> tf.distribute.MultiWorkerMirroredStrategy:
  """The strategy of the cluster in ``TF_CONFIG``, once every worker joined.

  Args:
    timeout_s: seconds to wait for the other workers; past them a watchdog
      process (``join_watchdog.py``) prints ``error: ...`` naming those
      that do not answer and this process ends (status 1): TensorFlow's
      wait holds the interpreter lock, so nothing here can interrupt it.

  Raises:
    ClusterError: a ``TF_CONFIG`` that names an address twice, or whose
      task is not in its cluster.
  """
  tf_config = os.environ.get("TF_CONFIG", "")
  if not tf_config:
    return tf.distribute.MultiWorkerMirroredStrategy()
  cluster, task_type, index = cluster_of(tf_config)
  watchdog = subprocess.Popen(
      [sys.executable, join_watchdog.__file__, str(timeout_s),
       json.dumps(cluster), task_type, str(index)], stdin=subprocess.PIPE)
  # The process's own end, past the watchdog's line (its peer probes).
  faulthandler.dump_traceback_later(
      timeout_s + _WATCHDOG_GRACE_S, exit=True, file=_DEVNULL)
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  # The strategy may return before its peers answer; the first collective
  # waits for them all.
  barrier(strategy)
  faulthandler.cancel_dump_traceback_later()
  watchdog.stdin.close()
  watchdog.wait()
  return strategy


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits until every worker reached this call (a no-op on one worker).

  What one worker wrote before it (the chief's ``done.json``, its
  ``config.json``) is there for the others after it.

  Args:
    strategy: the run's strategy.
  """
  if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
      strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)):
    # Compiled: an eager collective under this strategy warns of its cost.
    tf.function(lambda: strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.ones([])),
        axis=None))()


def lost_worker(error: tf.errors.OpError, where: str) -> WorkerLostError:
  """The one-line error of a collective aborted because a worker stopped.

  Args:
    error: TensorFlow's error (``UnavailableError``, ...).
    where: what was running and how to go on, e.g. "in stage 1 (last
      checkpoint: step 4)".
  """
  text = error.message
  cause = text.split(_ABORT_CAUSE, 1)[-1].strip().splitlines()[0]
  return WorkerLostError(f"a worker of the multi-worker job stopped {where}: "
                         f"{cause} Run the same command on every worker to "
                         "resume from the last checkpoint.")

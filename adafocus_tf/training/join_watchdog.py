"""Names the workers of a cluster that did not join in time (stdlib only).

TensorFlow's wait for the other workers holds Python's interpreter lock, so
no thread of the waiting process can report it: ``cluster.join`` runs this
file as a separate process (by path, without importing TensorFlow), which
waits for the joined process to close its stdin and, past the timeout,
prints one line naming the peers that accept no connection. The waiting
process ends itself meanwhile (``faulthandler``'s timer, which needs no
interpreter lock).

  python join_watchdog.py TIMEOUT_S CLUSTER_JSON TASK_TYPE INDEX
"""
import json
import select
import socket
import sys
from typing import Dict, List

# Seconds a TCP probe of a peer may take.
PROBE_TIMEOUT_S = 2.0


def unreachable_peers(cluster: Dict[str, List[str]], task_type: str,
                      index: int) -> List[str]:
  """The other tasks whose address accepts no TCP connection, named.

  Args:
    cluster: {job: [host:port]}.
    task_type: this task's job.
    index: this task's index.
  """
  missing = []
  for job, addresses in cluster.items():
    for i, address in enumerate(addresses):
      if (job, i) == (task_type, index):
        continue
      host, _, port = address.rpartition(":")
      try:
        socket.create_connection((host, int(port)), PROBE_TIMEOUT_S).close()
      except (OSError, ValueError):
        missing.append(f"{job} {i} ({address})")
  return missing


def message(timeout_s: float, missing: List[str]) -> str:
  """The error line of a cluster that did not form."""
  who = ", ".join(missing) or "none (every peer answers, one has not joined)"
  return (f"error: the multi-worker cluster did not form within "
          f"{timeout_s:g} s (--cluster_timeout): no answer from {who} of "
          "TF_CONFIG")


def main(timeout_s, cluster_json, task_type, index) -> int:
  timeout_s = float(timeout_s)
  ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
  if ready:
    # Closed: the process joined (or ended).
    return 0
  print(message(timeout_s, unreachable_peers(json.loads(cluster_json),
                                             task_type, int(index))),
        file=sys.stderr, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))

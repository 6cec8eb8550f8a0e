"""Timing helpers shared by the benchmarks: medians, the matmul peak, and
variants run in fresh processes."""
import json
import os
import statistics
import subprocess
import sys
import time


def timed(fn, repeats, warmup=1):
  """Runs ``fn`` ``warmup`` times, then times ``repeats`` calls.

  Returns:
    (median seconds, all timed seconds).
  """
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def matmul_peak_gmacs(n, repeats=5):
  """Median multiply-accumulates per second (G) of an n x n float32 matmul."""
  # Imported here: a benchmark may configure TensorFlow before importing it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  seconds, _ = timed(lambda: f().numpy(), max(repeats, 5), warmup=2)
  return n ** 3 / seconds / 1e9


def peak_memory_mb() -> float:
  """This process's peak resident memory (MiB): /proc's VmHWM, its own.
  ``getrusage``'s ``ru_maxrss`` would carry over the peak of the process
  that started it (Linux keeps it across fork and exec)."""
  with open("/proc/self/status", encoding="utf-8") as f:
    return next(int(line.split()[1]) for line in f
                if line.startswith("VmHWM:")) / 1024


ROWS_PREFIX = "ROWS "


def variant_rows(script, variant, args):
  """Runs one variant of a benchmark script in a fresh process.

  For settings that only take effect before TensorFlow starts: the script,
  called with ``--variant=VARIANT`` and ``args``, prints one line
  ``ROWS <json list>`` (``ROWS_PREFIX``); ``no_onednn`` runs it with
  ``TF_ENABLE_ONEDNN_OPTS=0``.

  Args:
    script: path of the benchmark script.
    variant: the variant's name.
    args: further command-line arguments (the parent's flags).

  Returns:
    The rows it printed, or one row with the variant and its error.
  """
  env = dict(os.environ)
  if variant == "no_onednn":
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
  proc = subprocess.run([sys.executable, script, f"--variant={variant}"]
                        + list(args), env=env, capture_output=True,
                        text=True, check=False)
  found = [l for l in proc.stdout.splitlines() if l.startswith(ROWS_PREFIX)]
  if found:
    return json.loads(found[-1][len(ROWS_PREFIX):])
  return [{"variant": variant, "error": proc.stderr.strip()[-300:]}]

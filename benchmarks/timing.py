"""Timing helpers shared by the benchmarks: medians and the matmul peak."""
import statistics
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

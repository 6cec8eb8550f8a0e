"""A stage-1 training step's time at 1 and 2 local workers.

  python benchmarks/multi_worker.py [--presets=synthetic] [--method=v1]
      [--batch_size=8] [--repeats=20] [--workers=1,2]

For each worker count N, N processes of this script on this host form a
``MultiWorkerMirroredStrategy`` cluster over loopback (a real
``TF_CONFIG``, as ``adafocus-train --strategy=multi_worker`` does) and time
the compiled stage-1 step (``train_step.py``'s: V1 random patches, V2's
end-to-end stage) on in-memory batches of the same global batch, split
over the workers: the compute and the all-reduce, no input pipeline.
Reports the chief's median step time, its videos per second and its
process CPU seconds per step, beside the float32 matmul peak measured
before and after and the load average (workers sharing one machine's
cores compete for them: on a 2-core host two workers cannot be faster,
this measures the cost of the collectives).
"""
import json
import os
import subprocess
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.training import cluster
from adafocus_tf.training import experiment
from adafocus_tf.training import strategy as strategy_lib
from benchmarks import scratch
from benchmarks import timing
# Its flags (presets, method, batch_size, repeats, matmul_size) are this
# benchmark's too.
from benchmarks import train_step

FLAGS = flags.FLAGS
flags.DEFINE_list("workers", ["1", "2"], "Worker counts timed.")
flags.DEFINE_integer("worker_of", 0, "Internal: run as one worker of a "
                     "cluster of this many (TF_CONFIG set by the parent).")
# Seconds a cluster's run may take.
_RUN_TIMEOUT_S = 1800


def worker_rows():
  """One worker's part: times the step; the chief prints its rows."""
  strategy = strategy_lib.make_strategy("multi_worker")
  global_batch = FLAGS.batch_size
  rows = []
  for preset in FLAGS.presets:
    cfg = config_lib.get_preset(preset, FLAGS.method)
    cfg.mixed_precision = ""
    trainer = experiment.make_trainer(cfg, 1, strategy, scratch.folder(),
                                      progress=False)
    train = trainer.make_train_fn(global_batch)
    data = iter(strategy.distribute_datasets_from_function(
        lambda ctx, cfg=cfg: tf.data.Dataset.from_tensors(
            train_step.fake_batch(cfg, ctx.get_per_replica_batch_size(
                global_batch))).repeat()))
    cpu = time.process_time()
    median, times = timing.timed(lambda: float(train(next(data))["loss"]),
                                 FLAGS.repeats, warmup=2)
    rows.append({"preset": preset, "method": FLAGS.method,
                 "workers": FLAGS.worker_of, "global_batch": global_batch,
                 "step_ms_median": round(1000 * median, 1),
                 "step_ms_min": round(1000 * min(times), 1),
                 "videos_per_s": round(global_batch / median, 1),
                 # Warm-up included: a bound on the timed steps' share.
                 "cpu_s_per_step": round((time.process_time() - cpu) /
                                         (FLAGS.repeats + 2), 3)})
  if strategy_lib.is_chief(strategy):
    print(timing.ROWS_PREFIX + json.dumps(rows), flush=True)


def cluster_rows(n):
  """Runs a cluster of ``n`` workers of this script; the chief's rows."""
  workers = cluster.loopback_addresses(n)
  procs = []
  for i in range(n):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": {"worker": workers},
         "task": {"type": "worker", "index": i}}))
    args = [a for a in sys.argv[1:] if not a.startswith("--workers")]
    procs.append(subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), f"--worker_of={n}"] + args,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=_RUN_TIMEOUT_S) for p in procs]
  for line in outs[0][0].splitlines():
    if line.startswith(timing.ROWS_PREFIX):
      return json.loads(line[len(timing.ROWS_PREFIX):])
  return [{"workers": n, "error": outs[0][1][-2000:]}]


def main(_):
  if FLAGS.worker_of:
    worker_rows()
    return
  load_before = os.getloadavg()
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  rows = [r for n in FLAGS.workers for r in cluster_rows(int(n))]
  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  print(json.dumps({"matmul_peak_gmacs_per_s": round(peak, 1),
                    "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2)
                                           for x in os.getloadavg()],
                    "cpu_cores": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

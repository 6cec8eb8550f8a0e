"""AdaFocus V1 against AdaFocusV2 and Uni-AdaFocus: accuracy, training
time, cost, speed.

  python benchmarks/v1_vs_v2.py --workspace=/tmp/v1v2 [--seeds=0,1]
      [--dataset=synthetic_objects]
  python benchmarks/v1_vs_v2.py --minik [--batch_sizes=1,32] [--repeats=3]

An embedded dataset (default ``synthetic``; ``--dataset=synthetic_objects``
for the objects data, docs/SYNTHETIC.md), with its V1 and V2 presets: for
each seed, on this machine, one after the other (V1 and V2 alternate):

  1. V1 stage 0 (``adafocus-train --stage=0``), the backbones both methods
     start from;
  2. V1 stages 1-3 (random patches, the PPO policy, policy patches), timed;
  3. each end-to-end method's stage (``--methods``, default V2 and
     Uni-AdaFocus: ``adafocus-train --method=M --stage=1``) in a run
     directory of its own holding a copy of that same stage 0, timed;
  4. each run's results table (``adafocus-train`` on the finished run: the
     policy / random / centre / oracle / glance-only rows, GFLOPs per
     video) and its inference rate (``--time_run``: the recognizer with
     the learned policy, one compiled call per batch of in-memory
     validation-sized clips, median of ``--repeats``).

Training wall-clock is the ``adafocus-train`` process's (TensorFlow start,
graph tracing, checkpoints included, the same for both). The load average
and the float32 matmul peak are recorded before and after each seed.

``--minik``: the V1 and V2 ``minik`` presets (T=16 frames of 224x224,
MobileNetV2 glance, ResNet-50 focus at P=128), random weights, the whole
recognizer with the learned-policy patches, videos/s at each batch size.

Prints one JSON document and, for the embedded dataset, the Markdown
tables of docs/BENCHMARKS.md.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf.data import embedded
from adafocus_tf.runs import trained_run
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_string("workspace", "/tmp/v1v2", "Workspace of the runs (the "
                    "embedded data is generated there once).")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds, each a V1 and a V2 run.")
flags.DEFINE_enum("dataset", "synthetic", list(embedded.DATASETS),
                  "The embedded dataset (and presets) of the runs.")
flags.DEFINE_list("methods", ["v2", "uni"], "The end-to-end methods trained "
                  "from V1's stage 0 beside V1.")
flags.DEFINE_list("v2_overrides", [], "Extra --override values of the "
                  "end-to-end runs (key=value), e.g. to try other stage-1 "
                  "settings.")
flags.DEFINE_boolean("minik", False, "Time the minik presets' inference "
                     "instead (random weights, no training).")
flags.DEFINE_list("batch_sizes", ["1", "32"], "--minik: batch sizes.")
flags.DEFINE_integer("repeats", 3, "Timed calls; the median is reported.")
flags.DEFINE_integer("matmul_size", 1024, "Side of the peak-matmul operands.")
flags.DEFINE_string("time_run", None, "Internal: print the inference rate "
                    "of this run directory (a fresh process per run).")

TRAIN = "adafocus-train"
ROWS = ("policy", "random", "random@stage1", "centre", "centre@stage1",
        "oracle", "glance_only")


def _train(args):
  """Runs ``adafocus-train args``; returns its wall-clock seconds."""
  start = time.perf_counter()
  proc = subprocess.run([TRAIN, "--noprogress"] + args, capture_output=True,
                        text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"{TRAIN} {' '.join(args)} failed:\n"
                       f"{proc.stderr[-3000:]}")
  return time.perf_counter() - start


def _machine(tag):
  return {f"load_average_{tag}": [round(x, 2) for x in os.getloadavg()],
          f"matmul_peak_gmacs_per_s_{tag}": round(
              timing.matmul_peak_gmacs(FLAGS.matmul_size), 1)}


def _inference_rate(run):
  """The ``--time_run`` rate of ``run``, measured in a fresh process."""
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--time_run={run}",
       f"--repeats={FLAGS.repeats}"], capture_output=True, text=True,
      check=False)
  found = [l for l in proc.stdout.splitlines()
           if l.startswith(timing.ROWS_PREFIX)]
  if not found:
    raise RuntimeError(f"timing {run} failed:\n{proc.stderr[-3000:]}")
  return json.loads(found[-1][len(timing.ROWS_PREFIX):])


def _results(run):
  """The results table ``adafocus-train`` wrote into the run's metrics."""
  with open(os.path.join(run, "metrics.json")) as f:
    return json.load(f)["results"]


def one_seed(seed):
  """V1 stage 0, V1 stages 1-3, each end-to-end method from the same stage
  0; tables, rates."""
  ws, dataset = FLAGS.workspace, FLAGS.dataset
  common = [f"--workspace={ws}", f"--seed={seed}", f"--dataset={dataset}"]
  v1 = os.path.join(ws, "runs", f"{dataset}-p16-s{seed}")
  row = {"seed": seed, **_machine("before")}
  row["v1_stage0_s"] = round(_train(common + ["--stage=0", "--noevaluate"]),
                             1)
  row["v1_train_s"] = round(_train(common + ["--stage=1,2,3",
                                             "--noevaluate"]), 1)
  _train(common + ["--stage=0,1,2,3"])  # Only writes the results table.
  row["v1"] = _results(v1)
  row["v1_inference"] = _inference_rate(v1)
  for method in FLAGS.methods:
    run = os.path.join(ws, "runs", f"{dataset}-{method}-p16-s{seed}")
    if os.path.exists(run):
      shutil.rmtree(run)
    os.makedirs(run)
    # The same stage-0 backbones: the method's stage 1 starts from stage
    # 0's last checkpoint, as in a run that trained stage 0 itself.
    shutil.copytree(os.path.join(v1, "stage0"), os.path.join(run, "stage0"))
    args = common + [f"--method={method}"] + [
        f"--override={o}" for o in FLAGS.v2_overrides]
    row[f"{method}_train_s"] = round(_train(args + ["--stage=1",
                                                    "--noevaluate"]), 1)
    _train(args + ["--stage=0,1"])  # Only writes the results table.
    row[method] = _results(run)
    row[f"{method}_inference"] = _inference_rate(run)
  row.update(_machine("after"))
  return row


def _markdown(rows):
  """The top-1 table and the time / cost / speed table of the seeds."""
  methods = ["v1"] + list(FLAGS.methods)
  head = "| top-1 (%) | " + " | ".join(ROWS) + " |"
  lines = [head, "|" + " --- |" * (len(ROWS) + 1)]
  for r in rows:
    for method in methods:
      cells = [f"{r[method]['rows'][k]['top1']:.2f}"
               if k in r[method]["rows"] else "-" for k in ROWS]
      lines.append(f"| {method.upper()} seed {r['seed']} | "
                   + " | ".join(cells) + " |")
  lines += ["", "| | method | training (stage 1, or V1's 1-3) | x V1 | "
            "GFLOPs (policy row) | inference videos/s | load average |",
            "|" + " --- |" * 7]
  for r in rows:
    for m in methods:
      lines.append(
          f"| seed {r['seed']} | {m} | {r[f'{m}_train_s']:.0f} s | "
          f"{r[f'{m}_train_s'] / r['v1_train_s']:.2f} | "
          f"{r[m]['rows']['policy']['gflops_per_video']:.3f} | "
          f"{r[f'{m}_inference']['videos_per_s']:.1f} | "
          f"{r['load_average_before'][0]:.1f} -> "
          f"{r['load_average_after'][0]:.1f} |")
  return "\n".join(lines)


def _clips(cfg, batch_size):
  # Imported here: --time_run and --minik run in processes of their own.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  s = cfg.data.frame_size
  return {"frames": tf.random.stateless_normal(
      [batch_size, cfg.data.num_frames, s, s, 3], [0, 1]),
          "seed": tf.zeros([batch_size, 2], tf.int64)}


def _rate(recognizer, batch_size):
  """Videos/s of one compiled whole-clip call with the policy's patches."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  batch = _clips(recognizer.cfg, batch_size)
  predict = tf.function(lambda b: recognizer(b, "policy").probs)
  seconds, all_s = timing.timed(lambda: predict(batch).numpy(),
                                FLAGS.repeats)
  return {"batch_size": batch_size,
          "videos_per_s": round(batch_size / seconds, 2),
          "s_per_call": [round(x, 4) for x in all_s]}


def time_run(run):
  """Prints the inference rate of a trained run (``ROWS_PREFIX`` line)."""
  recognizer = trained_run.TrainedRun(run).recognizer()
  print(timing.ROWS_PREFIX + json.dumps(
      _rate(recognizer, recognizer.cfg.eval_batch_size)))


def minik():
  """V1 and V2 ``minik`` presets, random weights: videos/s per batch size."""
  from adafocus_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from adafocus_tf.inference import loading  # pylint: disable=g-import-not-at-top
  from adafocus_tf.models import factory  # pylint: disable=g-import-not-at-top
  from adafocus_tf.policy import greedy  # pylint: disable=g-import-not-at-top
  out = _machine("before")
  out["rows"] = []
  for method in ("v1", "v2"):
    cfg = config_lib.get_preset("minik", method)
    model = factory.build_model(cfg)
    model.build_all()
    policy = (None if method == "v2" else
              greedy.GreedyPolicy.build(cfg, model.glance.map_shape))
    recognizer = loading.build(cfg, model, policy)
    for b in FLAGS.batch_sizes:
      out["rows"].append({"method": method, "patch_size":
                          cfg.model.patch_size, **_rate(recognizer, int(b))})
  out.update(_machine("after"))
  out["cpu_cores"] = os.cpu_count()
  print(json.dumps(out, indent=2))


def main(_):
  if FLAGS.time_run:
    time_run(FLAGS.time_run)
  elif FLAGS.minik:
    minik()
  else:
    rows = [one_seed(int(s)) for s in FLAGS.seeds]
    print(json.dumps({"cpu_cores": os.cpu_count(), "seeds": rows}, indent=2))
    print(_markdown(rows))


if __name__ == "__main__":
  app.run(main)

"""AdaFocus V1 against AdaFocusV2: accuracy, training time, cost, speed.

  python benchmarks/v1_vs_v2.py --workspace=/tmp/v1v2 [--seeds=0,1]
      [--dataset=synthetic_objects]
  python benchmarks/v1_vs_v2.py --minik [--batch_sizes=1,32] [--repeats=3]

An embedded dataset (default ``synthetic``; ``--dataset=synthetic_objects``
for the objects data, docs/SYNTHETIC.md), with its V1 and V2 presets: for
each seed, on this machine, one after the other (V1 and V2 alternate):

  1. V1 stage 0 (``adafocus-train --stage=0``), the backbones both methods
     start from;
  2. V1 stages 1-3 (random patches, the PPO policy, policy patches), timed;
  3. V2's one end-to-end stage (``adafocus-train --method=v2 --stage=1``)
     in a V2 run directory holding a copy of that same stage 0, timed;
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
flags.DEFINE_list("v2_overrides", [], "Extra --override values of the V2 "
                  "runs (key=value), e.g. to try other stage-1 settings.")
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
  """V1 stage 0, V1 stages 1-3, V2 from the same stage 0; tables, rates."""
  ws, dataset = FLAGS.workspace, FLAGS.dataset
  common = [f"--workspace={ws}", f"--seed={seed}", f"--dataset={dataset}"]
  v1 = os.path.join(ws, "runs", f"{dataset}-p16-s{seed}")
  v2 = os.path.join(ws, "runs", f"{dataset}-v2-p16-s{seed}")
  row = {"seed": seed, **_machine("before")}
  row["v1_stage0_s"] = round(_train(common + ["--stage=0", "--noevaluate"]),
                             1)
  row["v1_train_s"] = round(_train(common + ["--stage=1,2,3",
                                             "--noevaluate"]), 1)
  if os.path.exists(v2):
    shutil.rmtree(v2)
  os.makedirs(v2)
  # The same stage-0 backbones: V2's stage 1 starts from stage 0's last
  # checkpoint, as in a V2 run that trained stage 0 itself.
  shutil.copytree(os.path.join(v1, "stage0"), os.path.join(v2, "stage0"))
  v2_args = common + ["--method=v2"] + [f"--override={o}"
                                        for o in FLAGS.v2_overrides]
  row["v2_train_s"] = round(_train(v2_args + ["--stage=1",
                                              "--noevaluate"]), 1)
  # Every stage is done: these commands only write the results tables.
  _train(common + ["--stage=0,1,2,3"])
  _train(v2_args + ["--stage=0,1"])
  row["v1"], row["v2"] = _results(v1), _results(v2)
  row["v1_inference"] = _inference_rate(v1)
  row["v2_inference"] = _inference_rate(v2)
  row.update(_machine("after"))
  return row


def _markdown(rows):
  """The top-1 table and the time / cost / speed table of the seeds."""
  head = "| top-1 (%) | " + " | ".join(ROWS) + " |"
  lines = [head, "|" + " --- |" * (len(ROWS) + 1)]
  for r in rows:
    for method in ("v1", "v2"):
      cells = [f"{r[method]['rows'][k]['top1']:.2f}"
               if k in r[method]["rows"] else "-" for k in ROWS]
      lines.append(f"| {method.upper()} seed {r['seed']} | "
                   + " | ".join(cells) + " |")
  lines += ["", "| | V1 stages 1-3 | V2 stage 1 | V2 / V1 | V1 GFLOPs | "
            "V2 GFLOPs | V1 videos/s | V2 videos/s | load average |",
            "|" + " --- |" * 9]
  for r in rows:
    gf = lambda m: r[m]["rows"]["policy"]["gflops_per_video"]
    lines.append(
        f"| seed {r['seed']} | {r['v1_train_s']:.0f} s | "
        f"{r['v2_train_s']:.0f} s | {r['v2_train_s'] / r['v1_train_s']:.2f} "
        f"| {gf('v1'):.3f} | {gf('v2'):.3f} | "
        f"{r['v1_inference']['videos_per_s']:.1f} | "
        f"{r['v2_inference']['videos_per_s']:.1f} | "
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

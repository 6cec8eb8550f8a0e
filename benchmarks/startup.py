"""Start-up of the tools on a run: where the first call's time goes.

  python benchmarks/startup.py [--families=v2_actnet,v1_minik,...]
      [--before=/path/to/old/tree] [--rounds=2] [--tools=predict,...]

For each family at its paper preset (random weights: a run trained for one
step of each stage with ``launch/train.py --max_steps=1`` on a few
generated videos, made once under ``--workdir``), in fresh processes:

  * ``phases``: ``Predictor(run)`` then ``predict_frames`` on one clip, in
    one process, split into importing TensorFlow (bare), importing the
    package's predictor, loading (``Predictor(...)``: model build, restore,
    batch-norm folding, cost, and any conversion or cache it makes), the
    first prediction (tracing and graph optimisation) and the steady state
    (the median of the next calls). ``fresh``: every cache empty (the
    run's ``tflite/`` and ``ready/`` folders, the local caches); ``warm``:
    the same again, with what the fresh process left;
  * ``tools``: the wall-clock time of the command lines a user runs on the
    run (``adafocus-predict`` on one encoded clip, ``adafocus-evaluate``
    on 4 videos, ``adafocus-export``, ``adafocus-calibrate-exit`` on 4
    videos), fresh then warm.

With ``--before``, each measurement alternates between that source tree
and this one (PYTHONPATH), so that both see the same machine load. The
issue-27 goal: a warm ``predict`` within 3 x its steady-state prediction
time plus the bare ``import tensorflow`` time. Prints one JSON object;
the float32 matmul peak and the load average are measured beside it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

FAMILIES = {
    # name: (dataset preset, method)
    "v1_minik": ("minik", "v1"),
    "two_stream_sthv1": ("sthv1", "v1"),
    "v2_actnet": ("actnet", "v2"),
    "v2_tsm_sthv2": ("sthv2", "v2"),
}
TOOLS = ("predict", "evaluate", "export", "calibrate_exit")
CACHE_FOLDERS = ("tflite", "ready")
# Videos of the generated data; frames long enough for every preset.
NUM_VIDEOS, NUM_FRAMES, FRAME_SIDE = 4, 48, 256

flags.DEFINE_list("families", ["v2_actnet"], f"Of {sorted(FAMILIES)}.")
flags.DEFINE_list("tools", list(TOOLS), "Command lines timed.")
flags.DEFINE_string("before", None, "Another source tree, measured "
                    "alternately with this one.")
flags.DEFINE_integer("rounds", 1, "Fresh + warm measurements per tree.")
flags.DEFINE_integer("steady_calls", 3, "Calls after the first (median).")
flags.DEFINE_string("workdir", "/tmp/adafocus-startup", "Runs and data.")
FLAGS = flags.FLAGS

# Runs in the measured tree (PYTHONPATH set to it).
_PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
import adafocus_tf
import tensorflow as tf
t1 = time.perf_counter()
import numpy as np
from adafocus_tf.inference import clips
from adafocus_tf.inference import predictor as predictor_lib
t2 = time.perf_counter()
p = predictor_lib.Predictor(sys.argv[1])
t3 = time.perf_counter()
d = p.cfg.data
x = {k: np.zeros([1, n, d.frame_size, d.frame_size, 3], np.float32)
     for k, n in clips.frame_streams(p.cfg).items()}
p.predict_frames(x, ["clip"])
t4 = time.perf_counter()
steady = []
for _ in range(int(sys.argv[2])):
  s = time.perf_counter()
  p.predict_frames(x, ["clip"])
  steady.append(time.perf_counter() - s)
print(json.dumps({"import_tensorflow_s": t1 - t0, "import_package_s": t2 - t1,
                  "load_s": t3 - t2, "first_call_s": t4 - t3,
                  "steady_s": sorted(steady)[len(steady) // 2],
                  "backend": p.backend}))
"""


def make_run(family, workdir):
  """A run of ``family`` at its paper preset, one step per stage."""
  import helpers  # pylint: disable=g-import-not-at-top
  run = os.path.join(workdir, family)
  made = os.path.join(workdir, f"{family}.made")
  if os.path.exists(made):
    return run
  shutil.rmtree(run, ignore_errors=True)
  data = os.path.join(workdir, "data")
  if not os.path.exists(data):
    helpers.write_dataset(data, num_train=NUM_VIDEOS, num_val=NUM_VIDEOS,
                          num_frames=NUM_FRAMES, size=FRAME_SIDE)
  dataset, method = FAMILIES[family]
  args = [f"--data_dir={data}", f"--run_dir={run}", f"--dataset={dataset}",
          f"--method={method}", "--max_steps=1", "--batch_size=2",
          "--noevaluate",
          "--noprogress", f"--override=data.num_classes={helpers.NUM_CLASSES}"]
  proc = helpers.run_train(args, check=False, timeout=3600)
  if proc.returncode:
    raise RuntimeError(f"{family}: training failed:\n{proc.stderr[-3000:]}")
  open(made, "w").close()
  return run


def clip(workdir):
  import video_fixtures  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "clip.mp4")
  if not os.path.exists(path):
    video_fixtures.write_video(path, NUM_FRAMES)
  return path


def empty_caches(run, env):
  for folder in CACHE_FOLDERS:
    shutil.rmtree(os.path.join(run, folder), ignore_errors=True)
  for key in ("ADAFOCUS_CACHE_DIR", "ADAFOCUS_TFLITE_CACHE"):
    shutil.rmtree(env[key], ignore_errors=True)


def tree_env(tree, cache_root):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["PYTHONPATH"] = tree
  env["ADAFOCUS_CACHE_DIR"] = os.path.join(cache_root, "cache")
  env["ADAFOCUS_TFLITE_CACHE"] = os.path.join(cache_root, "tflite")
  return env


def timed_process(argv, env):
  import time  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  # Not in a source tree: ``python -c`` puts the working directory first on
  # sys.path, where it would shadow the tree PYTHONPATH names.
  proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                        timeout=3600, cwd=os.path.dirname(env["PYTHONPATH"]))
  seconds = time.perf_counter() - start
  if proc.returncode not in (0,):
    raise RuntimeError(f"{argv[:4]} failed:\n{proc.stderr[-3000:]}")
  return seconds, proc.stdout


def tool_argv(tool, run, clip_path, workdir):
  module = f"from adafocus_tf.cli import {tool}; {tool}.run()"
  args = {"predict": [f"--run={run}", clip_path],
          "evaluate": [f"--run={run}", "--max_videos=4", "--noprogress"],
          "export": [f"--run={run}",
                     f"--export_dir={os.path.join(workdir, 'export')}"],
          "calibrate_exit": [f"--run={run}", "--max_videos=4",
                             "--noprogress", "--profile=geometric:0.8"]}[tool]
  return [sys.executable, "-c", module] + args


def measure(tree, run, clip_path, workdir, cache_root):
  env = tree_env(tree, cache_root)
  row = {}
  empty_caches(run, env)
  for state in ("fresh", "warm"):
    _, out = timed_process([sys.executable, "-c", _PHASES, run,
                            str(FLAGS.steady_calls)], env)
    row[f"phases_{state}"] = {k: (round(v, 2) if isinstance(v, float) else v)
                              for k, v in json.loads(out).items()}
  for tool in FLAGS.tools:
    empty_caches(run, env)
    shutil.rmtree(os.path.join(workdir, "export"), ignore_errors=True)
    for state in ("fresh", "warm"):
      seconds, _ = timed_process(tool_argv(tool, run, clip_path, workdir),
                                 env)
      row[f"{tool}_{state}_s"] = round(seconds, 2)
      shutil.rmtree(os.path.join(workdir, "export"), ignore_errors=True)
  warm = row["phases_warm"]
  row["warm_goal_s"] = round(3 * warm["steady_s"]
                             + warm["import_tensorflow_s"], 2)
  return row


def main(_):
  import adafocus_tf  # pylint: disable=g-import-not-at-top,unused-import
  import timing  # pylint: disable=g-import-not-at-top
  os.makedirs(FLAGS.workdir, exist_ok=True)
  info = {"load_before": [round(x, 2) for x in os.getloadavg()],
          "matmul_peak_gmacs_per_s": round(timing.matmul_peak_gmacs(1024),
                                           1)}
  trees = {"after": REPO}
  if FLAGS.before:
    trees = {"before": FLAGS.before, "after": REPO}
  clip_path = clip(FLAGS.workdir)
  results = {}
  for family in FLAGS.families:
    run = make_run(family, FLAGS.workdir)
    for r in range(FLAGS.rounds):
      for name, tree in trees.items():
        cache_root = tempfile.mkdtemp(prefix=f"startup-{name}-")
        results.setdefault(family, {}).setdefault(name, []).append(
            measure(tree, run, clip_path, FLAGS.workdir, cache_root))
        shutil.rmtree(cache_root, ignore_errors=True)
  info["load_after"] = [round(x, 2) for x in os.getloadavg()]
  print(json.dumps({"info": info, "results": results}, indent=1))


if __name__ == "__main__":
  app.run(main)

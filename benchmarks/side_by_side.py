"""What the inference benchmarks share: the user paths of a run, workers in
processes of their own, and rounds timed side by side with a reference.

``inference.py`` (V1 presets, random weights) and ``v2_vs_official.py``
(AdaFocusV2, a converted checkpoint of the official model's re-creation)
time the same user paths of a run, one call of each per round, each
followed by one call of the PyTorch reference when it is given.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import serving
from adafocus_tf.inference import backend_calibration
from adafocus_tf.inference import predictor as predictor_lib
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import export
from adafocus_tf.serving import module as module_lib
from adafocus_tf.serving import tflite_model

RAW_SIDE = 256  # uint8 frames sent to the exported models (centre-cropped)
# The parity tests' torch interpreter (tests/convert/test_convert.py).
TORCH_PYTHON = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
    "adafocus-tf", "torch-2.13.0-cpu", "bin", "python")


def define_flags(preset, batch_sizes, repeats, paths):
  """The flags of a benchmark built on ``user_paths`` and ``timed_rounds``.

  Args:
    preset: the default ``--preset``.
    batch_sizes: the default ``--batch_sizes`` (strings).
    repeats: the default ``--repeats``.
    paths: the default ``--paths``.
  """
  flags.DEFINE_string("preset", preset, "Preset to time.")
  flags.DEFINE_list("batch_sizes", batch_sizes, "Batch sizes to time.")
  flags.DEFINE_integer("repeats", repeats, "Rounds (one timed call of each "
                       "path per round); the median is reported.")
  flags.DEFINE_integer("matmul_size", 2048,
                       "Side of the peak-matmul operands.")
  flags.DEFINE_list("paths", paths, "User paths to time (``predictor``: "
                    "the default backend).")
  flags.DEFINE_integer("threads", 2, "CPU threads of each implementation "
                       "(TensorFlow's intra-op pool, the TFLite interpreter, "
                       "torch); 0: TensorFlow's default.")
  flags.DEFINE_string("torch_python", TORCH_PYTHON,
                      "A python with torch (the parity tests' venv).")
  flags.DEFINE_float("settle_s", 0.5, "Pause before each timed call, so "
                     "that the other implementation's spinning worker "
                     "threads are asleep when it starts.")
  flags.DEFINE_string("workdir", "", "Where the runs and the exports go "
                      "(default: a temporary directory).")


def rate(batch, seconds, macs_per_video):
  return {"videos_per_s": round(batch / seconds, 3),
          "s_per_video": round(seconds / batch, 4),
          "gmacs_per_s": round(macs_per_video * batch / seconds / 1e9, 1),
          "median_s_per_call": round(seconds, 3)}


def loadavg():
  return [round(x, 2) for x in os.getloadavg()]


class Worker:
  """A benchmark worker script in its own process, driven over a pipe.

  Args:
    python: the interpreter.
    script: the worker script beside this file (``torch_worker.py``,
      ``tflite_worker.py``: one JSON request per line, one answer per line).
    args: its command-line arguments.
  """

  def __init__(self, python, script, args):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    self.proc = subprocess.Popen([python, path] + args,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    self.hello = self._read()

  def _read(self):
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError("a benchmark worker exited (see its stderr above)")
    return json.loads(line)

  def ask(self, **request):
    self.proc.stdin.write(json.dumps(request) + "\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self):
    self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def user_paths(cfg, run, workdir, names, threads):
  """The run's user paths: {name: (warm-up and timed call of a batch of B)}.

  Args:
    cfg: the run's config.
    run: the run directory.
    workdir: where exports go.
    names: the paths to set up (``inference.py``'s module doc lists them).
    threads: CPU threads of the predictors and TFLite interpreters.

  Returns:
    (paths, info: load and export times, workers: {name: Worker} of the
    paths that run in a process of their own).
  """
  d = cfg.data
  t = d.num_frames
  paths = {}

  def floats(b):
    return np.random.default_rng(b).standard_normal(
        (b, t, d.frame_size, d.frame_size, 3), dtype=np.float32)

  def raw(b):
    return np.random.default_rng(b).integers(
        0, 256, (b, t, RAW_SIDE, RAW_SIDE, 3), dtype=np.uint8)

  def with_input(make, call):
    cache = {}

    def run_batch(b):
      if b not in cache:
        cache[b] = make(b)
      return call(cache[b])
    return run_batch

  info = {}
  for name in names:
    if not name.startswith("predictor"):
      continue
    backend = name.partition("_")[2] or None
    start = time.perf_counter()
    pred = predictor_lib.Predictor(
        run, threads=threads, **({"backend": backend} if backend else {}))
    info[f"{name}_load_s"] = round(time.perf_counter() - start, 1)
    info[f"{name}_backend"] = backend_calibration.describe(pred.backends)
    paths[name] = with_input(
        floats, lambda x, p=pred: p.predict_frames(
            x, [str(i) for i in range(len(x))]))
  graphs = {}
  trained = trained_run.TrainedRun(run)
  for name, fold in (("in_process", True), ("in_process_unfolded", False)):
    if name in names:
      graphs[name] = module_lib.ServingModule(
          trained.recognizer(fold_batch_norms=fold),
          export.class_names_of(cfg))
  for name, graph in graphs.items():
    predict = tf.function(
        lambda f, g=graph: g.predict({"frames": f})["probabilities"],
        autograph=False)
    paths[name] = with_input(
        lambda b: tf.constant(floats(b)), lambda x, p=predict: p(x).numpy())
  if "saved_model" in names:
    saved_dir = os.path.join(workdir, "saved_model", "1")
    export.export_run(run, saved_dir)
    serve = tf.saved_model.load(saved_dir).signatures[serving.SERVING_DEFAULT]
    paths["saved_model"] = with_input(
        lambda b: tf.constant(raw(b)),
        lambda x: serve(frames=x)["probabilities"].numpy())
  workers = {}
  if "tflite" in names or "tflite_process" in names:
    lite_dir = os.path.join(workdir, "tflite", "1")
    start = time.perf_counter()
    meta = tflite_model.export_tflite(run, lite_dir)
    info["tflite_export_s"] = round(time.perf_counter() - start, 1)
    info["tflite_mb"] = round(os.path.getsize(os.path.join(
        lite_dir, tflite_model.MODEL_FILE)) / 2**20, 1)
    info["tflite_batch"] = meta["tflite"]["batch_size"]
  if "tflite" in names:
    lite = tflite_model.TFLiteModel(lite_dir, num_threads=threads)
    paths["tflite"] = with_input(raw, lite.predict_frames)
  if "tflite_process" in names:
    workers["tflite_process"] = Worker(
        sys.executable, "tflite_worker.py",
        [f"--export={lite_dir}", f"--raw_side={RAW_SIDE}",
         f"--threads={threads}"])
    paths["tflite_process"] = lambda b: workers["tflite_process"].ask(
        op="predict", batch=b)["seconds"]
  return paths, info, workers


def timed_rounds(paths, workers, reference, batch_sizes, repeats, settle_s,
                 macs_per_video):
  """Rows of every path per batch size, the paths alternating round by round.

  Args:
    paths: {name: call of a batch of B} (``user_paths``).
    workers: the paths' own-process workers (they time their own calls).
    reference: the reference's ``Worker`` (``torch_worker.py``) or None;
      given, it runs one call after each of ours, and each row gets
      ``vs_torch`` (ratio of the medians) and ``vs_torch_paired`` (median
      of each call's ratio to the reference call right after it).
    batch_sizes: the batch sizes.
    repeats: rounds per batch size.
    settle_s: pause before each timed call, so that the other
      implementation's spinning threads are asleep when it starts.
    macs_per_video: the multiply-accumulates of one video.

  Returns:
    the rows (dicts), ``reference`` ones named ``torch``.
  """
  rows = []
  for b in batch_sizes:
    times = {name: [] for name in paths}
    if reference is not None:
      times["torch"] = []
    for fn in paths.values():
      fn(b)  # warm-up (traces, allocates)
    loads = []
    for _ in range(repeats):
      for name, fn in paths.items():
        time.sleep(settle_s)
        start = time.perf_counter()
        seconds = fn(b)
        # A worker process times its own call (no pipe in the figure).
        times[name].append(seconds if name in workers else
                           time.perf_counter() - start)
        if reference is not None:
          time.sleep(settle_s)
          times["torch"].append(
              reference.ask(op="predict", batch=b)["seconds"])
      loads.append(loadavg()[0])
    batch_rows = []
    for name, v in times.items():
      s = statistics.median(v)
      batch_rows.append(dict(model=name, batch_size=b,
                             **rate(b, s, macs_per_video),
                             s_per_call=[round(x, 3) for x in v],
                             loadavg_1min=loads))
    if reference is not None:
      ref = statistics.median(times["torch"])
      # times["torch"] holds, round by round, the call after each path's.
      after = {name: times["torch"][i::len(paths)]
               for i, name in enumerate(paths)}
      after["torch"] = times["torch"]
      for r in batch_rows:
        r["vs_torch"] = round(ref / r["median_s_per_call"], 2)
        ours = times[r["model"]]
        r["vs_torch_paired"] = round(statistics.median(
            t / s for t, s in zip(after[r["model"]], ours)), 2)
    rows += batch_rows
  return rows

"""Preparation speed: the process pool it replaced vs the Beam pipeline
(issue 28).

  python benchmarks/prepare_speed.py [--num_videos=216] [--seconds=2]
      [--repeats=3] [--workers=1,2]

Encodes ``--num_videos`` real H.264 videos (320x240, 15 fps, the panning
texture of ``long_video.py``) and prepares them as one ``minik`` split with
each engine and worker count, side by side: the repeats interleave the
engines, every run writes a fresh output directory, and the videos are read
once beforehand so that every run finds them in the page cache. Engines:

  * ``pool``: ``adafocus-prepare`` as it was before issue 28, a
    ``multiprocessing`` pool of one shard per task (``prepare_lib`` of
    POOL_COMMIT, read with ``git show`` and imported from a temporary file);
  * ``beam``: ``prepare_lib.prepare`` now, one Beam pipeline on the
    DirectRunner (``--workers`` processes; 1 in-process).

Prints the fp32 matmul peak and the load average, then one table row per
engine and worker count (median seconds, videos/s, ratio to the pool at the
same worker count), and whether the two engines' outputs are identical
(shards and manifests byte for byte, report.json and meta.json but for the
command line, ``--out`` and the arguments that name the engine).
"""
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf.data import prepare_lib
from benchmarks import long_video
from benchmarks import scratch
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_videos", 216, "Videos to encode and prepare.")
flags.DEFINE_float("seconds", 2.0, "Length of each video.")
flags.DEFINE_integer("frame_rate", 15, "Frame rate of the videos.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each engine and worker "
                     "count (the median is reported).")
flags.DEFINE_list("worker_counts", ["1", "2"], "Worker counts to time.")
flags.DEFINE_integer("per_shard", 16, "--videos_per_shard of every run.")
flags.DEFINE_integer("stored_side", 240, "--short_side of every run.")
flags.DEFINE_integer("matmul_size", 1024, "Side of the matmul whose speed "
                     "is reported beside the figures.")
flags.DEFINE_string("work_dir", "", "Keep the videos and outputs here "
                    "(default: a temporary directory, removed).")

REPO = sys.path[0]
# The last commit whose prepare_lib ran the process pool.
POOL_COMMIT = "ec6905d5176e43d59e12892f9e04a53e2f5d0f3c"
POOL_MODULE = "prepare_lib_pool"
# meta.json arguments that name the engine or differ by run (--out).
_RUN_ARGS = ("runner", "pipeline_args", "out")
ENGINES = ("pool", "beam")


def load_pool_engine(directory):
  """prepare_lib of POOL_COMMIT, importable by its spawned workers too."""
  source = subprocess.run(
      ["git", "-C", REPO, "show",
       f"{POOL_COMMIT}:adafocus_tf/data/prepare_lib.py"],
      capture_output=True, text=True, check=True).stdout
  path = os.path.join(directory, POOL_MODULE + ".py")
  with open(path, "w", encoding="utf-8") as f:
    f.write(source)
  # Spawned pool workers import it by name with this sys.path, after
  # running this script, which replaces sys.path[0].
  sys.path.insert(1, directory)
  spec = importlib.util.spec_from_file_location(POOL_MODULE, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[POOL_MODULE] = module
  spec.loader.exec_module(module)
  return module


def write_videos(videos_dir, splits_dir, num_videos, seconds, frame_rate):
  """Encodes the videos once and copies them; writes the list and classes."""
  os.makedirs(videos_dir)
  os.makedirs(splits_dir)
  first = os.path.join(videos_dir, "v00000.mp4")
  long_video.write_video(first, seconds / 60, frame_rate,
                         gop=int(seconds * frame_rate))
  for i in range(1, num_videos):
    shutil.copyfile(first, os.path.join(videos_dir, f"v{i:05d}.mp4"))
  with open(os.path.join(splits_dir, "classInd.txt"), "w") as f:
    f.write("a\nb\nc\n")
  with open(os.path.join(splits_dir, "train.txt"), "w") as f:
    f.writelines(f"v{i:05d}.mp4 {int(seconds * frame_rate)} {i % 3}\n"
                 for i in range(num_videos))
  # Every run then reads them from the page cache.
  for name in os.listdir(videos_dir):
    with open(os.path.join(videos_dir, name), "rb") as f:
      f.read()


def run_once(module, videos_dir, splits_dir, out, workers):
  """Seconds of one preparation into a fresh ``out``."""
  shutil.rmtree(out, ignore_errors=True)
  start = time.perf_counter()
  summary = module.prepare("minik", videos_dir, splits_dir, out,
                           short_side=FLAGS.stored_side,
                           videos_per_shard=FLAGS.per_shard, workers=workers,
                           progress=False)
  seconds = time.perf_counter() - start
  if summary["num_videos"] != FLAGS.num_videos:
    raise RuntimeError(f"{out}: {summary['num_videos']} videos written")
  return seconds


def compare(pool_dir, beam_dir):
  """'identical', or what differs between the two engines' split dirs."""
  names = sorted(os.listdir(pool_dir))
  if names != sorted(os.listdir(beam_dir)):
    return f"other files: {names} vs {sorted(os.listdir(beam_dir))}"
  for name in names:
    with open(os.path.join(pool_dir, name), "rb") as f:
      a = f.read()
    with open(os.path.join(beam_dir, name), "rb") as f:
      b = f.read()
    if name == "meta.json":
      a, b = json.loads(a), json.loads(b)
      for meta in (a, b):
        meta["made_by"]["command"] = None
        for key in _RUN_ARGS:
          meta["made_by"]["args"].pop(key, None)
    if a != b:
      return f"{name} differs"
  return "identical"


def main(argv):
  del argv
  work = FLAGS.work_dir or scratch.folder("prepare_speed-")
  videos_dir = os.path.join(work, "videos")
  splits_dir = os.path.join(work, "splits")
  start = time.perf_counter()
  if not os.path.isdir(videos_dir):
    write_videos(videos_dir, splits_dir, FLAGS.num_videos, FLAGS.seconds,
                 FLAGS.frame_rate)
  print(f"{FLAGS.num_videos} videos encoded in "
        f"{time.perf_counter() - start:.1f} s")
  engines = {"pool": load_pool_engine(work), "beam": prepare_lib}
  counts = [int(w) for w in FLAGS.worker_counts]
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size)
  load_before = os.getloadavg()
  times = {(e, w): [] for e in ENGINES for w in counts}
  for _ in range(FLAGS.repeats):
    for workers in counts:
      for engine in ENGINES:
        out = os.path.join(work, f"out-{engine}-{workers}")
        times[(engine, workers)].append(run_once(
            engines[engine], videos_dir, splits_dir, out, workers))
  load_after = os.getloadavg()
  print(f"\nfp32 matmul peak {peak:.1f} GMAC/s ({FLAGS.matmul_size}^3); load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} CPUs)")
  print(f"{FLAGS.num_videos} H.264 videos of {long_video.WIDTH}x"
        f"{long_video.HEIGHT}, {FLAGS.seconds:g} s at {FLAGS.frame_rate} "
        f"fps, stored at short side {FLAGS.stored_side}, {FLAGS.per_shard} "
        f"per shard; median of {FLAGS.repeats}\n")
  print("| engine | workers | seconds (median) | videos/s | vs pool | runs |\n"
        "| --- | --- | --- | --- | --- | --- |")
  for workers in counts:
    pool_s = statistics.median(times[("pool", workers)])
    for engine in ENGINES:
      runs = times[(engine, workers)]
      seconds = statistics.median(runs)
      print(f"| {engine} | {workers} | {seconds:.2f} | "
            f"{FLAGS.num_videos / seconds:.2f} | {pool_s / seconds:.2f}x | "
            f"{', '.join(f'{t:.1f}' for t in runs)} |")
  for workers in counts:
    verdict = compare(os.path.join(work, f"out-pool-{workers}", "train"),
                      os.path.join(work, f"out-beam-{workers}", "train"))
    print(f"\noutputs at {workers} worker(s), pool vs beam: {verdict}")
  if not FLAGS.work_dir:
    shutil.rmtree(work)


if __name__ == "__main__":
  app.run(main)

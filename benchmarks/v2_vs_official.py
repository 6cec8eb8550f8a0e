"""AdaFocusV2's user paths against the official model, side by side (issue 27).

  python benchmarks/v2_vs_official.py [--preset=actnet] [--batch_sizes=1,8] \
      [--repeats=5]

The official V2 model as ``benchmarks/torch_worker.py --family=v2``
re-creates it (in the parity tests' torch interpreter: official module
names, random weights, batch-norm statistics calibrated on random clips)
writes its state dict in the official checkpoint layout; the converter
(``adafocus-convert``'s) turns it into a run, so both sides compute with the
same weights. Then, for each batch size, one call of each of our paths per
round, each followed by one call of the official model's, medians over
``--repeats`` rounds (``side_by_side.timed_rounds``):

  * ``predictor``: ``Predictor(run).predict_frames``, its default backend
    (``auto``: the fastest measured here);
  * ``predictor_tf`` / ``predictor_hybrid``: the same with that backend
    (AdaFocusV2's bilinear patches keep the whole model out of TFLite:
    docs/SERVING.md);
  * ``in_process``: the run's recognizer (batch norms folded) in one
    compiled ``tf.function`` of the exported graph's body, on float frames;
  * ``saved_model``: ``serving_default`` of ``adafocus-export``'s SavedModel
    on uint8 frames of 256x256 (its preprocessing crops the centre).

Each row gives its speed-up over the official model (``vs_torch``, the
ratio of the medians; ``vs_torch_paired``, the median of each call's ratio
to the official call right after it) and its fraction of the float32
matmul peak, measured in the same run before and after. MACs come from
the family's cost (``adafocus-flops``).
"""
import json
import os
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.profiling import flops
from benchmarks import scratch
from benchmarks import side_by_side
from benchmarks import timing

FLAGS = flags.FLAGS
side_by_side.define_flags("actnet", ["1", "8"], 5, [
    "predictor", "predictor_tf", "predictor_hybrid", "in_process",
    "saved_model"])
flags.adopt_module_key_flags(side_by_side)  # --helpshort lists them


def official_worker(cfg, checkpoint):
  """The official model's re-creation, its weights saved to ``checkpoint``."""
  m, d = cfg.model, cfg.data
  return side_by_side.Worker(FLAGS.torch_python, "torch_worker.py", [
      "--family=v2", f"--frames={d.num_frames}",
      f"--frame_size={d.frame_size}", f"--patch_size={m.patch_size}",
      f"--num_classes={d.num_classes}", f"--hidden={m.classifier_hidden}",
      f"--policy_hidden={m.policy_hidden}",
      f"--policy_conv={m.policy_conv_channels}", f"--threads={FLAGS.threads}",
      f"--save={checkpoint}"])


def main(_):
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  cfg = config_lib.get_preset(FLAGS.preset, method="v2")
  video_macs = flops.video_macs(cfg)["per_video"]["total"]
  load_start = side_by_side.loadavg()
  peak = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  workdir = FLAGS.workdir or scratch.folder()
  os.makedirs(workdir, exist_ok=True)
  checkpoint = os.path.join(workdir, "official_v2.pth.tar")
  worker = official_worker(cfg, checkpoint)
  run = os.path.join(workdir, "run")
  start = time.perf_counter()
  run_writer.convert(FLAGS.preset, cfg.model.patch_size, run,
                     checkpoint=checkpoint, method="v2")
  info = {"convert_s": round(time.perf_counter() - start, 1),
          "torch": worker.hello["torch"],
          "torch_matmul_peak_gmacs_per_s": round(worker.ask(
              op="peak", size=FLAGS.matmul_size)["gmacs"], 1)}
  paths, path_info, workers = side_by_side.user_paths(
      cfg, run, workdir, FLAGS.paths, FLAGS.threads)
  info.update(path_info)
  rows = side_by_side.timed_rounds(
      paths, workers, worker, [int(b) for b in FLAGS.batch_sizes],
      FLAGS.repeats, FLAGS.settle_s, video_macs)
  for w in [worker, *workers.values()]:
    w.close()
  peak_after = timing.matmul_peak_gmacs(FLAGS.matmul_size, FLAGS.repeats)
  for r in rows:
    r["fraction_of_peak"] = round(r["gmacs_per_s"] / peak, 3)
  print(json.dumps({
      "preset": FLAGS.preset, "method": "v2", "cpu_cores": os.cpu_count(),
      "threads": FLAGS.threads,
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "loadavg_start": load_start, "loadavg_end": side_by_side.loadavg(),
      "gmacs_per_video": round(video_macs / 1e9, 3),
      "matmul_peak_gmacs_per_s": round(peak, 1),
      "matmul_peak_after_gmacs_per_s": round(peak_after, 1),
      **info, "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)

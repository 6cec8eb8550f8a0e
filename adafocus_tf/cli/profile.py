"""Profiles inference of a trained run, part by part, with the TF profiler.

  adafocus-profile --run=$RUN
  adafocus-profile --run=$RUN --batch_size=32 --steps=10
  pip install -e ".[profile]" && tensorboard --logdir $RUN/logs   # "Profile" tab

(``python launch/profile.py`` is the same command.)

Runs ``--steps`` whole-clip passes of the run's ``Recognizer`` (any model
family) on a batch of its evaluation split, split into its stages:
glance, policy (the patch offsets, or Uni-AdaFocus's temporal and spatial
policies choosing frames and regions; with ``--patches=centre`` it only
places the centre patch) and head (patches, focus network, classifier),
each compiled on its own, under a profiler trace and a name
scope of its name, after ``--warmup`` untraced passes that compile them.
The profile goes to ``<run>/logs/profile_inference/plugins/profile/<date>/``
(``*.xplane.pb``); the mean wall time of each part is printed and written
beside it as TensorBoard scalars (``inference_ms/<part>``, step = batch
size).
"""
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.inference import clips
from adafocus_tf.profiling import inference_parts
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import trained_run

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__, shared=("run", "batch_size", "patches", "data_dir",
                      "allow_unfinished"),
    defaults={"batch_size": 8},
    choices={"patches": (trained_run.AUTO, "policy", "centre")})
flags.DEFINE_integer("steps", 5, "Profiled forward passes.")
flags.DEFINE_integer("warmup", 2, "Untraced passes first (compilation).")
flags.DEFINE_string("logdir", None, "Profile directory; default "
                    "<run>/logs/profile_inference.")
flags.DEFINE_integer("host_tracer_level", step_profiler.VERBOSE_HOST_TRACER,
                     "1: annotations only, 2: expensive ops, 3: every op.")


def input_batch(cfg: ExperimentConfig, batch_size: int):
  """A batch of evaluation frames, or noise if none is read.

  Args:
    cfg: the run's config.
    batch_size: B; a split with fewer videos is repeated.

  Returns:
    ``(batch, where it came from)``: the batch holds each frame stream of
    the model (``clips.frame_streams``), [B, T_k, S, S, 3], and ``seed``.
  """
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  keys = list(clips.frame_streams(cfg)) + ["seed"]
  try:
    ds = pipeline.make_dataset(cfg.data, split_dir, training=False,
                               batch_size=batch_size, seed=cfg.seed,
                               repeat=True)
    batch = next(iter(ds))
    return {k: batch[k] for k in keys}, split_dir
  except (FileNotFoundError, tf.errors.OpError, ValueError) as e:
    s = cfg.data.frame_size
    batch = {key: tf.random.stateless_normal([batch_size, count, s, s, 3],
                                             [cfg.seed, i])
             for i, (key, count) in enumerate(
                 clips.frame_streams(cfg).items())}
    batch["seed"] = tf.zeros([batch_size, 2], tf.int64)
    return batch, f"random frames (no readable data: {e})"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.run:
    raise app.UsageError("--run is required")
  if FLAGS.batch_size < 1 or FLAGS.steps < 1 or FLAGS.warmup < 0:
    raise app.UsageError("--batch_size and --steps must be >= 1, --warmup "
                         ">= 0")
  try:
    run = trained_run.TrainedRun(FLAGS.run,
                                 allow_unfinished=FLAGS.allow_unfinished)
    cfg = run.cfg
    choice = run.resolve_patches(FLAGS.patches)
    recognizer = run.recognizer(with_policy=choice == "policy")
    ckpt = run.weights.model_checkpoint
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  if FLAGS.data_dir:
    cfg.data.data_dir = FLAGS.data_dir
  batch, source = input_batch(cfg, FLAGS.batch_size)
  parts = inference_parts.inference_parts(recognizer, choice)
  for _ in range(FLAGS.warmup):
    inference_parts.run_parts(parts, batch)
  logdir = FLAGS.logdir or io_utils.join(FLAGS.run, "logs",
                                         "profile_inference")
  timings = {}
  with step_profiler.StepProfiler(logdir, (1, FLAGS.steps),
                              host_tracer_level=FLAGS.host_tracer_level
                              ) as profiler:
    profiler.step(0)
    for step in range(1, FLAGS.steps + 1):
      inference_parts.run_parts(parts, batch, step_num=step, timings=timings)
      profiler.step(step)
  total = sum(np.mean(v) for v in timings.values())
  # TensorBoard's profile plugin lists profiles only under directories that
  # hold an events file; the per-part times are that file's content.
  with tf.summary.create_file_writer(logdir).as_default():
    for name, values in timings.items():
      tf.summary.scalar(f"inference_ms/{name}", 1e3 * float(np.mean(values)),
                        step=FLAGS.batch_size)
    tf.summary.scalar("inference_ms/total", 1e3 * total,
                      step=FLAGS.batch_size)
  print(f"checkpoint {ckpt}, {choice} patches "
        f"({recognizer.choice_label(choice)}), batch {FLAGS.batch_size} from "
        f"{source}")
  print(f"{'part':<12} {'ms/batch':>9} {'share':>6}")
  for name, values in timings.items():
    ms = 1e3 * float(np.mean(values))
    print(f"{name:<12} {ms:9.2f} {100 * ms / (1e3 * total):5.1f}%")
  print(f"{'total':<12} {1e3 * total:9.2f}  ({FLAGS.batch_size / total:.1f} "
        "videos/s)")
  files = io_utils.glob(io_utils.join(logdir, "plugins", "profile", "*",
                                      "*.xplane.pb"))
  print(f"profile: {files[-1] if files else logdir}")
  print(f"view it: pip install -e \".[profile]\" && tensorboard --logdir "
        f"{io_utils.join(FLAGS.run, 'logs')}  (Profile tab)")


def run() -> None:
  """The ``adafocus-profile`` console script (and ``launch/profile.py``)."""
  COMMAND.run(main)

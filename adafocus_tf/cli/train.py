"""Trains AdaFocus: stages 0-3 of a run, then the results table.

  adafocus-train                                 # quickstart: embedded data
  adafocus-train --method=v2                     # AdaFocusV2 on the same data
  adafocus-train --dataset=minik --data_dir=$WS/data/minik --stage=1
  adafocus-train --dataset=minik --data_dir=$WS/data/minik --config_file=my.yaml
  adafocus-train --stage=3 --resume=$RUN
  adafocus-train --dataset=actnet ... --strategy=mirrored
  TF_CONFIG=... adafocus-train ... --strategy=multi_worker

(``python launch/train.py`` is the same command.) Without ``--data_dir`` the
preset's embedded dataset (``synthetic``, ``synthetic_objects``) is
generated into the workspace the first time.
Re-running the same command resumes the run: a finished stage is skipped,
an interrupted one continues from its last checkpoint. The config is the
preset (or the resumed run's), then ``--config_file``, then the other flags,
then ``--override``; it is validated before anything else is done. A
preset's ``mixed_float16`` (the Uni-AdaFocus presets the official code
trains in it) trains in float32 on a host without a GPU, with a one-line
notice, unless the precision is given (``host_precision``). See README.md and
WORKSPACE.md.

Exit status: 0 done; 1 a usage error (a bad flag, or a config value out of
range, named) or a failure; 2 a data directory that is missing, not prepared
or not of the run's classes, an S3 endpoint that cannot be reached, a config
value of the wrong type or of a field the run's model family does not use
(named with its source), a change to a setting the run's weights were
trained with, a run directory another trainer holds (``runs/run_lock.py``),
or a stage to start after an unfinished one (a one-line error; nothing is
written); with ``--strategy=multi_worker``, a TF_CONFIG naming an address
twice (nothing is written) or a worker that stops mid-run (the others stop
within about 10 s; the same command on every worker resumes). Workers that
do not all start within ``--cluster_timeout``: one error line naming them
and status 1 (nothing is written).
"""
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf import errors
from adafocus_tf import io_utils
from adafocus_tf.cli import common
from adafocus_tf.cli import terminal
from adafocus_tf.data import data_service
from adafocus_tf.data import embedded
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.families import registry
from adafocus_tf.evaluation import results_table
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import data_check
from adafocus_tf.runs import run_config
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.training import experiment
from adafocus_tf.training import strategy as strategy_lib

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__,
    shared=("dataset", "method", "data_dir", "workspace", "patch_size",
            "batch_size", "seed", "strategy", "override", "progress", "cpu_devices"),
    defaults={"dataset": "synthetic"},
    choices={"strategy": strategy_lib.STRATEGIES,
             "method": config_lib.methods()})
flags.DEFINE_string("config_file", None, "A config file, FILE.json or "
                    "FILE.yaml, with any fields of a config in its sections "
                    "(e.g. {\"model\": {\"patch_size\": 96}}), applied first "
                    "to the --dataset preset (or the resumed run's config); "
                    "the other flags and --override then change it.")
flags.DEFINE_string("run_dir", None, "Run directory; default "
                    "<workspace>/runs/<dataset>-p<patch>[-<policy>]-s<seed> (the "
                    "policy named when it is not the preset's).")
flags.DEFINE_string("resume", None, "Continue this run directory with its "
                    "saved config (flags given here still override it).")
flags.DEFINE_string("stage", "all", "Stages to run: all, or a comma list of "
                    "0-3.")
flags.DEFINE_string("init_from", None, "Checkpoint (prefix) whose model "
                    "weights start the first stage that does not resume.")
flags.DEFINE_integer("num_actions", None, "Discrete policy: patch grid size "
                     "(a square number, 16 to 100; the paper uses 25/36/49/64).")
flags.DEFINE_enum("policy", None, ["discrete", "continuous"], "Patch policy: "
                  "a categorical over the grid, or a Gaussian over positions "
                  "(Something-Something's; std model.policy_std).")
flags.DEFINE_string("reward", None, "Stage-2 reward: random, prev or conf.")
flags.DEFINE_integer("epochs", None, "Epochs of the stages run.")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch.")
flags.DEFINE_string("mixed_precision", None,
                    "'' (float32), mixed_float16 or mixed_bfloat16. Default: "
                    "the preset's (mixed_float16 for the Uni-AdaFocus "
                    "presets the official code trains in it: fcvid, minik, "
                    "sthv1, sthv2, jester), or the resumed run's; "
                    "a preset's mixed_float16 trains in float32 on a host "
                    "without a GPU (a notice line says so). Given here, in "
                    "--config_file or in --override, it always applies. "
                    "config.json records the precision used.")
flags.DEFINE_integer("max_steps", 0, "Stop each stage after this many steps "
                     "(smoke tests); a stage that reached them is marked "
                     "done, so the next command goes on to the next stage.")
flags.DEFINE_bool("evaluate", True, "Print and save the results table at the "
                  "end.")
flags.DEFINE_integer("eval_max_videos", 0, "Evaluate on at most this many "
                     "videos (0: all).")
flags.DEFINE_integer("checkpoint_every", 50, "Steps between checkpoints (and "
                     "at the end of every epoch).")
flags.DEFINE_string("profile_steps", None, "A,B: write a TensorBoard profile "
                    "of training steps A..B (1-based) of each stage run into "
                    "<run>/logs/stage<k>.")
flags.DEFINE_integer("cluster_timeout",
                     strategy_lib.cluster.DEFAULT_JOIN_TIMEOUT_S, "--strategy=multi_worker: "
                     "seconds to wait for every worker of TF_CONFIG to "
                     "start; past them, an error line names those that do "
                     "not answer.")
flags.DEFINE_bool("deterministic", False, "Deterministic TensorFlow ops "
                  "(bitwise-reproducible runs; slower).")
flags.DEFINE_string("data_service", None, "grpc://HOST:PORT of a tf.data "
                    "service dispatcher (adafocus-data-service) whose workers "
                    "decode and augment the training input; a setting of "
                    "this command, not of the run (docs/SCALING.md).")

# The precision that pays only on a GPU: on a CPU, float16 math is several
# times slower than float32.
GPU_PRECISION = "mixed_float16"


def resolve_config() -> config_lib.ExperimentConfig:
  """The preset (or the resumed run's config) with ``--config_file``, the
  simple flags and ``--override`` applied, in that order, and validated.

  Each source's values are type-checked as they are set; once all are set,
  a field the config's model family does not use may keep the value the
  preset (or run) holds but not change it (``config.check_family_fields``).

  Raises:
    config.ConfigError: a field that does not exist, a value of the wrong
      type, or a change to a field the model family does not use (named,
      with its source; an ``errors.RefusedError``, reported in one line).
    ValueError: an unknown preset, an unreadable config file, or a value
      ``validate`` refuses (named).
    FileNotFoundError: the resumed run or the config file is missing.
  """
  changed = {}
  if FLAGS.resume:
    cfg = run_dir.read_config(FLAGS.resume)
  else:
    cfg = config_lib.get_preset(FLAGS.dataset, FLAGS.method)
  file_values = {}
  if FLAGS.config_file:
    if not io_utils.exists(FLAGS.config_file):
      raise FileNotFoundError(f"--config_file={FLAGS.config_file} does "
                              "not exist")
    file_values = config_lib.load_file(FLAGS.config_file)
    config_lib.apply_dict(cfg, file_values, source=FLAGS.config_file,
                          changed=changed)
  # Field -> the flag that sets it.
  simple = {"data.data_dir": "data_dir", "model.patch_size": "patch_size",
            "model.num_actions": "num_actions", "model.policy": "policy",
            "stage2.reward": "reward", "seed": "seed",
            "mixed_precision": "mixed_precision"}
  # The per-stage flags set the stages run, less the fields the family
  # does not use (a V2 run has no stages 2 and 3 but their epochs).
  unused = registry.of(cfg).unused()
  for stage in parse_stages(FLAGS.stage):
    for name in ("batch_size", "epochs", "steps_per_epoch"):
      if f"stage{stage}.{name}" not in unused:
        simple[f"stage{stage}.{name}"] = name
  for key, name in simple.items():
    if getattr(FLAGS, name) is not None:
      config_lib.override(cfg, key, getattr(FLAGS, name), f"--{name}",
                          changed)
  config_lib.apply_overrides(cfg, FLAGS.override, changed)
  config_lib.check_family_fields(cfg, changed)
  cfg.validate()
  given = (FLAGS.resume is not None or FLAGS.mixed_precision is not None
           or "mixed_precision" in file_values
           or any(item.split("=", 1)[0].strip() == "mixed_precision"
                  for item in FLAGS.override or ()))
  notice = host_precision(cfg, given, host_has_gpu())
  if notice:
    print(f"note: {notice}", file=sys.stderr)
  return cfg


def host_has_gpu() -> bool:
  """Whether TensorFlow sees a GPU on this host."""
  return bool(tf.config.list_physical_devices("GPU"))


def host_precision(cfg: config_lib.ExperimentConfig, given: bool,
                   has_gpu: bool):
  """Makes a preset's ``mixed_float16`` float32 on a host without a GPU.

  The Uni-AdaFocus presets train as the official code does, in mixed
  float16 (docs/METHOD.md V2-11.4), which only a GPU runs fast; on a CPU
  the run trains in float32 instead, and its ``config.json`` says so.

  Args:
    cfg: the resolved config, changed in place.
    given: the precision comes from the user (``--mixed_precision``,
      ``--config_file``, ``--override``) or from the resumed run (whose
      weights it trained), and is kept.
    has_gpu: whether the host has a GPU.

  Returns:
    The notice to print when the precision was changed, else None.
  """
  if given or has_gpu or cfg.mixed_precision != GPU_PRECISION:
    return None
  cfg.mixed_precision = ""
  return (f"the {cfg.data.dataset} preset trains in {GPU_PRECISION}, which "
          "needs a GPU; there is none here, so this run trains in float32 "
          f"(pass --mixed_precision={GPU_PRECISION} to keep it)")


def default_run_name(cfg: config_lib.ExperimentConfig) -> str:
  """``<dataset>[-<method>]-p<patch>[-<policy>]-s<seed>``: a method other
  than the default (``-v2``) and a policy kind that is not the preset's are
  named, so that such a run does not resume another."""
  method = config_lib.method_of(cfg)
  named = "" if method == config_lib.DEFAULT_METHOD else f"-{method}"
  preset = config_lib.get_preset(cfg.data.dataset, method).model.policy
  policy = "" if cfg.model.policy == preset else f"-{cfg.model.policy}"
  return (f"{cfg.data.dataset}{named}-p{cfg.model.patch_size}{policy}"
          f"-s{cfg.seed}")


def parse_stages(text: str):
  if text == "all":
    return list(experiment.STAGES)
  try:
    stages = sorted({int(s) for s in text.split(",")})
  except ValueError:
    raise app.UsageError(f"--stage={text!r}: use 'all' or e.g. 1,2,3")
  if not set(stages) <= set(experiment.STAGES):
    raise app.UsageError(f"--stage={text!r}: stages are 0, 1, 2, 3")
  return stages


def check_data(cfg: config_lib.ExperimentConfig, evaluate: bool) -> None:
  """Checks that the splits a run reads are prepared, before anything of
  the run is created.

  Args:
    cfg: the resolved config (its data_dir and split names).
    evaluate: whether the held-out split is read for the results table.

  Raises:
    FileNotFoundError: the data directory, a split's meta.json or its
      finished shards are missing (the path named).
    ValueError: a split's meta.json is unreadable.
  """
  if not io_utils.exists(cfg.data.data_dir):
    raise FileNotFoundError(f"data_dir {cfg.data.data_dir} does not exist; "
                            "prepare the data with datasets/prepare.py")
  splits = [cfg.data.train_split] + ([cfg.data.eval_split] if evaluate
                                     else [])
  for split in splits:
    split_dir = pipeline.split_dir(cfg.data, split)
    shards.read_meta(split_dir)
    shards.list_records(split_dir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.data_service:
    if FLAGS.strategy == "multi_worker":
      raise data_service.DataServiceError(
          f"--data_service={FLAGS.data_service} feeds one training process; "
          f"--strategy={FLAGS.strategy} reads its input locally")
    data_service.check_reachable(FLAGS.data_service)
  try:
    cfg = resolve_config()
    step_profiler.parse_steps(FLAGS.profile_steps)
  except errors.RefusedError:
    raise  # one error line (run_main), not the usage text
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e))
  if not cfg.data.data_dir:
    if cfg.data.dataset not in embedded.DATASETS:
      raise app.UsageError(f"--dataset={cfg.data.dataset} needs --data_dir "
                           "(prepare it with datasets/prepare.py)")
    cfg.data.data_dir = embedded.ensure(
        cfg.data.dataset,
        io_utils.join(FLAGS.workspace, "data", cfg.data.dataset))
  try:
    check_data(cfg, FLAGS.evaluate)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  run = FLAGS.resume or FLAGS.run_dir or io_utils.join(
      FLAGS.workspace, "runs", default_run_name(cfg))
  if FLAGS.cpu_devices:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
  if FLAGS.deterministic:
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
  if cfg.mixed_precision:
    tf.keras.mixed_precision.set_global_policy(cfg.mixed_precision)
  strategy = strategy_lib.make_strategy(FLAGS.strategy,
                                        FLAGS.cluster_timeout)
  logging.info("run %s, %d replica(s)", run, strategy.num_replicas_in_sync)
  try:
    with data_service.use(FLAGS.data_service):
      experiment.run_stages(cfg, run, parse_stages(FLAGS.stage), strategy,
                            init_from=FLAGS.init_from,
                            progress=FLAGS.progress,
                            max_steps=FLAGS.max_steps,
                            checkpoint_every=FLAGS.checkpoint_every,
                            profile_steps=FLAGS.profile_steps or "",
                            on_start=lambda: terminal.keep_log(run, "train"))
    if FLAGS.evaluate and strategy_lib.is_chief(strategy):
      results = results_table.results_table(
          trained_run.TrainedRun(run, cfg=cfg), FLAGS.eval_max_videos,
          progress=FLAGS.progress)
      print(results_table.format_table(results))
      print(f"run directory: {run}")
  except (run_config.ConfigChangeError, data_check.DataMismatchError) as e:
    # Not a failure of the program but of the request, found before
    # anything is written (run_stages checks before its first write, the
    # results table before computing any row): one line, like bad data.
    print(f"error: {e}", file=sys.stderr)
    return 2


def run() -> None:
  """The ``adafocus-train`` console script (and ``launch/train.py``)."""
  COMMAND.run(main)

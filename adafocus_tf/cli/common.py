"""What the command-line tools share: flags defined once, and the way in
and out of a command.

A command module (``adafocus_tf/cli/<command>.py``) defines its own flags at
import and declares a ``Command`` naming the shared flags it reads. absl's
flags live in one process-wide registry, so a flag name used by several
commands is defined once, here (``SHARED``), with one help text for all of
them; a module that defined it again would make importing two commands in
one process fail (``DuplicateFlagError``). Where the commands that share a
flag differ in its default, its allowed values or whether it is required,
the ``Command`` says so, and ``Command.run`` applies it when that command
runs (each process runs one command).

``run_main`` is the way out: every exit goes through
``io_utils.exit_process``, because a plain one aborts once S3 was used.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from typing import Callable, Dict, Mapping, Optional, Sequence

from absl import app
from absl import flags

from adafocus_tf import config as config_lib
from adafocus_tf import errors
from adafocus_tf import io_utils
from adafocus_tf import native_logging
from adafocus_tf.cli import terminal
from adafocus_tf.data import split_lists

FLAGS = flags.FLAGS

WORKSPACE_ENV = "ADAFOCUS_WORKSPACE"


@dataclasses.dataclass(frozen=True)
class SharedFlag:
  """How a flag used by several commands is defined.

  Attributes:
    define: the absl ``DEFINE_*`` function of its type.
    default: its default, unless a ``Command`` sets another.
    help: one text for every command that uses it.
  """
  define: Callable
  default: object
  help: str


SHARED: Dict[str, SharedFlag] = {
    "run": SharedFlag(
        flags.DEFINE_string, None,
        "Run directory (local or s3://) that adafocus-train (or "
        "adafocus-convert) wrote."),
    "data_dir": SharedFlag(
        flags.DEFINE_string, None,
        "Prepared dataset (local or s3://; adafocus-prepare writes one). "
        "Default: a run's, from its config.json; train without one uses the "
        "embedded synthetic data in the workspace; convert records it in "
        "the new run."),
    "dataset": SharedFlag(
        flags.DEFINE_string, None,
        "train, flops, convert: the config preset (one of "
        f"{', '.join(config_lib.datasets())}); prepare: the format of "
        f"the split lists (one of {', '.join(split_lists.FORMATS)})."),
    "workspace": SharedFlag(
        flags.DEFINE_string, os.environ.get(WORKSPACE_ENV, "workspace"),
        "Root of data/, runs/ and exports/ (local or s3://): where train "
        "puts its default run directory and the synthetic data, export its "
        f"default --export_dir; env {WORKSPACE_ENV}."),
    "out": SharedFlag(
        flags.DEFINE_string, None,
        "Where the command writes (local path or s3://): prepare the "
        "dataset root (each split in <out>/<split>/), synthetic the dataset "
        "root, convert the run directory to create."),
    "patch_size": SharedFlag(
        flags.DEFINE_integer, None,
        "Patch size P. train and flops: default the preset's (or the "
        "resumed run's); convert: required, the weights do not record it."),
    "batch_size": SharedFlag(
        flags.DEFINE_integer, None,
        "Videos per batch. train: the global batch of the stages run "
        "(default the config's); profile: videos per forward pass."),
    "method": SharedFlag(
        flags.DEFINE_string, "v1",
        "train, flops, convert: the AdaFocus method of the --dataset preset: "
        "v1 (stages 0-3, a PPO patch policy) or v2 (AdaFocusV2: stage 0, "
        "then one end-to-end stage; docs/METHOD.md V2). A resumed run keeps "
        "its own."),
    "seed": SharedFlag(
        flags.DEFINE_integer, None,
        "Seed. train, convert: the run's (data order, augmentation, "
        "patches; default the config's); synthetic: the generated videos' "
        "(>= 0)."),
    "override": SharedFlag(
        flags.DEFINE_multi_string, [],
        "Any config field, e.g. --override=stage1.backbone_lr=1e-3 or "
        "--override=data.num_classes=101 (repeatable)."),
    "strategy": SharedFlag(
        flags.DEFINE_string, "default",
        "tf.distribute strategy: default (one device), mirrored (every local "
        "GPU, or the --cpu_devices), multi_worker (the cluster in TF_CONFIG; "
        "train only)."),
    "cpu_devices": SharedFlag(
        flags.DEFINE_integer, 0,
        "Split the CPU into this many logical devices (to try "
        "--strategy=mirrored without GPUs)."),
    "progress": SharedFlag(
        flags.DEFINE_bool, True, "Progress bars."),
    "log_level": SharedFlag(
        lambda name, default, text: flags.DEFINE_enum(
            name, default, terminal.LEVELS, text),
        terminal.DEFAULT_LEVEL,
        "The lowest level of log lines shown. Below debug, the command's "
        "own lines are plain text and other libraries' routine lines "
        "(TensorFlow's C++ start-up, its checkpoint INFO) are hidden; debug "
        "(or --verbosity=1) shows everything in absl's format. A "
        "TF_CPP_MIN_LOG_LEVEL set in the environment always wins for "
        "TensorFlow's C++ lines."),
    "max_videos": SharedFlag(
        flags.DEFINE_integer, 0,
        "Use at most this many videos of each split read (0: all)."),
    # "auto" is inference.predictor.AUTO, not imported here: it loads the
    # models, which commands without a run do not need.
    "patches": SharedFlag(
        flags.DEFINE_string, "auto",
        "Patch choice; auto: the learned policy once stage 2 is done, else "
        "the centre patch."),
    "early_exit": SharedFlag(
        flags.DEFINE_bool, False,
        "AdaFocus+ early exit with the run's calibrated thresholds "
        "(adafocus-calibrate-exit). predict: stop each clip at the step they "
        "choose (without thresholds every clip runs all frames); export: "
        "build them into the SavedModel; evaluate: run each video step by "
        "step until it exits and report the cost it ran."),
    "test_crops": SharedFlag(
        flags.DEFINE_integer, None,
        "Views of each evaluation video, 1 or 3 (the centre, left and right "
        "crops), their logits averaged and their costs added; default: the "
        "run's data.test_crops. With early exit (a model family that exits "
        "on raw logits), every view runs each exit step a video reaches and "
        "their mean logits decide; calibrate-exit fits the thresholds on "
        "one view of each training video."),
    "json": SharedFlag(
        flags.DEFINE_bool, False, "Print JSON instead of text."),
    "allow_unfinished": SharedFlag(
        flags.DEFINE_bool, False,
        "Use the weights of a stage that has not finished (killed, or still "
        "training) when it comes after the last finished one; without it "
        "such a stage is passed over with a warning, and a run with no "
        "finished stage is refused. What is written records the "
        "unfinished stage."),
    "short_side": SharedFlag(
        flags.DEFINE_integer, None,
        "Resize frames so the short side has this many pixels (0: as "
        "decoded). prepare stores frames so; serve_client sends them so "
        "(datasets prepared with adafocus-prepare store 360)."),
    "videos_per_shard": SharedFlag(
        flags.DEFINE_integer, None, "Videos per shard file."),
    "num_frames": SharedFlag(
        flags.DEFINE_integer, None,
        "Frames per video. flops: T (default the preset's; two-stream "
        "presets set data.glance_frames and data.focus_frames instead); "
        "serve_client: frames to send, T (TSN centre sampling) or -1 for "
        "every frame (a two-stream model), 0 to ask the server's metadata "
        "(and send every frame to tf_example if it does not say)."),
}


# The shared flags every command reads, without naming them.
ALWAYS_SHARED = ("log_level",)

# The shared flags defined so far in this process, by name.
_DEFINED: Dict[str, flags.FlagHolder] = {}


def shared_flag(name: str) -> flags.FlagHolder:
  """The shared flag ``name``, defined on its first use in the process; every
  command gets the same holder.

  Args:
    name: a key of ``SHARED``.
  """
  if name not in _DEFINED:
    spec = SHARED[name]
    _DEFINED[name] = spec.define(name, spec.default, spec.help)
  return _DEFINED[name]


def test_crops_flag() -> Optional[int]:
  """``--test_crops`` (a shared flag), checked: None when not given.

  Raises:
    app.UsageError: not one of ``config.TEST_CROPS``.
  """
  value = FLAGS.test_crops
  if value is not None and value not in config_lib.TEST_CROPS:
    raise app.UsageError(f"--test_crops={value}: must be one of "
                         f"{config_lib.TEST_CROPS}")
  return value


class Command:
  """One command line tool: its flags, and how it runs.

  Args:
    module: the command module's ``__name__``; its docstring is the usage
      text and the flags it defines are the command's own.
    shared: the names of the ``SHARED`` flags the command reads (defined
      now, if no other command did).
    defaults: shared flag -> this command's default, when not the shared
      one.
    choices: shared flag -> the values this command accepts (others are
      refused as absl refuses a value of an enum flag).
    required: flags (shared or own) the command cannot run without, in the
      order their absence is reported.
  """

  def __init__(self, module: str, shared: Sequence[str] = (),
               defaults: Optional[Mapping[str, object]] = None,
               choices: Optional[Mapping[str, Sequence[str]]] = None,
               required: Sequence[str] = ()):
    unknown = set(defaults or {}) | set(choices or {})
    unknown -= set(shared)
    if unknown:
      raise ValueError(f"{module}: {sorted(unknown)} are not among its "
                       "shared flags")
    self.module = module
    # Every command's terminal is set by the same flag.
    self.shared = {name: shared_flag(name)
                   for name in (*shared, *ALWAYS_SHARED)}
    self.defaults = dict(defaults or {})
    self.choices = {k: tuple(v) for k, v in (choices or {}).items()}
    self.required = tuple(required)

  def flag_names(self):
    """The names of every flag of the command, its own and shared, sorted."""
    own = [f.name for f in FLAGS.flags_by_module_dict().get(self.module, [])]
    return sorted(set(own) | set(self.shared))

  def run(self, main: Callable[[list], Optional[int]]) -> None:
    """Parses the command line for this command and runs ``main``; never
    returns (``run_main``).

    Args:
      main: the command's ``main(argv)``.
    """
    for name, value in self.defaults.items():
      FLAGS.set_default(name, value)
    for name, values in self.choices.items():
      flag = FLAGS[name]
      flag.parser = flags.EnumParser(list(values))
      flag.help = f"<{'|'.join(values)}>: {SHARED[name].help}"
    if self.required:
      flags.mark_flags_as_required(list(self.required))
    # absl's usage text is the main module's docstring and the flags of the
    # module named sys.argv[0]: the console script or launch/ wrapper that
    # calls this defines none, so the command's are declared theirs.
    sys.modules["__main__"].__doc__ = sys.modules[self.module].__doc__
    for name in self.flag_names():
      FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    run_main(main, tool=self.module.rsplit(".", 1)[-1],
             logs_to_run="run" in self.shared)


def run_main(main: Callable[[list], Optional[int]], tool: str = "",
             logs_to_run: bool = False) -> None:
  """``absl.app.run(main)``, with every way out through
  ``io_utils.exit_process``.

  absl ends a usage error or an exception with ``sys.exit``, which aborts
  (status 134) once S3 was used. Here the exit status is main's return
  value (None: 0) or its ``SystemExit`` code; a usage error prints its
  message as ``error: ...`` (status 1), an ``errors.RefusedError`` or
  ``S3UnreachableError`` one line (status 2, a refused request or an
  unusable input found before anything wrong was written), any other
  exception its traceback (status 1; Ctrl-C 130).

  Args:
    main: the entry point's ``main(argv)``.
    tool: the command's name (its log file's).
    logs_to_run: keep the log in the ``--run`` directory
      (``terminal.keep_log``; a command that makes its run calls it
      itself).
  """
  def guarded(argv):
    try:
      level = (FLAGS["log_level"].value if "log_level" in FLAGS
               else terminal.DEFAULT_LEVEL)
      terminal.configure(level, FLAGS.verbosity)
      if not terminal.shows_everything(level, FLAGS.verbosity):
        native_logging.filter_stderr()
      if logs_to_run and FLAGS["run"].value:
        terminal.keep_log(FLAGS["run"].value, tool)
      status = main(argv)
    except SystemExit as e:
      status = e.code
    except app.UsageError as e:
      # One line, not the whole usage text above it.
      print(f"error: {e}", file=sys.stderr)
      status = e.exitcode
    except (errors.RefusedError, io_utils.S3UnreachableError) as e:
      print(f"error: {e}", file=sys.stderr)
      status = 2
    except KeyboardInterrupt:
      traceback.print_exc()
      status = 130
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      status = 1
    if status is None:
      status = 0
    elif not isinstance(status, int):
      # sys.exit("message"): the message, then status 1, as Python does.
      print(status, file=sys.stderr)
      status = 1
    io_utils.exit_process(status)

  try:
    app.run(guarded)
  except SystemExit as e:
    # absl ends --help (and --helpfull, ...) with status 1; asking for help
    # is not a failure.
    if _asked_for_help(sys.argv):
      io_utils.exit_process(0)
    io_utils.exit_process(e.code if isinstance(e.code, int) else 1)


def _asked_for_help(argv: Sequence[str]) -> bool:
  """Whether the command line asks for absl's help text."""
  helps = {"-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml"}
  for arg in argv[1:]:
    if arg == "--":
      return False
    if arg in helps:
      return True
  return False

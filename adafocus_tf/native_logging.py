"""What TensorFlow and its companions print while they load, chosen before
they load.

TensorFlow 2.16's CPU wheel logs three ``E ... Unable to register cu*
factory`` lines at import, and at run time lines such as ``E ... oneDNN
supports DT_BOOL only on platforms with AVX-512``: neither is an error of
the user's work, and a failing op raises a Python exception with its
message anyway. The C++ log level is read once, when TensorFlow loads, so
it is set here, from the package's ``__init__``. Gym (imported by
tf-agents) prints a three-line notice that it is unmaintained; importing it
here with that notice captured keeps it off the terminal.

Some native code logs through absl's C++ logging, which no environment
variable quiets (Grappler's ``W0000 ... op_level_cost_estimator.cc] Error in
PredictCost()`` on crops of unknown shapes), or prints directly (TensorFlow
Lite's ``INFO: Created TensorFlow Lite XNNPACK delegate``): the command-line
tools send the standard error stream through a filter of such lines
(``filter_stderr``).

A user's ``TF_CPP_MIN_LOG_LEVEL`` always wins. Asking a command for
detail (``--log_level=debug``, or absl's ``--verbosity`` / ``-v`` of 1 or
more) shows everything, notices included.
"""
import contextlib
import io
import os
import subprocess
import sys
import tempfile
from typing import MutableMapping, Sequence

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# TensorFlow's C++ levels: 0 everything, 3 fatal only.
EVERYTHING = "0"
FATAL_ONLY = "3"
_STDERR_FD = 2
_FILTER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "native_log_filter.py")
# Whether the command line asked for detail (``choose``).
_detail = False
# The file that tells the filter where the held-back lines go
# (``filter_stderr``, ``keep_hidden_lines``).
_pointer = None


def wants_detail(argv: Sequence[str]) -> bool:
  """Whether a command line asks for the libraries' own log lines.

  Args:
    argv: the command line (``sys.argv``).

  Returns:
    True for ``--log_level=debug`` (or ``--log_level debug``) and for
    absl's ``--verbosity``, ``--v`` or ``-v`` of 1 or more.
  """
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      break
    name, has_value, value = arg.partition("=")
    if not has_value and i + 1 < len(args):
      value = args[i + 1]
    if name == "--log_level" and value.lower() == "debug":
      return True
    if name in ("--verbosity", "--v", "-v"):
      try:
        if int(value) >= 1:
          return True
      except ValueError:
        pass
  return False


def choose(argv: Sequence[str], environ: MutableMapping[str, str]) -> bool:
  """Sets the C++ log level (unless the user did) and hides Gym's notice,
  both unless ``argv`` asks for detail.

  Args:
    argv: the command line.
    environ: the process environment (``os.environ``), changed in place.

  Returns:
    Whether the command line asked for detail.
  """
  global _detail
  detail = _detail = wants_detail(argv)
  environ.setdefault(LOG_LEVEL_ENV, EVERYTHING if detail else FATAL_ONLY)
  if not detail:
    _import_gym_quietly()
  return detail


def _import_gym_quietly():
  with contextlib.redirect_stderr(io.StringIO()):
    try:
      import gym  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      pass


def filter_stderr() -> None:
  """From now on, sends what native code writes to the standard error
  stream through ``native_log_filter`` (a process of its own), unless the
  command line asked for detail; Python's ``sys.stderr`` then writes to the
  terminal directly, so progress bars are redrawn as they are written.
  For the command-line tools, once per process."""
  if _detail:
    return
  global _pointer
  sys.stderr.flush()
  terminal = os.dup(_STDERR_FD)
  _pointer = os.path.join(tempfile.mkdtemp(prefix="adafocus-log-"),
                          "log_path")
  filter_process = subprocess.Popen(
      [sys.executable, "-I", "-S", _FILTER_SCRIPT, _pointer],
      stdin=subprocess.PIPE, stdout=terminal)
  os.dup2(filter_process.stdin.fileno(), _STDERR_FD)
  # The process's standard error stream now holds the pipe's writing end;
  # the filter ends when every holder of it (this process, its children)
  # has exited.
  filter_process.stdin.close()
  sys.stderr = open(terminal, "w", buffering=1, encoding=sys.stderr.encoding,
                    errors="backslashreplace")


def keep_hidden_lines(log_path: str) -> None:
  """Appends the native lines the filter held back (and holds back from
  now on) to the local file ``log_path``; nothing when no filter runs.

  Args:
    log_path: a local file (the tool's log, ``cli/terminal.keep_log``).
  """
  if _pointer is None:
    return
  temporary = f"{_pointer}.tmp"
  with open(temporary, "w") as f:
    f.write(log_path)
  os.replace(temporary, _pointer)

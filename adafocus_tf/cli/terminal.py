"""What a command prints while it works: its own lines, plainly.

By default a command shows its own INFO lines as plain text (one line per
stage or result, no absl prefix of date, thread id and file), warnings as
``warning: ...`` once each (other libraries' logged warnings too, but not
their Python deprecation and syntax warnings), and errors as
``error: ...``; every line goes through ``tqdm.write``, so a progress bar
on the terminal is redrawn below it instead of broken. Routine INFO of
other libraries (TensorFlow's checkpoint sharding and asset writing,
tf-agents) is hidden.
``--log_level=debug`` or absl's ``--verbosity`` of 1 or more keep absl's own
format and every library's lines, as TensorFlow programs usually print.

What the terminal does not show is still kept: every log line of INFO and
above (and the native lines ``native_logging``'s filter holds back) goes
to ``<run>/logs/<tool>-<time>-<pid>.log`` once the tool knows its run
(``keep_log``), so that a bug report can attach it.
"""
import logging
from logging import handlers
import os
import sys
import time
from typing import Optional
import warnings

from absl import logging as absl_logging
import tqdm

from adafocus_tf import local_cache
from adafocus_tf import native_logging

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LEVEL = "info"
# Records of this logger (and below), or from files under this directory,
# are the package's own.
_PACKAGE = "adafocus_tf"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PREFIXES = {logging.WARNING: "warning: ", logging.ERROR: "error: ",
             logging.CRITICAL: "error: "}
LOG_FOLDER = "logs"
LOG_FORMAT = ("%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] "
              "%(message)s")
# Records kept in memory until the log file is known (``keep_log``).
_BUFFERED_RECORDS = 100_000
# The buffer (``configure``) while the log file is not known yet.
_memory: Optional[handlers.MemoryHandler] = None
# TensorFlow warnings that are no news here: evaluation traces one function
# per patch choice, by design, which TensorFlow's retracing heuristic
# reports as a loop creating functions.
_ROUTINE_WARNINGS = ("triggered tf.function retracing",)


class _PlainFormatter(logging.Formatter):
  """The message alone; warnings and errors say which they are."""

  def format(self, record):
    text = super().format(record)
    return _PREFIXES.get(record.levelno, "") + text


class _OwnInfoAndOnce(logging.Filter):
  """Passes the package's INFO, others' warnings and errors, each text
  once."""

  def __init__(self):
    super().__init__()
    self._seen = set()

  def filter(self, record):
    own = (record.name.split(".")[0] == _PACKAGE
           or os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))
    if record.levelno < logging.WARNING and not own:
      return False
    text = record.getMessage()
    if any(routine in text for routine in _ROUTINE_WARNINGS):
      return False
    key = (record.levelno, text)
    if key in self._seen:
      return False
    self._seen.add(key)
    return True


class _ProgressBarSafeHandler(logging.Handler):
  """Writes each line above any progress bar (``tqdm.write``).

  Args:
    level: the lowest level it writes.
  """

  def emit(self, record):
    try:
      tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def _show_own_warning(message, category, filename, lineno, file=None,
                      line=None):
  """Python warnings of the package as log lines; other libraries' (their
  deprecations and syntax warnings) are not the user's to act on."""
  del lineno, file, line
  if os.path.abspath(filename).startswith(_PACKAGE_DIR):
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__,
                                             message)


def shows_everything(log_level: str, verbosity: int) -> bool:
  """Whether ``--log_level`` or absl's ``--verbosity`` asks for every
  library's lines in absl's format."""
  return log_level == "debug" or verbosity >= 1


def configure(log_level: str = DEFAULT_LEVEL, verbosity: int = 0) -> None:
  """Sets how the command's log lines look; called once flags are parsed.

  Args:
    log_level: the lowest level shown, one of ``LEVELS``; ``debug`` also
      keeps absl's line format and every library's INFO.
    verbosity: absl's ``--verbosity``; 1 or more is the same as ``debug``.
  """
  if shows_everything(log_level, verbosity):
    absl_logging.set_verbosity(absl_logging.DEBUG)
    logging.getLogger("tensorflow").setLevel(logging.DEBUG)
    return
  global _memory
  root = logging.getLogger()
  for handler in list(root.handlers):
    root.removeHandler(handler)
  level = getattr(logging, log_level.upper())
  handler = _ProgressBarSafeHandler(level)
  handler.setFormatter(_PlainFormatter("%(message)s"))
  handler.addFilter(_OwnInfoAndOnce())
  root.addHandler(handler)
  # Everything from INFO up reaches the log file; the terminal's handler
  # picks its part.
  _memory = handlers.MemoryHandler(_BUFFERED_RECORDS,
                                   flushLevel=logging.CRITICAL + 1)
  root.addHandler(_memory)
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  # TensorFlow's logger has a handler of its own once it logged; routed to
  # the root one instead, it is filtered like any other library's.
  tf_logger = logging.getLogger("tensorflow")
  for tf_handler in list(tf_logger.handlers):
    tf_logger.removeHandler(tf_handler)
  tf_logger.propagate = True
  tf_logger.setLevel(logging.INFO)
  warnings.showwarning = _show_own_warning


def keep_log(run: str, tool: str) -> Optional[str]:
  """From now on (and for what was logged before) writes every log line of
  INFO and above, and the native lines the terminal does not show, to
  ``<run>/logs/<tool>-<time>-<pid>.log``; the log of a remote (``s3://``)
  or read-only run, or of a path that is no directory (yet), goes to
  ``logs/<run's name>/`` of the machine's cache folder (``local_cache``). Nothing when the terminal shows everything
  (``--log_level=debug``).

  Args:
    run: the run directory the tool works on.
    tool: the command's name.

  Returns:
    The log file's path, or None.
  """
  global _memory
  if _memory is None:
    return None
  name = f"{tool}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
  folders = [local_cache.path(LOG_FOLDER,
                              os.path.basename(run.rstrip("/")) or "run")]
  if "://" not in run and os.path.isdir(run):
    folders.insert(0, os.path.join(run, LOG_FOLDER))
  for folder in folders:
    try:
      os.makedirs(folder, exist_ok=True)
      file_handler = logging.FileHandler(os.path.join(folder, name))
      break
    except OSError:
      continue
  else:
    return None
  file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
  root = logging.getLogger()
  _memory.setTarget(file_handler)
  _memory.flush()
  root.removeHandler(_memory)
  _memory.close()
  _memory = None
  root.addHandler(file_handler)
  native_logging.keep_hidden_lines(file_handler.baseFilename)
  return file_handler.baseFilename

"""Forwards its standard input to its standard output, less the native
log lines that are no news to a user (``native_logging.filter_stderr``).

It runs as a process of its own (``python -I -S native_log_filter.py
POINTER``, no package import) reading what the command's native code
writes to the standard error stream: when the command dies, even by an
abort, the filter still forwards every line written before. The lines it
holds back go to the log file named in the file POINTER once that exists
(``native_logging.keep_hidden_lines``), and wait in memory until then.
"""
import os
import re
import sys

# Lines written by native code that no log level setting reaches: absl's
# C++ logging before its initialisation (Grappler's cost estimator on ops
# with unknown shapes, the TFLite converter's ignored legacy options), and
# TensorFlow Lite's delegate announcement.
NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\)"),
    re.compile(rb"^[IW]\d{4} [\d:. ]+\d+ (op_level_cost_estimator|"
               rb"tf_tfl_flatbuffer_helpers)\.cc:\d+\] "),
    re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU"),
)
_CHUNK = 1 << 16


class HiddenLines:
  """Where the held-back lines go: the log file named in ``pointer``.

  Args:
    pointer: a file that will hold the log file's path (or None: the lines
      are dropped).
  """

  def __init__(self, pointer):
    self.pointer = pointer
    self.waiting = []

  def add(self, line: bytes) -> None:
    """Keeps ``line`` (with its newline) for the log file."""
    if self.pointer is not None:
      self.waiting.append(line)
      self.flush()

  def flush(self) -> None:
    """Writes the waiting lines to the log file, if it is known yet."""
    if not self.waiting:
      return
    try:
      with open(self.pointer) as f:
        target = f.read()
      with open(target, "ab") as log:
        log.write(b"".join(self.waiting))
      self.waiting = []
    except OSError:
      pass  # No log file yet: they wait.


def forward(read_fd: int, write_fd: int, hidden: HiddenLines) -> None:
  """Copies lines from ``read_fd`` to ``write_fd`` until end of file,
  giving ``NOISE`` to ``hidden`` instead; a last line without its newline
  is forwarded as it is."""
  pending = b""
  while True:
    chunk = os.read(read_fd, _CHUNK)
    if not chunk:
      break
    *lines, pending = (pending + chunk).split(b"\n")
    kept = []
    for line in lines:
      if any(p.match(line) for p in NOISE):
        hidden.add(line + b"\n")
      else:
        kept.append(line + b"\n")
    _write_all(write_fd, b"".join(kept))
  _write_all(write_fd, pending)
  hidden.flush()


def _write_all(fd: int, data: bytes) -> None:
  while data:
    data = data[os.write(fd, data):]


def _remove(pointer) -> None:
  """Removes the pointer file and its folder (``filter_stderr`` made
  both)."""
  for remove, path in ((os.remove, pointer),
                       (os.rmdir, os.path.dirname(pointer))):
    try:
      remove(path)
    except OSError:
      pass


if __name__ == "__main__":
  _pointer = sys.argv[1] if len(sys.argv) > 1 else None
  forward(sys.stdin.fileno(), sys.stdout.fileno(), HiddenLines(_pointer))
  if _pointer:
    _remove(_pointer)

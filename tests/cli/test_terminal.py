"""adafocus_tf/cli/terminal.py: the tools' lines on the terminal, and the
log file that keeps what the terminal does not show.

Each case runs in a process of its own: ``configure`` sets the process's
logging once, as a tool does."""
import glob
import os
import subprocess
import sys

import helpers

# A tool's life in miniature: the terminal set up, lines logged before and
# after the run is known, one of them from another library.
_TOOL = r"""
import logging, sys
from absl import app
from absl import logging as absl_logging
from adafocus_tf.cli import terminal

def main(argv):
  terminal.configure(argv[2])
  own = logging.getLogger("adafocus_tf.x")
  logging.getLogger("tensorflow").info("Sharding callback duration: 36")
  absl_logging.info("another library's absl line")
  own.info("stage 0 starts")
  logging.getLogger("tensorflow").warning("a library warning")
  logging.getLogger("tensorflow").warning("a library warning")
  print(terminal.keep_log(argv[1], "tool"))
  own.info("after the run is known")

app.run(main)
"""


def _tool(run, level="info", cache=None):
  env = helpers.user_environment()
  if cache:
    env["ADAFOCUS_CACHE_DIR"] = cache
  return subprocess.run([sys.executable, "-c", _TOOL, run, level],
                        capture_output=True, text=True, timeout=120,
                        env=env, check=True)


def test_terminal_shows_own_lines_and_each_warning_once(tmp_path):
  proc = _tool(str(tmp_path))
  assert proc.stderr.splitlines() == [
      "stage 0 starts", "warning: a library warning",
      "after the run is known"]


def test_log_file_keeps_every_line(tmp_path):
  proc = _tool(str(tmp_path))
  (path,) = glob.glob(str(tmp_path / "logs" / "tool-*.log"))
  assert proc.stdout.strip() == path
  text = open(path).read()
  for line in ("Sharding callback duration: 36", "another library's absl "
               "line", "stage 0 starts", "a library warning",
               "after the run is known"):
    assert line in text, line
  # absl's kind of line: time, level, logger, file and line.
  assert " I tensorflow <string>:" in text


def test_warning_level_hides_info_but_keeps_it_in_the_log(tmp_path):
  proc = _tool(str(tmp_path), level="warning")
  assert proc.stderr.splitlines() == ["warning: a library warning"]
  (path,) = glob.glob(str(tmp_path / "logs" / "tool-*.log"))
  assert "after the run is known" in open(path).read()


def test_no_run_directory_yet_logs_to_the_cache_folder(tmp_path):
  missing = str(tmp_path / "not-a-run")
  proc = _tool(missing, cache=str(tmp_path / "cache"))
  assert not os.path.exists(missing)  # a mistyped --run is not created
  assert proc.stdout.strip().startswith(
      str(tmp_path / "cache" / "logs" / "not-a-run" / "tool-"))


def test_debug_keeps_absl_format_and_writes_no_file(tmp_path):
  proc = _tool(str(tmp_path), level="debug")
  assert proc.stdout.strip() == "None"
  assert "Sharding callback duration: 36" in proc.stderr
  assert "<string>:" in proc.stderr  # absl's prefix: file and line
  assert not os.path.exists(tmp_path / "logs")

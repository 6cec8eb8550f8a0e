"""adafocus_tf/native_logging.py: what TensorFlow may print while it loads."""
import os
import subprocess
import sys

import pytest

from adafocus_tf import native_logging


@pytest.mark.parametrize("argv, detail", [
    (["tool"], False),
    (["tool", "--log_level=info"], False),
    (["tool", "--log_level=debug"], True),
    (["tool", "--log_level", "DEBUG"], True),
    (["tool", "--verbosity=1"], True),
    (["tool", "-v", "2"], True),
    (["tool", "--v=0"], False),
    (["tool", "--verbosity=x"], False),
    # After "--" an argument is the command's, not a flag.
    (["tool", "--", "--log_level=debug"], False),
])
def test_wants_detail(argv, detail):
  assert native_logging.wants_detail(argv) is detail


def test_choose_sets_the_level_unless_the_user_did():
  environ = {}
  assert native_logging.choose(["tool"], environ) is False
  assert environ == {"TF_CPP_MIN_LOG_LEVEL": native_logging.FATAL_ONLY}
  environ = {}
  assert native_logging.choose(["tool", "--log_level=debug"], environ)
  assert environ == {"TF_CPP_MIN_LOG_LEVEL": native_logging.EVERYTHING}
  environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
  native_logging.choose(["tool"], environ)
  assert environ == {"TF_CPP_MIN_LOG_LEVEL": "1"}


def test_filter_drops_the_native_noise_and_forwards_the_rest():
  # The filter as the tools start it: a process of its own.
  lines = [b"step 1\n",
           b"WARNING: All log messages before absl::InitializeLog() is "
           b"called are written to STDERR\n",
           b"W0000 00:00:1796634259.406659   32233 op_level_cost_estimator"
           b".cc:699] Error in PredictCost() for the op: op: \"Crop\"\n",
           b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
           b"W0000 00:00:1796636547.509652   31095 tf_tfl_flatbuffer_helpers"
           b".cc:390] Ignored output_format.\n",
           b"F0000 00:00:1.0 1 check.cc:1] Check failed: the reason\n",
           b"no newline at the end"]
  proc = subprocess.run(
      [sys.executable, "-I", "-S", native_logging._FILTER_SCRIPT],
      input=b"".join(lines), capture_output=True, timeout=60, check=True)
  assert proc.stdout == lines[0] + lines[5] + lines[6]


def test_tool_output_passes_the_filter_unchanged(tmp_path):
  # A process that starts the filter as the tools do, then writes natively
  # (as C++ code does) and through Python's sys.stderr, and aborts.
  code = ("import os, sys; from adafocus_tf import native_logging; "
          "native_logging.filter_stderr(); "
          "os.write(2, b'W0000 00:00:1.0 7 op_level_cost_estimator.cc:1] x\\n'"
          "); os.write(2, b'native line\\n'); "
          "sys.stderr.write('python line\\r50%\\r100%\\n'); sys.stderr.flush();"
          " os.abort()")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        timeout=60, env=env)
  assert proc.returncode != 0
  assert sorted(proc.stderr.split(b"\n")) == [
      b"", b"native line", b"python line\r50%\r100%"]


def test_held_back_lines_reach_the_log_file_once_it_is_named(tmp_path):
  # Lines held back before the pointer file exists wait, then go to the
  # log it names (native_logging.keep_hidden_lines writes it).
  pointer, log = tmp_path / "pointer", tmp_path / "tool.log"
  noise = (b"W0000 00:00:1.0 7 op_level_cost_estimator.cc:1] "
           b"Error in PredictCost()\n")
  proc = subprocess.Popen(
      [sys.executable, "-I", "-S", native_logging._FILTER_SCRIPT,
       str(pointer)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
  proc.stdin.write(noise + b"shown\n")
  proc.stdin.flush()
  pointer.write_text(str(log))
  proc.stdin.write(noise)
  out, _ = proc.communicate(timeout=60)
  assert out == b"shown\n"
  assert log.read_bytes() == noise * 2
  assert not pointer.exists()  # the filter cleans up after itself

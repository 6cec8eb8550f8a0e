"""The PyTorch side of the converter's parity tests.

PyTorch cannot be installed beside this project's stack (torch 2.x needs
typing-extensions >= 4.10, tf-agents 0.19 pins 4.5.0), so the reference
scripts beside this file (``torch_reference.py``, ``torch_reference_v2.py``)
run in their own interpreter. It is, in order: ``$ADAFOCUS_TORCH_PYTHON``;
this one, if it imports torch; or a virtual environment made once under
``~/.cache/adafocus-tf`` with ``torch==2.13.0+cpu`` (the CPU build: the
local version pin can never resolve to a CUDA build). Without any, the
tests that need it are skipped, except in CI (``CI`` set), where that is a
failure.
"""
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

import helpers

TORCH_REQUIREMENTS = ("torch==2.13.0+cpu", "numpy==1.26.4")
HERE = os.path.dirname(os.path.abspath(__file__))
# A reference script's run: building, saving and running full-size
# backbones on 2 cores.
REFERENCE_TIMEOUT_S = 900


@contextlib.contextmanager
def _file_lock(path):
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _unavailable(reason):
  message = (f"no PyTorch interpreter for the reference side: {reason}. Set "
             "ADAFOCUS_TORCH_PYTHON to a python with torch (CPU) and numpy.")
  if os.environ.get("CI"):
    pytest.fail(message)
  pytest.skip(message)


def _torch_venv() -> str:
  """A cached virtual environment with the CPU build of torch."""
  cache = os.environ.get("ADAFOCUS_TORCH_VENV") or os.path.join(
      os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
      "adafocus-tf", "torch-2.13.0-cpu")
  python = os.path.join(cache, "bin", "python")
  marker = os.path.join(cache, ".complete")
  os.makedirs(os.path.dirname(cache), exist_ok=True)
  # Test sessions running side by side build it once.
  with _file_lock(cache + ".lock"):
    if not os.path.exists(marker):
      shutil.rmtree(cache, ignore_errors=True)
      steps = [[sys.executable, "-m", "venv", cache],
               [python, "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", *TORCH_REQUIREMENTS]]
      for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=1800, check=False)
        if proc.returncode:
          shutil.rmtree(cache, ignore_errors=True)
          _unavailable(f"{' '.join(cmd[:4])}... failed: "
                       f"{proc.stderr.strip()[-600:]}")
      with open(marker, "w") as f:
        f.write(" ".join(TORCH_REQUIREMENTS) + "\n")
  return python


@pytest.fixture(scope="session")
def torch_python():
  """A Python interpreter that imports torch (see the module docstring)."""
  if os.environ.get("ADAFOCUS_TORCH_PYTHON"):
    return os.environ["ADAFOCUS_TORCH_PYTHON"]
  if importlib.util.find_spec("torch") is not None:
    return sys.executable
  return _torch_venv()


@pytest.fixture(scope="session")
def torch_reference(torch_python):
  """Runs a reference script on a list of cases: ``run(script, spec, out)``.

  ``script`` is a file beside this one; ``spec`` a list of case dicts
  (``case``, ``name`` and its parameters); the checkpoints and outputs go
  to the directory ``out``.
  """
  def run(script, spec, out):
    spec_file = os.path.join(out, "spec.json")
    with open(spec_file, "w") as f:
      json.dump(spec, f)
    # The reader case imports the project's torch-free checkpoint reader.
    env = dict(os.environ, PYTHONPATH=helpers.REPO)
    proc = subprocess.run(
        [torch_python, os.path.join(HERE, script), f"--spec={spec_file}",
         f"--out={out}"], cwd=helpers.REPO, env=env, capture_output=True,
        text=True, timeout=REFERENCE_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
  return run

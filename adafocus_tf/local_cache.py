"""The machine's own cache folder for what the tools keep between runs.

``$ADAFOCUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/adafocus-tf`` (by default
``~/.cache/adafocus-tf``): counted costs (``profiling/macs_cache.py``), the
TFLite models and ready forms of remote or read-only runs
(``serving/tflite_model.py``, ``inference/ready_form.py``) and the logs of
tools run on them (``cli/terminal.py``).
"""
import os

CACHE_DIR_ENV = "ADAFOCUS_CACHE_DIR"


def path(*parts: str) -> str:
  """``parts`` joined under the cache folder (nothing is created).

  Args:
    *parts: path components below it.
  """
  root = os.environ.get(CACHE_DIR_ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
      "adafocus-tf")
  return os.path.join(root, *parts)

"""Temporary folders of a benchmark, removed when its process exits.

A benchmark writes datasets, runs and converted models of hundreds of
megabytes; a folder from ``folder`` is gone once the benchmark ends, even
when it fails. A folder the user names (``--workdir`` and the like) is kept.
"""
import atexit
import shutil
import tempfile


def folder(prefix: str = "adafocus-bench-") -> str:
  """A new empty folder in the system's temporary folder.

  Args:
    prefix: the start of the folder's name.

  Returns:
    Its path; it and everything in it are removed at the process's exit.
  """
  path = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path

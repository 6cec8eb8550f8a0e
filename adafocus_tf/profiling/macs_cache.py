"""A config's cost, counted once per machine and kept on disk.

Counting a model's MACs builds its networks (``flops.video_macs``): seconds
at the paper presets, paid by every tool that reports a cost (predict,
evaluate, export, calibrate-exit) at every start. The count depends on
nothing but the sections of the config that shape the model and on the
package's code, so it is cached in the machine's cache folder
(``local_cache``: by default ``~/.cache/adafocus-tf/macs/``) in a file
named by a digest of both; any change to the code or to those sections
counts anew. Files are written atomically; one that cannot be
read is counted anew and replaced.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Callable

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf import local_cache

SUBDIR = "macs"
# The config sections that shape every family's model; a family adds its
# own (``ModelFamily.sections``).
SHAPING_SECTIONS = ("model", "data")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir() -> str:
  """``macs/`` of the machine's cache folder (``local_cache``)."""
  return local_cache.path(SUBDIR)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
  """A digest of the package's Python sources (read once per process)."""
  digest = hashlib.sha256()
  for folder, dirs, files in os.walk(_PACKAGE_DIR):
    dirs.sort()
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        digest.update(os.path.relpath(path, _PACKAGE_DIR).encode())
        with open(path, "rb") as f:
          digest.update(f.read())
  return digest.hexdigest()


def cache_key(cfg, family_sections) -> str:
  """The file-name-safe key of ``cfg``'s count.

  Args:
    cfg: an ``ExperimentConfig``.
    family_sections: the names of the config sections its family owns.
  """
  sections = json.loads(cfg.to_json())
  shaping = {name: sections.get(name)
             for name in SHAPING_SECTIONS + tuple(family_sections)}
  text = json.dumps({"config": shaping, "code": code_digest()},
                    sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def cached(key: str, count: Callable[[], dict]) -> dict:
  """The count stored under ``key``, else ``count()`` stored there.

  Args:
    key: ``cache_key``'s.
    count: computes the JSON-serialisable count.
  """
  path = os.path.join(cache_dir(), f"{key}.json")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    pass
  result = count()
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    io_utils.write_json(path, result)  # atomic
  except (OSError, tf.errors.OpError):
    pass  # A read-only cache: counted again next time.
  return result

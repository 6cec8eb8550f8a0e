"""The registry of model families: every caller asks it, none names a family.

In the spirit of TF Model Garden's ``register_model_builder``: a family
registers itself when its module is imported, and ``get`` / ``of`` look it
up by the name a config carries (``model.variant``). The built-in families
(``builtin.py``) are imported on the first lookup; a family defined
anywhere else (a user's package, a test module) calls ``register`` itself
(docs/FAMILIES.md).

This module imports nothing of the package, so that the config module can
ask it for a family's checks without an import cycle.
"""
from __future__ import annotations

import importlib
from typing import Dict, Tuple

_FAMILIES: Dict[str, object] = {}
_BUILTIN = "adafocus_tf.families.builtin"
_builtin_loaded = False


def _load_builtin() -> None:
  global _builtin_loaded
  if not _builtin_loaded:
    _builtin_loaded = True
    importlib.import_module(_BUILTIN)


def register(family, replace: bool = False):
  """Registers a ``ModelFamily`` under its ``name``; returns it.

  Args:
    family: the family object.
    replace: allow a family of that name to be replaced (tests).

  Raises:
    ValueError: the name is taken (and ``replace`` is off).
  """
  if family.name in _FAMILIES and not replace:
    raise ValueError(f"a model family named {family.name!r} is already "
                     "registered")
  _FAMILIES[family.name] = family
  return family


def unregister(name: str) -> None:
  """Removes a family registered by ``register`` (tests)."""
  _FAMILIES.pop(name, None)


def names() -> Tuple[str, ...]:
  """The registered families' names, built-in first, in registration order."""
  _load_builtin()
  return tuple(_FAMILIES)


def get(name: str):
  """The family registered as ``name``.

  Raises:
    ValueError: no such family, naming the registered ones.
  """
  _load_builtin()
  if name not in _FAMILIES:
    raise ValueError(f"unknown model family {name!r}; registered families: "
                     f"{', '.join(_FAMILIES)}")
  return _FAMILIES[name]


def of(cfg):
  """The family of a config (its ``model.variant``)."""
  return get(cfg.model.variant)


def methods() -> Tuple[str, ...]:
  """The training methods the families serve (``--method``), in order."""
  seen = []
  for name in names():
    method = _FAMILIES[name].method
    if method not in seen:
      seen.append(method)
  return tuple(seen)


def preset_family(dataset: str, method: str):
  """The family whose preset ``dataset`` of ``method`` is, or None."""
  for name in names():
    family = _FAMILIES[name]
    if family.method == method and dataset in family.presets():
      return family
  return None

"""Config values checked against the type hints of the config dataclasses.

Every source of a config value goes through ``typed``: a config file
(``config.apply_dict``), ``--override`` and the simple flags of
``adafocus-train`` (``config.override``), and a run's ``config.json`` read
back (``ExperimentConfig.from_dict``). The rules, by the field's hint:

  * ``int``: an int, not a bool. A float with a whole value (YAML's ``3.0``,
    JSON's ``1e3``) is taken as that int; any other float is refused.
  * ``float``: a float, or an int (taken as a float); not a bool.
  * ``bool``: a bool only (text, as ``--override`` gives it, may also say
    ``1``/``0``, ``true``/``false``, ``yes``/``no``; see ``from_text``).
  * ``str``: a string only.
  * ``Tuple[X, ...]``: a list (or tuple) whose items each follow X's rule;
    ``Tuple[X, Y]``: one item of each type, in order.
  * a section (a nested dataclass): a mapping of its fields, which the
    caller sets one by one; anything else is refused.

A value refused raises ``ConfigError`` naming the dotted field, the value,
the type it must have and the source it came from. This module knows no
config field; ``config.py`` holds the fields and which family reads them.
"""
import dataclasses
import numbers
import typing

from adafocus_tf import errors

# The text forms of a bool (compared lower-case).
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


class ConfigError(ValueError, errors.RefusedError):
  """A config source refused: a field that does not exist, a value of the
  wrong type, or a field its model family does not use (``config.py``).

  A ``ValueError`` for the library's callers; a ``RefusedError`` for the
  command line (``error: <message>``, status 2).
  """


def _item_hints(hint, count: int):
  """The hint of each of ``count`` items of a tuple field, or None when the
  field cannot hold that many.

  Args:
    hint: a ``Tuple[X, ...]`` or fixed-length ``Tuple[X, Y, ...]`` hint.
    count: the number of items given.
  """
  args = typing.get_args(hint)
  if args[1:] == (Ellipsis,):
    return args[:1] * count
  return args if len(args) == count else None


def _describe(hint) -> str:
  """What a value of a field type is, for error messages.

  Args:
    hint: the field's type hint.
  """
  if dataclasses.is_dataclass(hint):
    return f"a mapping of {hint.__name__} fields"
  if typing.get_origin(hint) is tuple:
    args = typing.get_args(hint)
    if args[1:] == (Ellipsis,):
      return f"a list of {args[0].__name__}"
    names = ", ".join(a.__name__ for a in args)
    return f"a list of {len(args)} items: {names}"
  return f"of type {hint.__name__}"


def _typed(hint, value):
  """``value`` as a value of a field type, or None if it is not one (no
  field holds None).

  Args:
    hint: the field's type hint.
    value: the value given.
  """
  if isinstance(value, bool):
    return value if hint is bool else None
  if hint is int and isinstance(value, numbers.Real):
    # Whole numbers written as floats (YAML's 3.0, JSON's 1e3) are ints.
    whole = isinstance(value, numbers.Integral) or float(value).is_integer()
    return int(value) if whole else None
  if hint is float and isinstance(value, numbers.Real):
    return float(value)
  if hint is str and isinstance(value, str):
    return value
  if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
    hints = _item_hints(hint, len(value))
    items = [_typed(h, v) for h, v in zip(hints or (), value)]
    if hints is not None and None not in items:
      return tuple(items)
  return None


def typed(hint, value, dotted: str, source: str):
  """``value`` checked against a field's type hint (the module's rules).

  Args:
    hint: the field's type hint (``typing.get_type_hints`` of its class).
    value: what the source gives.
    dotted: the field's path, e.g. ``model.patch_size`` (for the message).
    source: where the value comes from, e.g. a file's path or
      ``--override`` (for the message).

  Returns:
    the value to store: an int of a float field as a float, a whole float
    of an int field as an int, a list as a tuple.

  Raises:
    ConfigError: the value is not of the field's type.
  """
  checked = _typed(hint, value)
  if checked is None:
    raise ConfigError(f"bad value for {dotted} from {source}: {value!r} is "
                      f"not {_describe(hint)}")
  return checked


def from_text(hint, text: str):
  """A value written as text (``--override=key=value``) for ``typed``.

  Args:
    hint: the field's type hint.
    text: the value as written: a bool as ``true``/``false``, ``yes``/``no``
      or ``1``/``0``; a number; a tuple's items joined by ``:``
      (``1:0.875``).

  Returns:
    the parsed value; text that does not parse as the hint's type is
    returned as it is, for ``typed`` to refuse.
  """
  if hint is bool:
    low = text.lower()
    return True if low in _TRUE else False if low in _FALSE else text
  if hint in (int, float):
    for parse in (int, float):
      try:
        return parse(text)
      except ValueError:
        pass
    return text
  if typing.get_origin(hint) is tuple:
    parts = [x for x in text.split(":") if x]
    hints = _item_hints(hint, len(parts))
    if hints is None:
      return tuple(parts)
    return tuple(from_text(h, x) for h, x in zip(hints, parts))
  return text


def require(ok: bool, field: str, value, must: str) -> None:
  """Refuses a field's value that breaks a rule of the config.

  Args:
    ok: whether the rule holds.
    field: the dotted field (``model.patch_size``).
    value: its value.
    must: what it must be, for the message.

  Raises:
    ValueError: ``config field <field>=<value>: <must>``.
  """
  if not ok:
    raise ValueError(f"config field {field}={value!r}: {must}")

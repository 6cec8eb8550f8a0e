"""The shapes of a checkpoint's tensors that its architecture is read
from, a missing one naming the file it makes incomplete."""
from __future__ import annotations

from typing import Mapping, Tuple

from adafocus_tf.convert import errors


def required(sd: Mapping[str, object], key: str, origin: str,
             checkpoint: str) -> Tuple[int, ...]:
  """The shape of the tensor ``sd[key]``.

  Args:
    sd: the file's state dict (``module.`` stripped).
    key: the tensor's key.
    origin: where ``sd`` is, for the message.
    checkpoint: the kind of file that has every such key
      ("Uni-AdaFocus-TSM").

  Returns:
    The tensor's shape.

  Raises:
    MissingKeyError: no tensor ``key``: not a complete such checkpoint.
  """
  if key not in sd:
    raise errors.MissingKeyError(f"{origin}[{key!r}] is missing: not a "
                                 f"complete {checkpoint} checkpoint")
  return tuple(sd[key].shape)

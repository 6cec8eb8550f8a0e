"""Checks that a converted run's config fits the checkpoint's tensors, each
failure naming the field and the override that fixes it (shared by the
V2 and Uni-AdaFocus converters)."""
from __future__ import annotations

from typing import Dict

from adafocus_tf.convert import errors

# The usual remedy of a data field that disagrees with the tensors: a
# setting the preset lacks.
CUSTOM_SETTING = "a custom setting that needs "


class ClassesAndGlanceFrames:
  """An architecture whose tensors fix the classes and the glance frames G
  (a dataclass's ``num_classes`` and ``glance_frames``), which the config
  must already have: ``check_data_fields`` checks them."""

  def data_fields(self) -> Dict[str, int]:
    """Dotted data fields the config must already have (name -> value)."""
    return {"data.num_classes": self.num_classes,
            "data.glance_frames": self.glance_frames}


def check_data_fields(cfg, fields: Dict[str, int],
                      remedy: str = CUSTOM_SETTING) -> None:
  """The config's data fields have the values the tensors imply.

  Args:
    cfg: the resolved ``ExperimentConfig``.
    fields: {dotted ``data.*`` field: the value the tensors imply}.
    remedy: what the message offers before ``--override=...`` (besides
      another ``--dataset``).

  Raises:
    ArchitectureError: the first field that disagrees, with its override.
  """
  for dotted, value in fields.items():
    have = getattr(cfg.data, dotted.split(".")[1])
    if have != value:
      raise errors.ArchitectureError(
          f"the checkpoint's tensors imply {dotted}={value} but the config "
          f"has {dotted}={have}: wrong --dataset, or "
          f"{remedy}--override={dotted}={value}")


def check_map_side(cfg, map_side: int, stride: int,
                   policy: str = "spatial policy") -> None:
  """The config's glance size gives the glance map the policy reads.

  Args:
    cfg: the resolved ``ExperimentConfig``.
    map_side: the side of the glance map the checkpoint's policy spans.
    stride: the glance backbone's total spatial stride.
    policy: the policy that reads the map, for the message.

  Raises:
    ArchitectureError: ``model.glance_size`` gives another side.
  """
  side = -(-cfg.model.glance_size // stride)
  if side != map_side:
    raise errors.ArchitectureError(
        f"the checkpoint's {policy} reads a {map_side}x{map_side} glance "
        f"map but model.glance_size={cfg.model.glance_size} gives "
        f"{side}x{side}")

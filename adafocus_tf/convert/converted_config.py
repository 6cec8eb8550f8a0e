"""The config of a converted run: a preset, what the command line and the
checkpoint's tensors fix, then overrides, each change from the preset
logged."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

from adafocus_tf import config as config_lib
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.convert import errors
from adafocus_tf.families import registry

UNI_METHOD = "uni"


def set_fields(cfg: ExperimentConfig, fields: Dict[str, object], why: str,
               log: Callable[[str], None]) -> None:
  """Sets dotted config fields, logging each change from the preset.

  Args:
    cfg: the config (changed in place).
    fields: {dotted field: value}.
    why: what fixes them, for the log line.
    log: where the lines go.
  """
  for dotted, value in fields.items():
    section, name = dotted.split(".")
    old = getattr(getattr(cfg, section), name)
    if old != value:
      log(f"config {dotted}: {old!r} -> {value!r} ({why})")
    config_lib.override(cfg, dotted, value)


def uni_preset(dataset: str, family: str, checkpoint: str, patch_size: int,
               arch, data_dir: str, seed: Optional[int],
               overrides: Iterable[str],
               log: Callable[[str], None]) -> ExperimentConfig:
  """A Uni-AdaFocus family's preset with P, the tensors' fields
  (``arch.config_fields()``), the data directory, the seed and overrides.

  Args:
    dataset: the ``--dataset`` preset.
    family: the registered family the checkpoint belongs to.
    checkpoint: what the checkpoint is, for the error ("a Uni-AdaFocus-TSM
      one").
    patch_size: P.
    arch: the checkpoint's architecture (``config_fields``).
    data_dir: the run's data directory, or "".
    seed: the run's seed, or None for the preset's.
    overrides: ``--override`` values.
    log: where changes from the preset are logged.

  Raises:
    ArchitectureError: ``dataset`` is no preset of ``family``, named with
      those that are.
  """
  preset_family = registry.preset_family(dataset, UNI_METHOD)
  if preset_family is None or preset_family.name != family:
    have = (f"a {preset_family.name} preset" if preset_family is not None
            else "not a Uni-AdaFocus preset")
    ours = [name for name in config_lib.datasets(UNI_METHOD)
            if registry.preset_family(name, UNI_METHOD).name == family]
    raise errors.ArchitectureError(
        f"the checkpoint is {checkpoint} ({family}) but --dataset={dataset} "
        f"is {have}: use one of {', '.join(ours)}")
  cfg = config_lib.get_preset(dataset, method=UNI_METHOD)
  set_fields(cfg, {"model.patch_size": patch_size}, "--patch_size", log)
  set_fields(cfg, arch.config_fields(), "the checkpoint's tensors", log)
  if data_dir:
    cfg.data.data_dir = data_dir
  if seed is not None:
    cfg.seed = seed
  return config_lib.apply_overrides(cfg, overrides)

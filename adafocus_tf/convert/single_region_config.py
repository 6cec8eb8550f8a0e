"""The config of a converted run of a single-region Uni-AdaFocus family
(TSM, X3D): whose focus frames K and candidates N are not in the weights,
but the preset's or overrides'."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.convert import converted_config


def make_config(dataset: str, family: str, checkpoint: str, patch_size: int,
                arch, data_dir: str, seed: Optional[int],
                overrides: Iterable[str], log: Callable[[str], None],
                check: Callable[[ExperimentConfig, object], None]
                ) -> ExperimentConfig:
  """The family's preset with the file's fields (``converted_config``),
  checked against the tensors; K and N logged.

  Args:
    dataset: the ``--dataset`` preset.
    family: the registered family the checkpoint belongs to.
    checkpoint: what the checkpoint is, for the error ("a Uni-AdaFocus-TSM
      one").
    patch_size: P (not in the weights).
    arch: the file's architecture (``config_fields``).
    data_dir: the run's data directory, or "".
    seed: the run's seed, or None for the preset's.
    overrides: ``--override`` values, applied last.
    log: where changes to the preset are reported.
    check: ``check(cfg, arch)`` raises where the config disagrees with the
      tensors (the family's ``check_config``).

  Returns:
    The resolved config.

  Raises:
    ArchitectureError: no preset of ``family`` of that name, or ``check``'s.
    ValueError: a bad override.
  """
  cfg = converted_config.uni_preset(dataset, family, checkpoint, patch_size,
                                    arch, data_dir, seed, overrides, log)
  check(cfg, arch)
  log(f"uni.focus_frames={cfg.uni.focus_frames} of data.focus_frames="
      f"{cfg.data.focus_frames} candidates (not in the checkpoint; the "
      "preset's or --override's)")
  return cfg

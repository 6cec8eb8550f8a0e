"""Checks that prepared data holds the classes a config (and a run) uses.

A label past ``data.num_classes`` would otherwise become an all-zero
target, and a class order that differs between splits, or from the data a
run trained on (``<run>/classes.json``), would score right answers as
wrong.
"""
from typing import Iterable, Optional

from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.runs import run_dir


class DataMismatchError(ValueError):
  """The prepared data's classes are not those of the config or the run."""


def _first_difference(a, b) -> str:
  """Where two class-name lists first differ, for an error message."""
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return f"class {i} is {x!r} in the first and {y!r} in the second"
  return f"the first has {len(a)} classes, the second {len(b)}"


def check_data(cfg: ExperimentConfig, splits: Iterable[str],
               run: Optional[str] = None) -> list:
  """Checks that the prepared splits hold the classes the config trains.

  A label past ``data.num_classes`` would otherwise become an all-zero
  target, and a class order that differs between splits, or from the data
  a run trained on, would score the right answers as wrong.

  Args:
    cfg: the run's config (``data.num_classes``, ``data.multi_label``).
    splits: names of the splits read (each needs its meta.json).
    run: a run directory whose ``classes.json`` (the class names its
      weights learnt) the splits must match; None: not compared.

  Returns:
    The splits' class names.

  Raises:
    DataMismatchError: a split's meta.json disagrees with the config, with
      another split or with the run (both values named).
    FileNotFoundError: a split has no meta.json.
  """
  names, first = None, None
  for split in splits:
    split_dir = pipeline.split_dir(cfg.data, split)
    where = io_utils.join(split_dir, shards.META)
    meta = shards.read_meta(split_dir)
    if meta["num_classes"] != cfg.data.num_classes:
      raise DataMismatchError(
          f"{where} has num_classes={meta['num_classes']} but the config has "
          f"data.num_classes={cfg.data.num_classes}: use data prepared for "
          f"this config, or a new run with "
          f"--override=data.num_classes={meta['num_classes']}")
    if bool(meta["multi_label"]) != cfg.data.multi_label:
      raise DataMismatchError(
          f"{where} has multi_label={bool(meta['multi_label'])} but the "
          f"config has data.multi_label={cfg.data.multi_label}")
    if names is None:
      names, first = list(meta["class_names"]), where
    elif list(meta["class_names"]) != names:
      raise DataMismatchError(
          f"{first} and {where} list different classes: "
          f"{_first_difference(names, meta['class_names'])}")
  if names is None or not run:
    return names
  classes_path = io_utils.join(run, run_dir.CLASSES)
  if io_utils.exists(classes_path):
    trained = io_utils.read_json(classes_path)["class_names"]
    if trained != names:
      raise DataMismatchError(
          f"{run} was trained on the classes of {classes_path}, but {first} "
          f"lists others: {_first_difference(trained, names)}")
  return names

"""On-disk layout of a prepared split and atomic shard writing.

A split directory holds::

  shard-00000-of-00012.tfrecord   SequenceExamples (see schema.py)
  shard-00000-of-00012.json       that shard's manifest: video ids written,
                                  videos skipped and why
  meta.json                       class names, counts, format, provenance
  report.json                     every skipped video of the split (prepare)

A shard and its manifest are written under temporary names and renamed when
complete, the manifest last: a shard counts as finished only when its
manifest exists, which is what a resumed run checks.
"""
from __future__ import annotations

from typing import Iterable, List

import tensorflow as tf

from adafocus_tf import io_utils
from adafocus_tf.data import schema

META = "meta.json"
REPORT = "report.json"


def shard_stem(index: int, num_shards: int) -> str:
  return f"shard-{index:05d}-of-{num_shards:05d}"


def shard_paths(split_dir: str, index: int, num_shards: int):
  """Returns (tfrecord path, manifest path) of one shard."""
  stem = io_utils.join(split_dir, shard_stem(index, num_shards))
  return stem + ".tfrecord", stem + ".json"


def is_finished(split_dir: str, index: int, num_shards: int) -> bool:
  record, manifest = shard_paths(split_dir, index, num_shards)
  return io_utils.exists(manifest) and io_utils.exists(record)


def write_shard(split_dir: str, index: int, num_shards: int,
                records: Iterable[bytes], manifest: dict) -> None:
  """Writes one shard and then its manifest, each atomically.

  Args:
    split_dir: the split's directory (local or ``s3://``).
    index: shard index.
    num_shards: total shards of the split (part of the name).
    records: serialized SequenceExamples.
    manifest: JSON-able description (ids written, skipped videos).
  """
  record_path, manifest_path = shard_paths(split_dir, index, num_shards)
  io_utils.makedirs(split_dir)
  tmp = io_utils.temp_name(record_path)
  with tf.io.TFRecordWriter(tmp) as w:
    for r in records:
      w.write(r)
  io_utils.commit(tmp, record_path)
  io_utils.write_json(manifest_path, manifest)


def foreign_shards(split_dir: str, num_shards: int) -> List[str]:
  """Shard files in ``split_dir`` that a split of ``num_shards`` would not name.

  Such files come from a run with another shard count; mixing them would
  corrupt the split, and deleting them is the user's call.
  """
  expected = {shard_stem(i, num_shards) for i in range(num_shards)}
  return [path for path in io_utils.glob(io_utils.join(split_dir, "shard-*"))
          if path.rsplit("/", 1)[-1].rsplit(".", 1)[0] not in expected]


def manifest_path(record_path: str) -> str:
  """The manifest of the shard file ``record_path``."""
  return record_path[:-len(".tfrecord")] + ".json"


def manifest_count(record_path: str) -> int:
  """The records of a finished shard by its manifest's ``videos``, or -1
  when it lists none (a shard written by other means).

  Args:
    record_path: the shard file.
  """
  videos = io_utils.read_json(manifest_path(record_path)).get("videos")
  return len(videos) if isinstance(videos, list) else -1


def list_records(split_dir: str) -> List[str]:
  """The finished shard files of a split, in order.

  Raises:
    FileNotFoundError: the split has no shard (with the directory named).
  """
  files = [f for f in io_utils.glob(io_utils.join(split_dir, "shard-*.tfrecord"))
           if io_utils.exists(manifest_path(f))]
  if not files:
    raise FileNotFoundError(
        f"no finished shards (shard-*.tfrecord with their .json manifest) in "
        f"{split_dir}; prepare the data with datasets/prepare.py")
  return files


def write_meta(split_dir: str, *, dataset: str, split: str, class_names,
               num_videos: int, num_skipped: int, multi_label: bool,
               num_shards: int, made_by: dict) -> dict:
  meta = {
      "format_version": schema.FORMAT_VERSION,
      "dataset": dataset,
      "split": split,
      "class_names": list(class_names),
      "num_classes": len(class_names),
      "num_videos": int(num_videos),
      "num_skipped": int(num_skipped),
      "multi_label": bool(multi_label),
      "num_shards": int(num_shards),
      "made_by": made_by,
  }
  io_utils.write_json(io_utils.join(split_dir, META), meta)
  return meta


def read_meta(split_dir: str) -> dict:
  path = io_utils.join(split_dir, META)
  if not io_utils.exists(path):
    raise FileNotFoundError(f"{path} is missing; is {split_dir} a prepared "
                            "split (datasets/prepare.py)?")
  meta = io_utils.read_json(path)
  if meta.get("format_version") != schema.FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {meta.get('format_version')} "
                     f"but this code reads {schema.FORMAT_VERSION}")
  return meta

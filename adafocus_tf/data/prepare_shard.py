"""One shard of a prepared split, made from its list items.

A ``ShardTask`` names a shard (split, index, the list items it holds, how
frames are stored); ``prepare_shard`` decodes and resizes each video,
encodes its frames as JPEG, serializes it as a SequenceExample and writes
the shard and its manifest atomically (``shards.write_shard``). Bad lines
and bad videos become skipped-input records (``skip``) in the manifest.
These are the pure per-shard and per-video steps that the preparation
pipeline (``beam_prepare``) runs on its workers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Optional

from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.data import split_lists
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_sources


@dataclasses.dataclass(frozen=True)
class ShardTask:
  """One shard to write (picklable: it travels to a pipeline worker).

  Attributes:
    split: split name.
    split_dir: the split's output directory.
    index: shard index.
    num_shards: shards of the split.
    items: the list items (entries and bad lines) of this shard.
    videos_dir: absolute ``--videos`` directory.
    settings: how frames are stored.
    fingerprint: what the shard's content depends on, kept in its manifest
      (a re-run keeps a finished shard only when it matches).
  """
  split: str
  split_dir: str
  index: int
  num_shards: int
  items: tuple
  videos_dir: str
  settings: video_decode.FrameSettings
  fingerprint: dict


def skip(list_file: str, line: int, reason: str, video: Optional[str] = None,
         file: Optional[str] = None, text: Optional[str] = None) -> dict:
  """A skipped-input record (see docs/DATA_FORMAT.md, report.json).

  Args:
    list_file: the split list.
    line: 1-based line of the list.
    reason: why the input was skipped.
    video: the path as listed (None for a line naming no usable video).
    file: what was looked at under ``--videos``.
    text: the line's text, for a bad line.
  """
  out = {"list": list_file, "line": line, "video": video, "file": file,
         "reason": reason}
  if text is not None:
    out["text"] = text
  return out


def describe(record: dict) -> str:
  """One line naming a skipped input: ``list:line: file: reason``.

  Args:
    record: a skipped-input record of a manifest or report.
  """
  what = (record.get("file") or record.get("video")
          or repr(record.get("text", "")))
  return f"{record['list']}:{record['line']}: {what}: {record['reason']}"


def encode_entry(entry: split_lists.Entry, videos_dir: str,
                 settings: video_decode.FrameSettings) -> bytes:
  """Decodes, resizes and JPEG-encodes one listed video; its record.

  Args:
    entry: the list entry.
    videos_dir: absolute ``--videos`` directory.
    settings: how frames are stored.

  Returns:
    The serialized SequenceExample.

  Raises:
    video_decode.BadInput: the video is missing, corrupt or truncated.
  """
  kind, source = video_sources.resolve_source(videos_dir, entry.path)
  frames = video_sources.read_source(kind, source, entry.num_frames, settings)
  return schema.encode_video(entry.path, entry.labels, frames.jpegs,
                             frames.height, frames.width, source)


def prepare_shard(task: ShardTask) -> dict:
  """Decodes one shard's videos and writes the shard and its manifest.

  Bad lines and bad videos are skipped and recorded in the manifest; the
  shard is written even when every item is skipped (an empty shard), so a
  re-run knows it is done.

  Args:
    task: the shard.

  Returns:
    The manifest: ``videos`` (ids written), ``skipped`` (records),
    ``lines`` (first and last list line), ``settings`` (the fingerprint).
  """
  lines = [item.line for item in task.items]
  manifest = {"videos": [], "skipped": [],
              "lines": [min(lines), max(lines)] if lines else [],
              "settings": task.fingerprint}

  def records() -> Iterator[bytes]:
    # shards.write_shard consumes this while writing and writes the
    # manifest only afterwards, so the manifest is complete by then; the
    # shard's videos are never all held in memory at once.
    for item in task.items:
      if isinstance(item, split_lists.BadLine):
        manifest["skipped"].append(
            skip(item.list_file, item.line, item.reason, text=item.text))
        continue
      source = os.path.join(task.videos_dir, item.path)
      try:
        record = encode_entry(item, task.videos_dir, task.settings)
      except video_decode.BadInput as e:
        manifest["skipped"].append(
            skip(item.list_file, item.line, str(e), item.path, source))
      except Exception as e:  # pylint: disable=broad-except
        # One input must never end a run of hours; the type names the bug.
        manifest["skipped"].append(
            skip(item.list_file, item.line,
                 f"unexpected {type(e).__name__}: {e}", item.path, source))
      else:
        manifest["videos"].append(item.path)
        yield record

  shards.write_shard(task.split_dir, task.index, task.num_shards, records(),
                     manifest)
  return manifest

"""Dataset preparation: split lists + videos -> TFRecord shards, resumable.

``prepare`` reads the split lists and class index of one dataset
(``split_lists``), plans every split's shards, decodes the videos or frame
folders (``video_sources``) in parallel worker processes, one shard per task,
and writes each split as ``shards`` lays it out (``docs/DATA_FORMAT.md``):

  * shard i of a split holds list items [i*N, (i+1)*N) in list order (N =
    ``videos_per_shard``; an item is a non-blank, non-comment line, bad or
    not), so the plan depends on nothing but the lists;
  * a finished shard (its manifest exists) made with the same settings and
    the same list lines is kept by a re-run, any other is rewritten; so a
    killed run resumes, and because decoding, resizing and JPEG encoding are
    deterministic the result is byte-identical to an uninterrupted run;
  * a bad line or video is skipped, reported with its list file, line and
    reason (in the shard manifest, then in the split's ``report.json``), and
    the run goes on;
  * ``meta.json`` is written last, once every shard of the split exists.

  from adafocus_tf.data import prepare_lib
  summary = prepare_lib.prepare(dataset="minik", videos="/data/k400",
                                splits="/data/minik_lists", out="s3://b/minik")
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import multiprocessing
import os
import queue as queue_lib
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import av
import PIL
import tensorflow as tf
from tqdm import tqdm

import adafocus_tf
from adafocus_tf import io_utils
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.data import split_lists
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_sources

TOOL = "datasets/prepare.py"
DATASETS = tuple(split_lists.FORMATS)
DEFAULT_VIDEOS_PER_SHARD = 64
# How many bad inputs an error message lists before "and N more".
_MAX_LISTED = 20


class PrepareError(Exception):
  """A problem that stops preparation before anything is written."""


class StrictError(PrepareError):
  """``strict`` and the split lists have bad lines (nothing written)."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
  """One shard to write (picklable: it travels to a worker process).

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


def _skip(list_file: str, line: int, reason: str, video: Optional[str] = None,
          file: Optional[str] = None, text: Optional[str] = None) -> dict:
  """A skipped-input record (see docs/DATA_FORMAT.md, report.json)."""
  out = {"list": list_file, "line": line, "video": video, "file": file,
         "reason": reason}
  if text is not None:
    out["text"] = text
  return out


def describe(skip: dict) -> str:
  """One line naming a skipped input: ``list:line: file: reason``.

  Args:
    skip: a skipped-input record of a manifest or report.
  """
  what = skip.get("file") or skip.get("video") or repr(skip.get("text", ""))
  return f"{skip['list']}:{skip['line']}: {what}: {skip['reason']}"


def prepare_shard(task: ShardTask,
                emit: Optional[Callable[[str, Optional[dict]], None]] = None
                ) -> dict:
  """Decodes one shard's videos and writes the shard and its manifest.

  Bad lines and bad videos are skipped and recorded in the manifest; the
  shard is written even when every item is skipped (an empty shard), so a
  re-run knows it is done.

  Args:
    task: the shard.
    emit: called as ``emit(split, skip)`` after every item, ``skip`` being
      the skipped-input record or None for a written video.

  Returns:
    The manifest: ``videos`` (ids written), ``skipped`` (records),
    ``lines`` (first and last list line), ``settings`` (the fingerprint).
  """
  lines = [item.line for item in task.items]
  manifest = {"videos": [], "skipped": [],
              "lines": [min(lines), max(lines)] if lines else [],
              "settings": task.fingerprint}

  def records():
    # shards.write_shard consumes this while writing and writes the
    # manifest only afterwards, so the manifest is complete by then; the
    # shard's videos are never all held in memory at once.
    for item in task.items:
      if isinstance(item, split_lists.BadLine):
        skip = _skip(item.list_file, item.line, item.reason, text=item.text)
        manifest["skipped"].append(skip)
        if emit:
          emit(task.split, skip)
        continue
      source = os.path.join(task.videos_dir, item.path)
      try:
        kind, source = video_sources.resolve_source(task.videos_dir,
                                                    item.path)
        frames = video_sources.read_source(kind, source, item.num_frames,
                                           task.settings)
        record = schema.encode_video(item.path, item.labels, frames.jpegs,
                                     frames.height, frames.width, source)
      except video_decode.BadInput as e:
        skip = _skip(item.list_file, item.line, str(e), item.path, source)
      except Exception as e:  # pylint: disable=broad-except
        # One input must never end a run of hours; the type names the bug.
        skip = _skip(item.list_file, item.line,
                     f"unexpected {type(e).__name__}: {e}", item.path, source)
      else:
        manifest["videos"].append(item.path)
        if emit:
          emit(task.split, None)
        yield record
        continue
      manifest["skipped"].append(skip)
      if emit:
        emit(task.split, skip)

  shards.write_shard(task.split_dir, task.index, task.num_shards, records(),
                     manifest)
  return manifest


# Worker-process side of the pool: progress messages go back on a queue.
_QUEUE = None


def _init_worker(queue) -> None:
  global _QUEUE
  _QUEUE = queue
  atexit.register(_end_worker)


def _end_worker() -> None:
  # A worker that used S3 would abort in tensorflow-io's C++ teardown as it
  # exits (see io_utils.exit_process); its work is done by then.
  if "tensorflow_io" in sys.modules:
    io_utils.exit_process(0)


def _pool_prepare_shard(task: ShardTask) -> dict:
  return prepare_shard(task,
                       emit=lambda split, skip: _QUEUE.put((split, skip)))


class _Progress:
  """The progress bar (videos done / total, skipped) and warnings."""

  def __init__(self, total: int, done: int, skipped: int, enabled: bool):
    self.skipped = skipped
    self.bar = tqdm(total=total, initial=done, unit="video", desc="prepare",
                    file=sys.stderr, disable=not enabled, dynamic_ncols=True)
    self.bar.set_postfix(skipped=skipped)

  def item_done(self, skip: Optional[dict]) -> None:
    if skip is not None:
      self.skipped += 1
      # Bad lines were reported when the lists were read.
      if skip.get("file") is not None:
        warn(describe(skip))
      self.bar.set_postfix(skipped=self.skipped, refresh=False)
    self.bar.update(1)

  def close(self) -> None:
    self.bar.close()


def warn(message: str) -> None:
  """Prints a warning to stderr without breaking the progress bar.

  Args:
    message: the text.
  """
  tqdm.write(f"WARNING: {message}", file=sys.stderr)


def _items_digest(items: Sequence[split_lists.Item]) -> str:
  rows = []
  for item in items:
    if isinstance(item, split_lists.Entry):
      rows.append([item.line, item.path, item.num_frames, list(item.labels)])
    else:
      rows.append([item.line, item.text, item.reason])
  return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


def _fingerprint(dataset: str, videos_dir: str,
                 settings: video_decode.FrameSettings,
                 items: Sequence[split_lists.Item]) -> dict:
  fp = {"format_version": schema.FORMAT_VERSION, "dataset": dataset,
        "videos": videos_dir, "short_side": settings.short_side,
        "fps": settings.fps, "jpeg_quality": settings.jpeg_quality,
        "items_sha256": _items_digest(items)}
  # Compared with what a manifest holds, so as JSON reads it back.
  return json.loads(json.dumps(fp))


def _check_writable(out: str) -> None:
  """Fails early, before any decoding, when ``out`` cannot be written."""
  probe = io_utils.join(out, ".prepare-write-test")
  try:
    io_utils.makedirs(out)
    io_utils.write_text(probe, "ok")
    tf.io.gfile.remove(probe)
  except tf.errors.OpError as e:
    # A missing bucket, bad credentials or a read-only disk, typically.
    raise PrepareError(f"cannot write to --out {out}: "
                       f"{type(e).__name__}: {e.message}") from None


def _check_no_foreign_shards(split_dir: str, num_shards: int) -> None:
  for path in shards.foreign_shards(split_dir, num_shards)[:1]:
    raise PrepareError(
        f"{path} does not belong to this split's {num_shards} shard(s) "
        f"(another --videos_per_shard or list?); delete {split_dir} or "
        "choose another --out")


def _remove_temp_files(split_dir: str) -> None:
  # Left by a killed run; never read (shard names only are listed), but
  # they cost storage. One run per output directory at a time.
  for path in io_utils.glob(io_utils.join(split_dir, ".tmp-*")):
    try:
      tf.io.gfile.remove(path)
    except tf.errors.OpError:
      pass


def _current_manifest(split_dir: str, index: int, num_shards: int,
                      fingerprint: dict) -> Optional[dict]:
  """The manifest of a finished shard made the same way, else None."""
  if not shards.is_finished(split_dir, index, num_shards):
    return None
  _, path = shards.shard_paths(split_dir, index, num_shards)
  try:
    manifest = io_utils.read_json(path)
  except ValueError:
    return None
  return manifest if manifest.get("settings") == fingerprint else None


def _resolve_lists(fmt: split_lists.ListFormat, splits: Optional[str],
                   lists) -> Dict[str, str]:
  if lists:
    found = (dict(lists) if isinstance(lists, Mapping)
             else split_lists.parse_lists_flag(lists, splits or ""))
  elif not splits:
    raise PrepareError("give --splits (a directory of split lists) or --lists")
  else:
    found = split_lists.find_split_lists(splits, fmt)
    for split in fmt.unlabelled_splits:
      if split in found:
        # Jester's official test list has ids only: nothing to train or
        # evaluate on, and every line would be reported bad.
        warn(f"{found.pop(split)}: {fmt.name}'s official {split} list has no "
             "labels; not prepared")
    if not found:
      raise PrepareError(f"no labelled split lists in {splits}")
  for split, path in found.items():
    if not os.path.isfile(path):
      raise PrepareError(f"{split} list {path}: no such file")
  return found


def _class_names(fmt: split_lists.ListFormat, splits: Optional[str],
                 class_index: Optional[str], list_files: Sequence[str]):
  """(class names, where they came from)."""
  if not class_index and splits:
    class_index = split_lists.find_class_index(splits, fmt.class_index_globs)
  if class_index:
    if not os.path.isfile(class_index):
      raise PrepareError(f"class index file {class_index}: no such file")
    source = class_index + (" (classes in sorted name order)"
                            if fmt.sorted_classes else "")
    return split_lists.read_class_names(class_index, fmt), source
  if fmt.named_labels:
    names = split_lists.custom_class_names(list_files)
    if not names:
      raise PrepareError("the lists name no class (expected 'path,label' rows)")
    return names, "sorted unique class names of the split lists"
  where = f" in {splits}" if splits else ""
  raise PrepareError(
      f"no class index file ({' or '.join(fmt.class_index_globs)})"
      f"{where}; pass --class_index=FILE")


def _made_by(command, args: dict, settings: video_decode.FrameSettings,
             class_source: str, list_file: str) -> dict:
  libavcodec = ".".join(map(str, av.library_versions.get("libavcodec", ())))
  return {
      "tool": TOOL,
      "tool_version": adafocus_tf.__version__,
      "command": list(command) if command else None,
      "args": args,
      "short_side": settings.short_side,
      "fps": settings.fps,
      "jpeg_quality": settings.jpeg_quality,
      "resize": "Pillow bilinear, short side to short_side",
      "jpeg_encoder": f"Pillow {PIL.__version__}",
      "decoder": f"PyAV {av.__version__} (libavcodec {libavcodec})",
      "class_source": class_source,
      "list_file": list_file,
  }


def _run_tasks(tasks: List[ShardTask], workers: int, progress: _Progress,
               on_done: Callable[[ShardTask, dict], None]) -> None:
  """Writes the shards of ``tasks``, in worker processes when it pays."""
  if workers <= 1 or len(tasks) <= 1:
    for task in tasks:
      on_done(task,
              prepare_shard(task, lambda _, skip: progress.item_done(skip)))
    return
  # spawn, not fork: the parent has TensorFlow (and its threads) loaded.
  ctx = multiprocessing.get_context("spawn")
  queue = ctx.Queue()

  def drain(timeout: float) -> None:
    try:
      while True:
        _, skip = queue.get(timeout=timeout)
        progress.item_done(skip)
        timeout = 0
    except queue_lib.Empty:
      pass

  pool = ctx.Pool(min(workers, len(tasks)), initializer=_init_worker,
                  initargs=(queue,))
  try:
    pending = [(t, pool.apply_async(_pool_prepare_shard, (t,))) for t in tasks]
    while pending:
      drain(0.1)
      waiting = []
      for task, result in pending:
        if result.ready():
          on_done(task, result.get())
        else:
          waiting.append((task, result))
      pending = waiting
    pool.close()
    pool.join()
    drain(0)
  finally:
    pool.terminate()
    pool.join()
    queue.close()
    queue.join_thread()


def prepare(dataset: str, videos: str, splits: Optional[str], out: str, *,
            class_index: Optional[str] = None,
            lists: Union[None, str, Mapping[str, str]] = None,
            short_side: int = 360, fps: float = 0.0, jpeg_quality: int = 90,
            videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD,
            workers: Optional[int] = None, strict: bool = False,
            progress: bool = True,
            command: Optional[Sequence[str]] = None) -> dict:
  """Prepares every split of a dataset into ``<out>/<split>/``.

  Args:
    dataset: one of DATASETS (selects the list format).
    videos: local directory of video files or frame folders; list paths
      are relative to it (or absolute).
    splits: local directory of split lists and the class index file
      (``*classInd*.txt``; ``jester-v1-labels.csv`` for ``jester``); optional
      when ``lists`` names the lists (and ``class_index`` the classes,
      except for ``custom``).
    out: output root, local path or ``s3://bucket/prefix``.
    class_index: class index file (overrides the one found in ``splits``).
    lists: explicit lists, ``{"train": FILE, ...}`` or the ``--lists`` flag
      string ``train:FILE,val:FILE`` (relative FILEs are in ``splits``).
    short_side: stored frames' short side in pixels (0: original size).
    fps: subsample videos to at most this frame rate (0: every frame).
    jpeg_quality: JPEG quality of encoded frames.
    videos_per_shard: list items per shard.
    workers: worker processes (default: CPU count); 1 works in-process.
    strict: a bad list line stops everything before any decoding (a
      ``StrictError``); bad videos are still skipped and reported (the
      caller decides the exit status, see ``exit_status``).
    progress: show the progress bar.
    command: the command line, recorded in meta.json.

  Returns:
    A summary: ``dataset``, ``out``, ``num_videos``, ``num_skipped`` and
    ``splits``: per split ``dir``, ``list_file``, ``num_videos``,
    ``num_skipped``, ``num_shards``, ``shards_written``, ``shards_reused``,
    ``skipped`` (records with list, line, video, file, reason) and ``meta``
    (None when the split has no video).

  Raises:
    PrepareError: bad arguments, a missing directory or list, an unreadable
      class index, no list items, strict mode with bad lines, or an output
      directory holding shards of another plan.
  """
  fmt = split_lists.FORMATS.get(dataset)
  if fmt is None:
    raise PrepareError(f"unknown dataset {dataset!r}; one of "
                       f"{', '.join(DATASETS)}")
  settings = video_decode.FrameSettings(short_side, float(fps), jpeg_quality)
  try:
    settings.validate()
  except ValueError as e:
    raise PrepareError(str(e)) from None
  if videos_per_shard < 1:
    raise PrepareError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
  if not videos or not os.path.isdir(videos):
    raise PrepareError(f"--videos {videos}: no such directory")
  if splits and not os.path.isdir(splits):
    raise PrepareError(f"--splits {splits}: no such directory")
  videos_dir = os.path.abspath(videos)
  workers = workers or os.cpu_count() or 1
  args = {"dataset": dataset, "videos": videos, "splits": splits, "out": out,
          "class_index": class_index,
          "lists": lists if isinstance(lists, (str, type(None)))
                   else dict(lists),
          "short_side": short_side, "fps": float(fps),
          "jpeg_quality": jpeg_quality, "videos_per_shard": videos_per_shard,
          "strict": strict}

  try:
    list_files = _resolve_lists(fmt, splits, lists)
    class_names, class_source = _class_names(fmt, splits, class_index,
                                             list(list_files.values()))
    items = {split: split_lists.parse_split_list(path, fmt, class_names)
             for split, path in list_files.items()}
  except split_lists.ListError as e:
    raise PrepareError(str(e)) from None

  bad_lines = [i for split_items in items.values() for i in split_items
               if isinstance(i, split_lists.BadLine)]
  for line in bad_lines:
    warn(f"{line.list_file}:{line.line}: {line.reason}: {line.text!r}")
  if strict and bad_lines:
    listed = "\n  ".join(f"{b.list_file}:{b.line}: {b.reason}"
                         for b in bad_lines[:_MAX_LISTED])
    more = len(bad_lines) - _MAX_LISTED
    raise StrictError(
        f"--strict: {len(bad_lines)} bad line(s) in the split lists, nothing "
        f"written:\n  {listed}" + (f"\n  ... and {more} more" if more > 0
                                  else ""))
  if not any(items.values()):
    raise PrepareError("the split lists hold no videos: "
                       f"{', '.join(list_files.values())}")

  _check_writable(out)

  # Plan every split; keep finished shards of the same plan.
  plans, tasks = {}, []
  total = done = done_skipped = 0
  for split, split_items in items.items():
    split_dir = io_utils.join(out, split)
    n = videos_per_shard
    num_shards = max(1, -(-len(split_items) // n))
    if split_items:
      io_utils.makedirs(split_dir)
      _check_no_foreign_shards(split_dir, num_shards)
      _remove_temp_files(split_dir)
    plans[split] = {"dir": split_dir, "num_shards": num_shards, "written": 0,
                    "reused": 0}
    total += len(split_items)
    for i in range(num_shards if split_items else 0):
      shard_items = tuple(split_items[i * n:(i + 1) * n])
      fp = _fingerprint(dataset, videos_dir, settings, shard_items)
      manifest = _current_manifest(split_dir, i, num_shards, fp)
      if manifest is not None:
        plans[split]["reused"] += 1
        done += len(shard_items)
        done_skipped += len(manifest["skipped"])
        continue
      tasks.append(ShardTask(split, split_dir, i, num_shards, shard_items,
                             videos_dir, settings, fp))

  bar = _Progress(total, done, done_skipped, progress)

  def on_done(task: ShardTask, _):
    plans[task.split]["written"] += 1

  try:
    _run_tasks(tasks, workers, bar, on_done)
  finally:
    bar.close()

  summary = {"dataset": dataset, "out": out, "num_videos": 0,
             "num_skipped": 0, "splits": {}}
  for split, plan in plans.items():
    summary["splits"][split] = _finish_split(
        dataset, split, plan, list_files[split], class_names, fmt,
        _made_by(command, args, settings, class_source, list_files[split]))
    summary["num_videos"] += summary["splits"][split]["num_videos"]
    summary["num_skipped"] += summary["splits"][split]["num_skipped"]
  return summary


def _finish_split(dataset: str, split: str, plan: dict, list_file: str,
                  class_names: Sequence[str], fmt: split_lists.ListFormat,
                  made_by: dict) -> dict:
  """Reads the split's manifests back; writes report.json and meta.json."""
  split_dir, num_shards = plan["dir"], plan["num_shards"]
  videos, skipped = 0, []
  for i in range(num_shards):
    _, manifest_path = shards.shard_paths(split_dir, i, num_shards)
    if not io_utils.exists(manifest_path):
      continue  # an empty list: no shard
    manifest = io_utils.read_json(manifest_path)
    videos += len(manifest["videos"])
    skipped.extend(manifest["skipped"])
  report = {"dataset": dataset, "split": split, "list_file": list_file,
            "num_videos": videos, "num_skipped": len(skipped),
            "skipped": skipped}
  if videos or skipped:
    io_utils.write_json(io_utils.join(split_dir, shards.REPORT), report)
  meta = None
  if videos:
    meta = shards.write_meta(
        split_dir, dataset=dataset, split=split, class_names=class_names,
        num_videos=videos, num_skipped=len(skipped),
        multi_label=fmt.multi_label, num_shards=num_shards, made_by=made_by)
  else:
    warn(f"{split}: no video could be prepared from {list_file}; no "
         "meta.json written")
  return {"dir": split_dir, "list_file": list_file, "num_videos": videos,
          "num_skipped": len(skipped), "num_shards": num_shards,
          "shards_written": plan["written"], "shards_reused": plan["reused"],
          "skipped": skipped, "meta": meta}


def exit_status(summary: dict, strict: bool):
  """The command's exit status and closing message for a summary.

  Args:
    summary: what ``prepare`` returned.
    strict: any skipped input is a failure.

  Returns:
    ``(status, message)``: 1 when no video was written at all, or with
    ``strict`` when any input was skipped (the message names them); else 0.
  """
  lines = []
  for split, s in summary["splits"].items():
    lines.append(
        f"{split}: {s['num_videos']} video(s) in {s['num_shards']} shard(s) "
        f"({s['shards_written']} written, {s['shards_reused']} already done), "
        f"{s['num_skipped']} skipped -> {s['dir']}")
  if summary["num_videos"] == 0:
    lines.append("error: no video could be prepared; see report.json of "
                 "each split")
    return 1, "\n".join(lines)
  if strict and summary["num_skipped"]:
    skipped = [x for s in summary["splits"].values() for x in s["skipped"]]
    lines.append(f"error: --strict: {len(skipped)} bad input(s):")
    lines.extend("  " + describe(x) for x in skipped[:_MAX_LISTED])
    if len(skipped) > _MAX_LISTED:
      lines.append(f"  ... and {len(skipped) - _MAX_LISTED} more (see "
                   "report.json)")
    return 1, "\n".join(lines)
  if summary["num_skipped"]:
    lines.append(f"{summary['num_skipped']} input(s) skipped; each split's "
                 "report.json lists them")
  return 0, "\n".join(lines)

"""Dataset preparation: split lists + videos -> TFRecord shards, resumable.

``prepare`` reads the split lists and class index of one dataset
(``split_lists``), plans every split's shards and runs the preparation as
one Apache Beam pipeline (``beam_prepare``) on the DirectRunner (``workers``
processes) or any runner Beam knows (``runner`` and Beam's
``pipeline_args``, checked by ``beam_options`` before anything is written).
Each split is written as ``shards`` lays it out (``docs/DATA_FORMAT.md``):

  * shard i of a split holds list items [i*N, (i+1)*N) in list order (N =
    ``videos_per_shard``; an item is a non-blank, non-comment line, bad or
    not), so the plan depends on nothing but the lists;
  * a finished shard (its manifest exists) made with the same settings and
    the same list lines is kept by a re-run, any other is rewritten (its
    manifest removed first, so it no longer counts); so a killed run
    resumes, and because decoding, resizing and JPEG encoding are
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

import hashlib
import json
import logging
import os
import threading
from typing import Dict, Mapping, Optional, Sequence, Union

import av
import PIL
import tensorflow as tf

import adafocus_tf
from adafocus_tf import io_utils
from adafocus_tf.data import prepare_progress
from adafocus_tf.data import prepare_shard
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.data import split_lists
from adafocus_tf.data import video_decode

TOOL = "datasets/prepare.py"
DATASETS = tuple(split_lists.FORMATS)
DEFAULT_VIDEOS_PER_SHARD = 64
# How many bad inputs an error message lists before "and N more".
_MAX_LISTED = 20
# Seconds between looks at the output for finished shards (progress).
_PROGRESS_POLL_S = 1.0
BEAM_REQUIREMENT = "apache-beam[tfrecord]==2.77.0"
describe = prepare_shard.describe
warn = prepare_progress.warn


class PrepareError(Exception):
  """A problem that stops preparation before anything is written."""


class StrictError(PrepareError):
  """``strict`` and the split lists have bad lines (nothing written)."""


class PipelineError(Exception):
  """The Beam pipeline failed while writing (storage, a lost worker)."""


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


def _beam_modules():
  """The Beam side of preparation, or a PrepareError naming the install."""
  root = logging.getLogger()
  # Importing Beam logs a warning about Google Cloud client libraries this
  # does not use, on the root logger (which it would also configure).
  mute = logging.Filter("apache_beam.__never__")
  guard = logging.NullHandler()
  root.addFilter(mute)
  root.addHandler(guard)
  try:
    # pylint: disable=g-import-not-at-top
    import apache_beam as beam
    from adafocus_tf.data import beam_options
    from adafocus_tf.data import beam_prepare
  except ModuleNotFoundError as e:
    if not (e.name or "").startswith("apache_beam"):
      raise
    raise PrepareError(
        "preparation runs on Apache Beam, which is not installed: pip "
        f"install 'adafocus-tf[beam]' (or '{BEAM_REQUIREMENT}')") from None
  finally:
    root.removeFilter(mute)
    root.removeHandler(guard)
  return beam, beam_options, beam_prepare


def _quiet_beam(quiet: bool) -> None:
  # Beam logs every stage, bundle and worker at INFO, and warns about
  # settings this does not use (a default Dataflow bucket it cannot
  # create, ...); its errors still show, and a failure raises anyway.
  if quiet:
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def _last_line(error: BaseException) -> str:
  # Beam wraps a worker's error in its remote traceback; the last line is
  # the error itself.
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _run_pipeline(beam, beam_prepare, options, runner, tasks, plans,
                  progress: prepare_progress.PrepareProgress) -> None:
  """Runs the pipeline to its end, following its progress meanwhile."""
  failure = []

  def run():
    try:
      with beam.Pipeline(runner=runner, options=options) as pipeline:
        beam_prepare.build(pipeline, tasks, plans)
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)  # raised in the calling thread

  # The runner blocks until the pipeline is done (and may run it in this
  # process): the progress is read from the output in the meantime.
  thread = threading.Thread(target=run, name="beam-pipeline", daemon=True)
  thread.start()
  while thread.is_alive():
    thread.join(_PROGRESS_POLL_S)
    progress.poll()
  if failure:
    error = failure[0]
    if isinstance(error, tf.errors.OpError):
      raise error
    raise PipelineError(f"the Beam pipeline failed: {_last_line(error)}") \
        from error


def prepare(dataset: str, videos: str, splits: Optional[str], out: str, *,
            class_index: Optional[str] = None,
            lists: Union[None, str, Mapping[str, str]] = None,
            short_side: int = 360, fps: float = 0.0, jpeg_quality: int = 90,
            videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD,
            workers: Optional[int] = None, strict: bool = False,
            progress: bool = True,
            command: Optional[Sequence[str]] = None,
            runner: str = "DirectRunner",
            pipeline_args: Sequence[str] = (),
            quiet_beam: bool = True) -> dict:
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
    workers: DirectRunner worker processes (default: CPU count); 1 works
      in this process.
    strict: a bad list line stops everything before any decoding (a
      ``StrictError``); bad videos are still skipped and reported (the
      caller decides the exit status, see ``exit_status``).
    progress: show the progress bar.
    command: the command line, recorded in meta.json.
    runner: the Beam runner (``DirectRunner``, ``DataflowRunner``,
      ``FlinkRunner``, ``SparkRunner``, ... or a ``module.Class`` path).
    pipeline_args: Beam pipeline options for the runner, as on Beam's
      command line (``--project=p``, ``--flink_master=host:port``, ...);
      they override the DirectRunner options ``workers`` sets.
    quiet_beam: keep Beam's own logging to warnings.

  Returns:
    A summary: ``dataset``, ``out``, ``num_videos``, ``num_skipped`` and
    ``splits``: per split ``dir``, ``list_file``, ``num_videos``,
    ``num_skipped``, ``num_shards``, ``shards_written``, ``shards_reused``,
    ``skipped`` (records with list, line, video, file, reason) and ``meta``
    (None when the split has no video).

  Raises:
    PrepareError: bad arguments, a missing directory or list, an unreadable
      class index, no list items, strict mode with bad lines, a runner or
      pipeline options Beam does not accept, Beam not installed, or an
      output directory holding shards of another plan.
    PipelineError: the pipeline failed while writing.
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
  _quiet_beam(quiet_beam)
  beam, beam_options, beam_prepare = _beam_modules()
  try:
    options, beam_runner = beam_options.pipeline_options(
        runner, workers, pipeline_args, quiet=quiet_beam)
  except beam_options.OptionsError as e:
    raise PrepareError(str(e)) from None
  args = {"dataset": dataset, "videos": videos, "splits": splits, "out": out,
          "class_index": class_index,
          "lists": lists if isinstance(lists, (str, type(None)))
                   else dict(lists),
          "short_side": short_side, "fps": float(fps),
          "jpeg_quality": jpeg_quality, "videos_per_shard": videos_per_shard,
          "strict": strict, "runner": runner,
          "pipeline_args": list(pipeline_args)}

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
  plans, tasks, summary = [], [], {}
  total = done = done_skipped = 0
  for split, split_items in items.items():
    split_dir = io_utils.join(out, split)
    n = videos_per_shard
    num_shards = max(1, -(-len(split_items) // n))
    summary[split] = {"dir": split_dir, "list_file": list_files[split],
                      "num_shards": num_shards, "shards_written": 0,
                      "shards_reused": 0}
    total += len(split_items)
    if not split_items:
      continue
    io_utils.makedirs(split_dir)
    _check_no_foreign_shards(split_dir, num_shards)
    _remove_temp_files(split_dir)
    reused_videos, reused_skipped = [], []
    for i in range(num_shards):
      shard_items = tuple(split_items[i * n:(i + 1) * n])
      fp = _fingerprint(dataset, videos_dir, settings, shard_items)
      manifest = _current_manifest(split_dir, i, num_shards, fp)
      if manifest is not None:
        summary[split]["shards_reused"] += 1
        reused_videos.append(len(manifest["videos"]))
        reused_skipped.extend(manifest["skipped"])
        done += len(shard_items)
        done_skipped += len(manifest["skipped"])
        continue
      tasks.append(prepare_shard.ShardTask(
          split, split_dir, i, num_shards, shard_items, videos_dir, settings,
          fp))
    plans.append(beam_prepare.SplitPlan(
        split=split, split_dir=split_dir, dataset=dataset,
        list_file=list_files[split], class_names=tuple(class_names),
        multi_label=fmt.multi_label, num_shards=num_shards,
        made_by=_made_by(command, args, settings, class_source,
                         list_files[split]),
        reused_videos=tuple(reused_videos),
        reused_skipped=tuple(reused_skipped)))
  for task in tasks:
    _unfinish(task)
    summary[task.split]["shards_written"] += 1
  for plan in plans:
    if any(t.split == plan.split for t in tasks):
      # The split is incomplete until the pipeline has rewritten it.
      _remove_if_present(io_utils.join(plan.split_dir, shards.META))

  bar = prepare_progress.PrepareProgress(tasks, total, done, done_skipped,
                                         progress)
  try:
    _run_pipeline(beam, beam_prepare, options, beam_runner, tasks, plans,
                  bar)
  finally:
    bar.close()
  return _summary(dataset, out, summary)


def _remove_if_present(path: str) -> None:
  if io_utils.exists(path):
    tf.io.gfile.remove(path)


def _unfinish(task: prepare_shard.ShardTask) -> None:
  """Removes the manifest of a shard about to be rewritten.

  A shard made otherwise (other settings or list lines) then no longer
  counts, as if it were not there, until the pipeline has rewritten both
  files; it also tells the progress that a manifest found later is new.
  """
  _, manifest = shards.shard_paths(task.split_dir, task.index,
                                   task.num_shards)
  _remove_if_present(manifest)


def _summary(dataset: str, out: str, splits: Dict[str, dict]) -> dict:
  """The summary of a finished run, from what the pipeline wrote."""
  summary = {"dataset": dataset, "out": out, "num_videos": 0,
             "num_skipped": 0, "splits": {}}
  for split, s in splits.items():
    report_path = io_utils.join(s["dir"], shards.REPORT)
    meta_path = io_utils.join(s["dir"], shards.META)
    report = (io_utils.read_json(report_path)
              if s["shards_written"] + s["shards_reused"]
              and io_utils.exists(report_path) else {})
    meta = io_utils.read_json(meta_path) if report and io_utils.exists(
        meta_path) else None
    if meta is None:
      warn(f"{split}: no video could be prepared from {s['list_file']}; no "
           "meta.json written")
    summary["splits"][split] = dict(
        s, num_videos=report.get("num_videos", 0),
        num_skipped=report.get("num_skipped", 0),
        skipped=report.get("skipped", []), meta=meta)
    summary["num_videos"] += summary["splits"][split]["num_videos"]
    summary["num_skipped"] += summary["splits"][split]["num_skipped"]
  return summary


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

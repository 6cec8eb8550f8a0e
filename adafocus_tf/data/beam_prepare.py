"""Dataset preparation as one Apache Beam pipeline.

  shard tasks (list lines, in list order, N per shard)
    -> Reshuffle                 spread the shards over the workers
    -> DecodeEncodeWrite         per video: decode and resize, encode JPEG
                                 frames, serialize a SequenceExample; the
                                 shard written atomically, then its manifest
       main output               (split, videos written) per shard
       side output "skipped"     (split, skipped-input record) per bad input
    -> with the finished shards of an earlier run: CoGroupByKey by split
    -> FinishSplit               report.json (the skipped side output, in
                                 list order) and meta.json

A shard is the unit of work: the records of a shard never leave the worker
that decodes them (no shuffle carries frame bytes, which the DirectRunner
would hold in memory in one process), a shard's content depends only on
its list lines and settings (so a re-run's shard is byte-identical), and a
worker that dies loses at most the shards it was writing, which the runner
retries or a re-run redoes. Every runner runs this same pipeline;
``prepare_lib`` plans it and reads the result back.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import apache_beam as beam

from adafocus_tf import io_utils
from adafocus_tf.data import prepare_shard
from adafocus_tf.data import shards

SKIPPED = "skipped"
VIDEOS = "videos"


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """What finishing a split needs (picklable: it travels to a worker).

  Attributes:
    split: split name.
    split_dir: the split's output directory.
    dataset: dataset name, for meta.json and report.json.
    list_file: the split list.
    class_names: class names, for meta.json.
    multi_label: the dataset is multi-label.
    num_shards: shards of the split.
    made_by: provenance, for meta.json.
    reused_videos: videos written per shard that an earlier run finished.
    reused_skipped: skipped-input records of those shards.
  """
  split: str
  split_dir: str
  dataset: str
  list_file: str
  class_names: tuple
  multi_label: bool
  num_shards: int
  made_by: dict
  reused_videos: tuple
  reused_skipped: tuple


def _write_shard(task: prepare_shard.ShardTask) -> Iterator:
  """Writes one shard; yields its video count and, tagged, its skips."""
  manifest = prepare_shard.prepare_shard(task)
  for record in manifest["skipped"]:
    yield beam.pvalue.TaggedOutput(SKIPPED, (task.split, record))
  yield task.split, len(manifest["videos"])


def _finish_split(element: Tuple[str, Dict[str, Iterable]],
                  plans: Dict[str, SplitPlan]) -> str:
  """Writes a split's report.json and, when it has videos, meta.json."""
  split, grouped = element
  plan = plans[split]
  videos = sum(grouped[VIDEOS])
  skipped = sorted(grouped[SKIPPED], key=lambda record: record["line"])
  if videos or skipped:
    report = {"dataset": plan.dataset, "split": split,
              "list_file": plan.list_file, "num_videos": videos,
              "num_skipped": len(skipped), "skipped": skipped}
    io_utils.write_json(io_utils.join(plan.split_dir, shards.REPORT), report)
  if videos:
    shards.write_meta(
        plan.split_dir, dataset=plan.dataset, split=split,
        class_names=plan.class_names, num_videos=videos,
        num_skipped=len(skipped), multi_label=plan.multi_label,
        num_shards=plan.num_shards, made_by=plan.made_by)
  return split


def build(pipeline: beam.Pipeline,
          tasks: Sequence[prepare_shard.ShardTask],
          plans: Sequence[SplitPlan]) -> beam.PCollection:
  """Adds the preparation to ``pipeline``.

  Args:
    pipeline: the pipeline (any runner).
    tasks: the shards to write.
    plans: every split with list items, with its shards already finished.

  Returns:
    The names of the finished splits.
  """
  written = (
      pipeline
      | "ShardTasks" >> beam.Create(list(tasks))
      | "Spread" >> beam.Reshuffle()
      | "DecodeEncodeWrite" >> beam.FlatMap(_write_shard).with_outputs(
          SKIPPED, main=VIDEOS))
  reused_videos: List = [(p.split, n) for p in plans for n in p.reused_videos]
  reused_skipped: List = [(p.split, r) for p in plans
                          for r in p.reused_skipped]
  # Every planned split appears once in the grouping, even when all its
  # shards were finished earlier (then through these zero-or-more counts).
  videos = (
      (written[VIDEOS],
       pipeline | "ReusedVideos" >> beam.Create(reused_videos),
       pipeline | "Splits" >> beam.Create([(p.split, 0) for p in plans]))
      | "AllVideos" >> beam.Flatten())
  skipped = (
      (written[SKIPPED],
       pipeline | "ReusedSkipped" >> beam.Create(reused_skipped))
      | "AllSkipped" >> beam.Flatten())
  return (
      {VIDEOS: videos, SKIPPED: skipped}
      | "BySplit" >> beam.CoGroupByKey()
      | "FinishSplit" >> beam.Map(_finish_split,
                                  {p.split: p for p in plans}))

"""Progress of a preparation, read from the shards it has finished.

The pipeline's workers may be other processes or other machines, so the
progress bar follows what they leave in the output: a shard counts once its
manifest exists (as for every reader), its list items are then done, and
its bad videos are warned about.
"""
from __future__ import annotations

import sys
from typing import Sequence

from tqdm import tqdm

from adafocus_tf import io_utils
from adafocus_tf.data import prepare_shard
from adafocus_tf.data import shards


def warn(message: str) -> None:
  """Prints a warning to stderr without breaking the progress bar.

  Args:
    message: the text.
  """
  tqdm.write(f"WARNING: {message}", file=sys.stderr)


class PrepareProgress:
  """The progress bar (videos done / total, skipped) and bad-video warnings.

  Args:
    tasks: the shards this run writes.
    total: list items of every split.
    done: list items of shards finished earlier.
    skipped: skipped inputs of shards finished earlier.
    enabled: show the bar (warnings are printed either way).
  """

  def __init__(self, tasks: Sequence[prepare_shard.ShardTask], total: int,
               done: int, skipped: int, enabled: bool):
    self.skipped = skipped
    # By directory and manifest name: listings may spell paths otherwise.
    self.pending = {(t.split_dir, shards.shard_stem(t.index, t.num_shards)
                     + ".json"): t for t in tasks}
    self.bar = tqdm(total=total, initial=done, unit="video", desc="prepare",
                    file=sys.stderr, disable=not enabled, dynamic_ncols=True)
    self.bar.set_postfix(skipped=skipped)

  def poll(self) -> None:
    """Counts the shards whose manifests appeared since the last poll."""
    split_dirs = sorted({t.split_dir for t in self.pending.values()})
    for split_dir in split_dirs:
      # One listing per split: cheap on object storage too.
      for path in io_utils.glob(io_utils.join(split_dir, "shard-*.json")):
        name = path.rsplit("/", 1)[-1]
        task = self.pending.pop((split_dir, name), None)
        if task is not None:
          self._shard_done(task, io_utils.read_json(
              io_utils.join(split_dir, name)))

  def _shard_done(self, task: prepare_shard.ShardTask, manifest: dict) -> None:
    for record in manifest["skipped"]:
      # Bad lines were reported when the lists were read.
      if record.get("file") is not None:
        warn(prepare_shard.describe(record))
    self.skipped += len(manifest["skipped"])
    self.bar.set_postfix(skipped=self.skipped, refresh=False)
    self.bar.update(len(task.items))

  def close(self) -> None:
    """Ends the bar."""
    self.bar.close()

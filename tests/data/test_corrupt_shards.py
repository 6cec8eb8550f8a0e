"""Corrupt TFRecord shards: named in one line, or skipped and listed.

Real shards (``helpers.write_split``) corrupted byte by byte; the expected
record index and byte offset come from the file's own framing (8-byte
length, 4-byte length CRC, data, 4-byte data CRC).
"""
import json
import logging
import os
import shutil
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import errors
from adafocus_tf.config import DataConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import record_integrity
from adafocus_tf.data import shards
from adafocus_tf.evaluation import evaluate
from adafocus_tf.runs import trained_run
from adafocus_tf.training import experiment

NUM_VIDEOS, PER_SHARD = 16, 8
BAD_SHARD, BAD_RECORD = 1, 3
HINT = "; set data.skip_bad_records=true to skip it"


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
  """A healthy split: its directory and the ids of each shard's records."""
  split_dir = str(tmp_path_factory.mktemp("healthy") / "val")
  index = helpers.write_split(split_dir, NUM_VIDEOS,
                              videos_per_shard=PER_SHARD)
  ids = [vid for vid, _ in index]
  return split_dir, [ids[i:i + PER_SHARD]
                     for i in range(0, NUM_VIDEOS, PER_SHARD)]


def _offsets(data):
  """The byte offset and data length of each record of a TFRecord file."""
  out, pos = [], 0
  while pos < len(data):
    length = int.from_bytes(data[pos:pos + 8], "little")
    out.append((pos, length))
    pos += 16 + length
  return out


def _corrupt_shard(path, how):
  """Corrupts record BAD_RECORD of a shard file in place.

  Args:
    path: the shard file.
    how: a key of ``CASES``.

  Returns:
    (the record's byte offset, the corrupt file's size).
  """
  data = bytearray(open(path, "rb").read())
  offset, length = _offsets(data)[BAD_RECORD]
  if how == "payload":
    data[offset + 12 + length // 2] ^= 0xFF
  elif how == "length":
    data[offset + 6] ^= 0x01     # a length far past the end of the file
  elif how == "truncated":
    data = data[:offset + 12 + length // 2]
  elif how == "truncated_header":
    data = data[:offset + 5]
  elif how == "boundary":
    data = data[:offset]
  with open(path, "wb") as f:
    f.write(data)
  return offset, len(data)


def _bad_shard(split_dir):
  return shards.shard_paths(split_dir, BAD_SHARD, NUM_VIDEOS // PER_SHARD)[0]


def _corrupt(healthy, tmp_path, how):
  """A copy of the healthy split with shard BAD_SHARD corrupted.

  Args:
    healthy: the ``healthy`` fixture.
    tmp_path: where the copy goes.
    how: a key of ``CASES``.

  Returns:
    (split dir, bad shard path, offset of record BAD_RECORD, the corrupt
    file's size).
  """
  split_dir = str(tmp_path / "val")
  shutil.copytree(healthy[0], split_dir)
  path = _bad_shard(split_dir)
  return (split_dir, path) + _corrupt_shard(path, how)


def _cfg(**kw):
  return DataConfig(num_classes=helpers.NUM_CLASSES, num_frames=4,
                    frame_size=24, eval_resize=32, **kw)


def _read_ids(split_dir, training, **kw):
  """The sorted ids of a pass (batches of 1: training drops no video)."""
  return sorted(i.decode() for b in pipeline.make_dataset(
      _cfg(**kw), split_dir, training, 1) for i in b["video_id"].numpy())


# The reasons of the error (the pipeline's) and of the listing (Python's).
UNREADABLE = ("a checksum or length is wrong, or the file ends inside it; "
              "the file has {size} bytes")
ENDS = "the file ends there, but its manifest lists 8 records"
BAD_LENGTH = "its length is corrupt, or the file ends inside it"
CASES = {
    # how: (the error's reason, the reasons of the records listed when
    #       skipping, whether the records after the bad one survive)
    "payload": (UNREADABLE, ["a checksum does not match"], True),
    "length": (UNREADABLE, [BAD_LENGTH], True),
    "truncated": (UNREADABLE, [BAD_LENGTH, ENDS], False),
    "truncated_header": (UNREADABLE, ["the file ends inside it", ENDS],
                         False),
    "boundary": (ENDS, [ENDS], False),
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_corrupt_shard_is_named_or_skipped(healthy, tmp_path, how):
  split_dir, path, offset, size = _corrupt(healthy, tmp_path, how)
  strict_reason, skip_reasons, rest_survives = CASES[how]
  expected = (f"{path}: record {BAD_RECORD} at byte {offset} is corrupt "
              f"({strict_reason.format(size=size)}){HINT}")
  for training in (False, True):
    with pytest.raises(errors.RefusedError) as refused:
      with record_integrity.refuse_corrupt_shards():
        _read_ids(split_dir, training)
    assert str(refused.value) == expected

  # Skipped: every other record of the split, in every epoch and mode.
  lost = healthy[1][BAD_SHARD][BAD_RECORD:(BAD_RECORD + 1 if rest_survives
                                          else None)]
  kept = sorted(set(sum(healthy[1], [])) - set(lost))
  record_integrity.drain_skipped()
  for training in (False, True):
    assert _read_ids(split_dir, training, skip_bad_records=True) == kept
    listed = record_integrity.drain_skipped()
    assert [str(b) for b in listed] == [
        str(record_integrity.BadRecord(path, BAD_RECORD + i,
                                       offset if i == 0 else size, reason))
        for i, reason in enumerate(skip_reasons)]


def test_healthy_split_reads_whole(healthy):
  record_integrity.drain_skipped()
  assert _read_ids(healthy[0], False) == sorted(sum(healthy[1], []))
  assert record_integrity.drain_skipped() == []


def test_strict_pipeline_has_no_python(healthy):
  """Only skipping has Python in its graph (on its rare path): the default
  pipeline can run where Python functions cannot (tf.data service)."""
  for skip in (False, True):
    graph = pipeline.make_dataset(_cfg(skip_bad_records=skip), healthy[0],
                                  True, 2)._as_serialized_graph().numpy()
    assert (b"PyFunc" in graph) == skip


def test_corrupt_shard_on_s3(s3_server, healthy, tmp_path):
  local, path, offset, size = _corrupt(healthy, tmp_path, "length")
  bucket = s3_server.make_bucket("corrupt")
  for name in os.listdir(local):
    s3_server.client().upload_file(os.path.join(local, name), bucket,
                                   f"val/{name}")
  split_dir = f"s3://{bucket}/val"
  s3_path = f"{split_dir}/{os.path.basename(path)}"
  with pytest.raises(errors.RefusedError) as refused:
    with record_integrity.refuse_corrupt_shards():
      _read_ids(split_dir, False)
  assert str(refused.value) == (
      f"{s3_path}: record {BAD_RECORD} at byte {offset} is corrupt "
      f"({UNREADABLE.format(size=size)}){HINT}")
  record_integrity.drain_skipped()
  lost = healthy[1][BAD_SHARD][BAD_RECORD]
  assert _read_ids(split_dir, False, skip_bad_records=True) == sorted(
      set(sum(healthy[1], [])) - {lost})
  assert record_integrity.drain_skipped() == [record_integrity.BadRecord(
      s3_path, BAD_RECORD, offset, BAD_LENGTH)]


def test_skipped_records_keep_order_and_resume(healthy, tmp_path):
  """Skipping is deterministic: same order for the same seed and epoch,
  and ``skip_videos`` continues it."""
  split_dir, _, _, _ = _corrupt(healthy, tmp_path, "payload")
  cfg = _cfg(skip_bad_records=True)

  def order(skip=0):
    ds = pipeline.make_dataset(cfg, split_dir, True, 1, seed=3, epoch=1,
                               skip_videos=skip)
    return [b["video_id"].numpy()[0] for b in ds]
  full = order()
  assert len(full) == NUM_VIDEOS - 1
  assert order() == full
  assert order(skip=5) == full[5:]


def test_read_records_resynchronises_and_find_bad_records(healthy, tmp_path):
  split_dir, path, offset, _ = _corrupt(healthy, tmp_path, "length")
  layout = _offsets(open(_bad_shard(healthy[0]), "rb").read())
  items = list(record_integrity.read_records(path))
  # Past the bad length, reading resumes at the next record's header.
  assert [(i, o) for i, o, _ in items] == [
      (i, o) for i, (o, _) in enumerate(layout)]
  assert [i for i, _, item in items
          if isinstance(item, record_integrity.BadRecord)] == [BAD_RECORD]
  found = pipeline.find_bad_records(split_dir)
  assert [(f["file"], f["record"], f["offset"], f["video_id"])
          for f in found] == [(path, BAD_RECORD, offset, None)]


def test_log_skipped_lists_each_record_and_the_count(caplog):
  record_integrity.drain_skipped()
  bad = record_integrity.BadRecord("/d/shard-1", 3, 120, "a checksum does "
                                   "not match")
  for _ in range(2):          # a shard read twice in an epoch
    record_integrity._note(bad)  # pylint: disable=protected-access
  with caplog.at_level(logging.WARNING):
    assert record_integrity.log_skipped("epoch 2") == [bad]
  assert [r.getMessage() for r in caplog.records] == [
      f"data.skip_bad_records: skipped {bad}",
      "data.skip_bad_records: 1 corrupt record(s) skipped in epoch 2"]
  assert record_integrity.log_skipped("epoch 3") == []


def test_other_errors_pass_unchanged():
  with pytest.raises(tf.errors.InvalidArgumentError, match="other"):
    with record_integrity.refuse_corrupt_shards():
      raise tf.errors.InvalidArgumentError(None, None, "other")


def _strict_line(path, offset, size):
  """The CLI's error line for a flipped byte of record BAD_RECORD."""
  return (f"error: {path}: record {BAD_RECORD} at byte {offset} is corrupt "
          f"({UNREADABLE.format(size=size)}){HINT}")


@pytest.fixture(scope="module")
def corrupt_train(tmp_path_factory):
  """A dataset whose train split has a record with a flipped payload byte:
  the data dir, and (shard, the record's offset, the shard's size)."""
  data = helpers.write_dataset(str(tmp_path_factory.mktemp("corrupt")),
                               num_train=NUM_VIDEOS, num_val=NUM_VIDEOS,
                               videos_per_shard=PER_SHARD)
  path = _bad_shard(os.path.join(data, "train"))
  return data, (path,) + _corrupt_shard(path, "payload")


@pytest.mark.training
def test_train_cli_names_the_corrupt_shard_under_a_strategy(corrupt_train,
                                                           tmp_path):
  data, bad = corrupt_train
  proc = helpers.run_train(
      [f"--data_dir={data}", f"--run_dir={tmp_path / 'run'}", "--stage=1",
       "--max_steps=2", "--noevaluate", "--noprogress", "--strategy=mirrored",
       "--cpu_devices=2"] + helpers.tiny_flags(), check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.rstrip().splitlines()[-1] == _strict_line(*bad)


def _listing(path, offset):
  """The warning that lists a flipped byte of record BAD_RECORD."""
  return (f"data.skip_bad_records: skipped {path}: record {BAD_RECORD} at "
          f"byte {offset} is corrupt (a checksum does not match)")


@pytest.mark.training
def test_skipped_records_are_listed_per_epoch_and_evaluate_names_them(
    corrupt_train, tmp_path, caplog):
  data, (path, offset, _) = corrupt_train
  cfg = helpers.tiny_config(data, stage1__epochs=2,
                            data__skip_bad_records=True)
  run = str(tmp_path / "run")
  record_integrity.drain_skipped()
  with caplog.at_level(logging.WARNING):
    stats = experiment.run_stages(cfg, run, [1], tf.distribute.get_strategy(),
                                  progress=False)
  assert stats[1]["step"] == 4
  # Once per epoch, though the repeated pipeline read the shard many times.
  assert [r.getMessage() for r in caplog.records
          if r.getMessage().startswith("data.skip_bad_records")] == [
              _listing(path, offset),
              "data.skip_bad_records: 1 corrupt record(s) skipped in epoch 1",
              _listing(path, offset),
              "data.skip_bad_records: 1 corrupt record(s) skipped in epoch 2"]

  # Evaluation of a corrupt val split: skipped and listed, or refused.
  eval_data = str(tmp_path / "data")
  shutil.copytree(data, eval_data)
  val_path = _bad_shard(os.path.join(eval_data, "val"))
  val_offset, val_size = _corrupt_shard(val_path, "payload")
  cfg.data.data_dir = eval_data
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    row, _ = evaluate.evaluate_split(trained_run.TrainedRun(run, cfg=cfg),
                                     os.path.join(eval_data, "val"),
                                     "centre", progress=False)
  assert row["num_videos"] == NUM_VIDEOS - 1
  # TensorFlow's own warnings (its retracing heuristic counts every
  # evaluation this process ran) are not this test's subject.
  assert [r.getMessage() for r in caplog.records
          if r.name != "tensorflow"] == [
      _listing(val_path, val_offset),
      "data.skip_bad_records: 1 corrupt record(s) skipped in the evaluation "
      f"of {os.path.join(eval_data, 'val')}"]
  config_path = os.path.join(run, "config.json")
  config = json.load(open(config_path))
  config["data"]["skip_bad_records"] = False
  with open(config_path, "w") as f:
    json.dump(config, f)
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch", "evaluate.py"),
       f"--run={run}", f"--data_dir={eval_data}", "--noprogress"],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.rstrip().splitlines()[-1] == _strict_line(
      val_path, val_offset, val_size)

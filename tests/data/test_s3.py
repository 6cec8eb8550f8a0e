"""prepare -> s3:// (tensorflow-io on a local moto server) -> tf.data."""
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

import video_fixtures as vf
from adafocus_tf import io_utils
from adafocus_tf.config import DataConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import prepare_lib
from adafocus_tf.data import shards


def _write_dataset(root):
  videos, splits = os.path.join(root, "videos"), os.path.join(root, "splits")
  os.makedirs(videos)
  os.makedirs(splits)
  vf.write_video(os.path.join(videos, "a.mp4"), 8, "h264")
  vf.write_video(os.path.join(videos, "b.avi"), 8, "mpeg4")
  vf.write_frame_folder(os.path.join(videos, "f"), 6)
  with open(os.path.join(videos, "empty.mp4"), "wb"):
    pass
  with open(os.path.join(splits, "minik_classInd.txt"), "w") as f:
    f.write("x\ny\nz\n")
  with open(os.path.join(splits, "train.txt"), "w") as f:
    f.write("a.mp4 8 2\nempty.mp4 8 0\nb.avi 8 1\n")
  with open(os.path.join(splits, "val.txt"), "w") as f:
    f.write("f 6 0\n")
  return videos, splits


def test_prepare_to_s3_and_read_back(s3_server, tmp_path):
  videos, splits = _write_dataset(str(tmp_path))
  bucket = s3_server.make_bucket("prep")
  out = f"s3://{bucket}/x"
  # One video per shard: shard 1 holds only the bad video (an empty shard).
  summary = prepare_lib.prepare("minik", videos, splits, out, short_side=32,
                                videos_per_shard=1, workers=1, progress=False)
  assert summary["num_videos"] == 3 and summary["num_skipped"] == 1

  # Exactly the final objects: no temporary name survives the renames.
  assert s3_server.keys(bucket) == sorted(
      [f"x/train/shard-0000{i}-of-00003.{ext}" for i in (0, 1, 2)
       for ext in ("tfrecord", "json")] +
      ["x/train/meta.json", "x/train/report.json",
       "x/val/shard-00000-of-00001.tfrecord",
       "x/val/shard-00000-of-00001.json", "x/val/meta.json",
       "x/val/report.json"])

  train = f"{out}/train"
  assert shards.list_records(train) == [
      f"{train}/shard-0000{i}-of-00003.tfrecord" for i in (0, 1, 2)]
  assert s3_server.client().head_object(
      Bucket=bucket, Key="x/train/shard-00001-of-00003.tfrecord")[
          "ContentLength"] == 0
  videos_read = vf.read_split(train)
  assert [v["video_id"] for v in videos_read] == ["a.mp4", "b.avi"]
  assert [v["labels"] for v in videos_read] == [[2], [1]]
  for v in videos_read:
    assert (v["num_frames"], v["height"], v["width"]) == (8, 32, 43)
    assert vf.match_frames(v["frames"]) == list(range(8))
  meta = shards.read_meta(train)
  assert meta["class_names"] == ["x", "y", "z"]
  assert meta["num_videos"] == 2 and meta["num_skipped"] == 1
  report = io_utils.read_json(f"{train}/report.json")
  assert [(s["line"], s["video"]) for s in report["skipped"]] == [
      (2, "empty.mp4")]
  assert "empty file" in report["skipped"][0]["reason"]

  # The training input pipeline reads the same shards through s3://.
  cfg = DataConfig(num_classes=3, num_frames=4, frame_size=32,
                   eval_resize=32)
  batches = list(pipeline.make_dataset(cfg, train, training=False,
                                       batch_size=2).as_numpy_iterator())
  assert len(batches) == 1
  assert batches[0]["frames"].shape == (2, 4, 32, 32, 3)
  np.testing.assert_array_equal(batches[0]["label"], [2, 1])
  assert sorted(batches[0]["video_id"].tolist()) == [b"a.mp4", b"b.avi"]

  # A re-run finds every shard finished on S3 and writes none.
  again = prepare_lib.prepare("minik", videos, splits, out, short_side=32,
                              videos_per_shard=1, workers=1, progress=False)
  assert again["splits"]["train"]["shards_written"] == 0
  assert again["splits"]["train"]["shards_reused"] == 3
  assert again["num_videos"] == 3
  assert tf.io.gfile.exists(f"{out}/val/meta.json")

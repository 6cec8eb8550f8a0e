"""The tf.data pipeline: sampling, augmentation, labels, boxes, sharding."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf.config import DataConfig
from adafocus_tf.data import augment
from adafocus_tf.data import pipeline
from adafocus_tf.data import sampling
from adafocus_tf.data import schema
from adafocus_tf.data import shards


def test_segment_sampling_positions():
  idx = sampling.segment_indices(32, 8, training=False).numpy()
  np.testing.assert_array_equal(idx, [2, 6, 10, 14, 18, 22, 26, 30])
  for s in range(5):
    idx = sampling.segment_indices(32, 8, True, tf.constant([s, 1])).numpy()
    # One frame inside each segment of 4.
    np.testing.assert_array_equal(idx // 4, np.arange(8))
  short = sampling.segment_indices(3, 8, training=False).numpy()
  assert short.min() >= 0 and short.max() <= 2
  assert list(short) == sorted(short)


def test_dense_sampling_is_consecutive():
  idx = sampling.dense_indices(100, 8, True, tf.constant([3, 4])).numpy()
  np.testing.assert_array_equal(np.diff(idx), np.ones(7))
  np.testing.assert_array_equal(
      sampling.dense_indices(20, 8, False).numpy(), np.arange(6, 14))


def test_eval_window_is_resize_then_centre_crop():
  win = augment.eval_window(tf.constant(360), tf.constant(480), 256, 224)
  # Short side 360 -> 256 then 224: a 315px centre square.
  np.testing.assert_array_equal(win.numpy(), [22, 82, 315, 315])


def test_eval_windows_one_or_three_views():
  h, w = tf.constant(240), tf.constant(320)
  np.testing.assert_array_equal(
      augment.eval_windows(h, w, 256, 224, 1).numpy(),
      [augment.eval_window(h, w, 256, 224).numpy()])
  # A 210-pixel square (240 x 224 / 256) in a room of 30 x 110: quarters
  # of 7 and 27; the centre, left and right views, vertically centred.
  np.testing.assert_array_equal(
      augment.eval_windows(h, w, 256, 224, 3).numpy(),
      [[14, 54, 210, 210], [14, 0, 210, 210], [14, 108, 210, 210]])


def test_train_window_scales_and_positions():
  seen_sizes, seen_pos = set(), set()
  for s in range(200):
    oy, ox, h, w = augment.train_window(
        tf.constant(100), tf.constant(200), (1.0, .875, .75, .66),
        tf.constant([s, 0])).numpy()
    assert h in (100, 87, 75, 66) and w in (100, 87, 75, 66)
    assert 0 <= oy <= 100 - h and 0 <= ox <= 200 - w
    seen_sizes.add((h, w))
    seen_pos.add((oy == 0, ox == 0, ox == 200 - w))
  assert (100, 66) not in seen_sizes  # scale steps differ by at most one
  assert len(seen_sizes) == 10 and len(seen_pos) >= 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=24, num_val=10)


def _cfg(**kw):
  return DataConfig(num_classes=helpers.NUM_CLASSES, num_frames=4,
                    frame_size=24, eval_resize=32, **kw)


def test_eval_batches_labels_values_and_boxes(data_dir):
  ds = pipeline.make_dataset(_cfg(), data_dir + "/val", training=False,
                             batch_size=4, with_boxes=True)
  batches = list(ds)
  assert [len(b["label"]) for b in batches] == [4, 4, 2]
  b = batches[0]
  assert b["frames"].shape == (4, 4, 24, 24, 3)
  ids = [i.decode() for bb in batches for i in bb["video_id"].numpy()]
  assert sorted(ids) == [f"w{i:04d}" for i in range(10)]
  labels = np.concatenate([bb["label"].numpy() for bb in batches])
  # helpers.write_split gives video i the label i % NUM_CLASSES.
  np.testing.assert_array_equal(labels, [int(i[1:]) % 4 for i in ids])
  np.testing.assert_array_equal(b["multi_hot"].numpy(),
                                np.eye(4)[b["label"].numpy()])
  again = [i.decode() for bb in pipeline.make_dataset(
      _cfg(), data_dir + "/val", False, 4) for i in bb["video_id"].numpy()]
  assert again == ids
  # Normalised pixels: bright square ~ (200/255 - .485)/.229 = 2.0.
  assert -2.2 < b["frames"].numpy().min() and b["frames"].numpy().max() < 2.7
  # Class 0's bright square sits in the top-left quadrant of the crop.
  i = int(np.argmax(b["label"].numpy() == 0))
  box = b["boxes"].numpy()[i, 0]
  assert box[0] < 0.2 and box[1] < 0.2 and 0.3 < box[2] < 0.6
  frame = b["frames"].numpy()[i, 0]
  y0, x0, y1, x1 = (box * 24).astype(int)
  assert frame[y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean() > 1.5
  assert frame[14:, 14:].mean() < 0.0


def test_training_is_reproducible_per_epoch_and_varies(data_dir):
  cfg = _cfg(train_scales=(1.0, .875, .75, .66))
  a = next(iter(pipeline.make_dataset(cfg, data_dir + "/train", True, 8,
                                      seed=3, epoch=0)))
  b = next(iter(pipeline.make_dataset(cfg, data_dir + "/train", True, 8,
                                      seed=3, epoch=0)))
  c = next(iter(pipeline.make_dataset(cfg, data_dir + "/train", True, 8,
                                      seed=3, epoch=1)))
  np.testing.assert_array_equal(a["frames"].numpy(), b["frames"].numpy())
  assert not np.array_equal(a["video_id"].numpy(), c["video_id"].numpy())
  assert a["frames"].shape == (8, 4, 24, 24, 3)


def test_skip_videos_continues_the_same_order(data_dir):
  cfg = _cfg()
  full = list(pipeline.make_dataset(cfg, data_dir + "/train", True, 4, seed=1,
                                    repeat=True).take(4))
  rest = list(pipeline.make_dataset(cfg, data_dir + "/train", True, 4, seed=1,
                                    skip_videos=8, repeat=True).take(2))
  for x, y in zip(full[2:], rest):
    np.testing.assert_array_equal(x["video_id"].numpy(), y["video_id"].numpy())
    np.testing.assert_allclose(x["frames"].numpy(), y["frames"].numpy())


def test_flip_mirrors_frames_and_boxes(data_dir):
  kw = dict(train_scales=(1.0,))
  plain = pipeline.make_dataset(_cfg(flip=False, **kw), data_dir + "/train",
                                True, 24, with_boxes=True)
  flipped = pipeline.make_dataset(_cfg(flip=True, **kw), data_dir + "/train",
                                  True, 24, with_boxes=True)
  p, f = next(iter(plain)), next(iter(flipped))
  same = p["frames"].numpy() == f["frames"].numpy()
  mirrored = np.isclose(p["frames"].numpy()[:, :, :, ::-1],
                        f["frames"].numpy(), atol=1e-4)
  per_video_mirrored = mirrored.all(axis=(1, 2, 3, 4))
  assert per_video_mirrored.any() and (~per_video_mirrored).any()
  assert same.all(axis=(1, 2, 3, 4))[~per_video_mirrored].all()
  i = int(np.argmax(per_video_mirrored))
  np.testing.assert_allclose(f["boxes"].numpy()[i, :, 1],
                             1 - p["boxes"].numpy()[i, :, 3], atol=1e-5)


def test_two_stream_sampling(data_dir):
  cfg = _cfg(glance_frames=3, focus_frames=5)
  b = next(iter(pipeline.make_dataset(cfg, data_dir + "/val", False, 2)))
  assert b["glance_frames"].shape == (2, 3, 24, 24, 3)
  assert b["focus_frames"].shape == (2, 5, 24, 24, 3)
  assert "frames" not in b


def test_three_views_are_the_three_crops(data_dir):
  """The whole 32-pixel frames, and their three 24-pixel views (no
  resize: eval_resize = 32 keeps the crop side 24); a room of 8, quarters
  of 2: x offsets 4 (centre), 0 and 8, y 4."""
  whole = next(iter(pipeline.make_dataset(
      DataConfig(num_classes=helpers.NUM_CLASSES, num_frames=4,
                 frame_size=32, eval_resize=32), data_dir + "/val", False,
      2)))
  views = next(iter(pipeline.make_dataset(_cfg(), data_dir + "/val", False,
                                          2, views=3)))
  assert views["frames"].shape == (2, 3, 4, 24, 24, 3)
  assert views["label"].shape == (2,)
  np.testing.assert_array_equal(views["video_id"], whole["video_id"])
  # Each view is the crop at its offset, of all 9 horizontal offsets (a
  # JPEG cropped while decoding differs at the crop's edges by its chroma
  # upsampling: the mean difference, not every pixel).
  for v, x in enumerate((4, 0, 8)):
    errors = [float(np.abs(views["frames"][:, v]
                           - whole["frames"][:, :, 4:28, c:c + 24]).mean())
              for c in range(9)]
    assert int(np.argmin(errors)) == x and errors[x] < 0.01, (v, errors)
  with pytest.raises(ValueError, match="evaluation without boxes only"):
    pipeline.make_dataset(_cfg(), data_dir + "/val", True, 2, views=3)


def test_input_context_shards_without_overlap(data_dir):
  ids = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=pid)
    ds = pipeline.make_dataset(_cfg(), data_dir + "/train", False, 4,
                               input_context=ctx)
    ids.append({i for b in ds for i in b["video_id"].numpy()})
  assert not ids[0] & ids[1]
  assert len(ids[0] | ids[1]) == 24


def _bad_frame_split(split_dir):
  """Two shards; video "broken" (shard 1) has a frame TensorFlow cannot
  decode (a lossless JPEG, which Pillow reads) as its stored frame 2."""
  def frames(value):
    return [tf.io.encode_jpeg(np.full((32, 32, 3), value, np.uint8)).numpy()
            for _ in range(4)]
  broken = frames(90)
  broken[2] = video_fixtures.lossless_jpeg(np.full((32, 32, 3), 90, np.uint8))
  videos = [schema.encode_video(name, [1], jpegs, 32, 32, f"/src/{name}")
            for name, jpegs in [("ok0", frames(10)), ("ok1", frames(20)),
                                ("ok2", frames(30)), ("broken", broken)]]
  shards.write_shard(split_dir, 0, 2, videos[:2], {})
  shards.write_shard(split_dir, 1, 2, videos[2:], {})
  return shards.shard_paths(split_dir, 1, 2)[0]


def test_missing_split_and_bad_frames_are_named(tmp_path, capfd):
  with pytest.raises(FileNotFoundError, match="no finished shards"):
    pipeline.make_dataset(_cfg(), str(tmp_path / "nothing"), False, 2)
  bad_dir = str(tmp_path / "bad")
  bad_shard = _bad_frame_split(bad_dir)
  named = (f"video broken (/src/broken) in {bad_shard}: frame 2 does not "
           "decode as a 32x32 JPEG; set data.skip_bad_records=true")
  for training in (True, False):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      for _ in pipeline.make_dataset(_cfg(), bad_dir, training, 1):
        pass
    assert named in error.value.message
  found = pipeline.find_bad_records(bad_dir)
  assert [(f["file"], f["record"], f["video_id"], f["source"], f["frame"])
          for f in found] == [(bad_shard, 1, "broken", "/src/broken", 2)]

  # skip_bad_records: the other videos come through, the bad one is named.
  capfd.readouterr()
  for training in (True, False):
    kept = [b["video_id"].numpy()[0] for b in pipeline.make_dataset(
        _cfg(skip_bad_records=True), bad_dir, training, 1)]
    assert sorted(kept) == [b"ok0", b"ok1", b"ok2"]
    assert (f"WARNING: data.skip_bad_records: skipping a video: video broken "
            f"(/src/broken) in {bad_shard}: frame 2 does not decode as a "
            "32x32 JPEG\n" in capfd.readouterr().err)
  # A good frame of the same shard: the eval pixels are its value.
  b = next(iter(pipeline.make_dataset(_cfg(skip_bad_records=True), bad_dir,
                                      False, 3)))
  np.testing.assert_allclose(
      augment.normalize(tf.fill([3], 30.0), _cfg().mean, _cfg().std),
      b["frames"].numpy()[list(b["video_id"].numpy()).index(b"ok2"), 0, 0, 0],
      atol=0.05)

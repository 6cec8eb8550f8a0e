"""The embedded synthetic dataset: determinism, layout, boxes, glance."""
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.data import embedded
from adafocus_tf.data import pipeline
from adafocus_tf.data import shards
from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_spec as spec

REPO = helpers.REPO
SEED = 7
NUM_TRAIN, NUM_VAL, PER_SHARD = 40, 20, 16
S, K = spec.FRAME_SIZE, spec.OBJECT_SIZE
CELL = spec.FRAME_SIZE // spec.GLANCE_SIZE   # glance cell side in pixels


def _generate(root, seed=SEED):
  return synthetic.generate(str(root), seed, NUM_TRAIN, NUM_VAL, PER_SHARD)


def _mtimes(root):
  return {os.path.relpath(os.path.join(d, n), root):
              os.stat(os.path.join(d, n)).st_mtime_ns
          for d, _, names in os.walk(root) for n in names}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return _generate(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def val(data_dir):
  return synthetic.load_split(os.path.join(data_dir, "val"))


def _red(frames):
  # The target's first colour, (225, 35, 35) +- jitter and noise; nothing
  # else in a frame comes near it (distractors and background are far).
  f = frames.astype(np.int32)
  return ((f[..., 0] > 160) & (f[..., 1] < 90) & (f[..., 2] < 90) &
          (f[..., 0] - np.maximum(f[..., 1], f[..., 2]) > 100))


def _box_pixels(boxes):
  """Integer (y0, x0, y1, x1) of fractional boxes."""
  return np.rint(np.asarray(boxes) * S).astype(int)


def test_textures_balanced_and_distinct_up_to_translation():
  bank = synthetic.texture_bank()
  assert bank.shape == (spec.NUM_CLASSES, 4, 4)
  assert len(spec.CLASS_NAMES) == len(set(spec.CLASS_NAMES)) == 10
  # Every row and column half on: the property glance blindness rests on.
  np.testing.assert_array_equal(bank.sum(1), 2)
  np.testing.assert_array_equal(bank.sum(2), 2)
  # The phase is random, so no texture may be a translate of another.
  orbits = [frozenset(np.roll(t, (dy, dx), (0, 1)).tobytes()
                      for dy in range(4) for dx in range(4)) for t in bank]
  assert len(set().union(*orbits)) == sum(len(o) for o in orbits)


def test_any_window_of_four_rows_or_columns_has_the_same_mean():
  # A glance cell that covers 4 whole rows (or columns) of an object sees
  # the same mean whatever the class, phase or sub-cell position.
  bank = synthetic.texture_bank()
  palette = np.array([[1.0, 0, 0], [0, 0, 0]])
  for c in range(spec.NUM_CLASSES):
    for phase in np.ndindex(4, 4):
      obj = synthetic._object_pixels(bank[c], np.array(phase), palette)[..., 0]
      for y in range(K - 3):
        for x in range(K):
          for w in range(1, min(4, K - x) + 1):
            assert obj[y:y + 4, x:x + w].mean() == 0.5
            assert obj[x:x + w, y:y + 4].mean() == 0.5


def test_same_seed_same_bytes_other_seed_other_bytes(data_dir, tmp_path):
  again = helpers.file_contents(_generate(tmp_path / "again"))
  assert again == helpers.file_contents(data_dir)
  other = helpers.file_contents(
      _generate(tmp_path / "other", seed=SEED + 1))
  records = [p for p in again if p.endswith(".tfrecord")]
  assert records and all(other[p] != again[p] for p in records)


def test_layout_shapes_and_label_balance(data_dir, val):
  for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
    split_dir = os.path.join(data_dir, split)
    meta = shards.read_meta(split_dir)
    assert meta["dataset"] == "synthetic"
    assert meta["class_names"] == list(spec.CLASS_NAMES)
    assert meta["num_videos"] == n and meta["num_classes"] == 10
    assert meta["made_by"]["seed"] == SEED
    assert meta["made_by"]["version"] == spec.GENERATOR_VERSION
    assert len(shards.list_records(split_dir)) == meta["num_shards"] == (
        -(-n // PER_SHARD))
  assert val["frames"].shape == (NUM_VAL, spec.NUM_FRAMES, S, S, 3)
  assert val["frames"].dtype == np.uint8
  assert val["boxes"].shape == (NUM_VAL, spec.NUM_FRAMES, 4)
  assert len(set(val["video_ids"])) == NUM_VAL
  np.testing.assert_array_equal(synthetic.class_counts(val["labels"]),
                                NUM_VAL // 10)
  train = synthetic.load_split(os.path.join(data_dir, "train"))
  np.testing.assert_array_equal(synthetic.class_counts(train["labels"]),
                                NUM_TRAIN // 10)


def test_labels_do_not_depend_on_split_size():
  long = synthetic.labels_for(SEED, "train", 0, 57)
  np.testing.assert_array_equal(synthetic.labels_for(SEED, "train", 0, 23),
                                long[:23])
  np.testing.assert_array_equal(synthetic.labels_for(SEED, "train", 13, 31),
                                long[13:31])
  counts = synthetic.class_counts(long)
  assert counts.max() - counts.min() <= 1
  assert not np.array_equal(synthetic.labels_for(SEED, "val", 0, 57), long)


def test_boxes_inside_frame_and_on_the_target_colour(val):
  boxes = val["boxes"]
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0
  np.testing.assert_allclose(boxes[..., 2:] - boxes[..., :2], K / S)
  px = _box_pixels(boxes)
  red = _red(val["frames"])
  for i in range(NUM_VAL):
    for t in range(spec.NUM_FRAMES):
      y0, x0, y1, x1 = px[i, t]
      inside = red[i, t, y0:y1, x0:x1].sum()
      # Half the target is its red colour, none of the rest of the frame.
      assert inside == K * K // 2, (i, t, inside)
      assert red[i, t].sum() == inside, (i, t)


def test_target_moves_smoothly(val):
  corners = _box_pixels(val["boxes"])[..., :2]
  step = np.abs(np.diff(corners, axis=1))
  assert step.max() <= spec.MAX_SPEED
  # Every video moves (no static target a centre patch could rely on).
  assert (np.abs(corners[:, -1] - corners[:, 0]).sum(-1) > 0).all()


def test_glance_cells_on_the_target_do_not_tell_the_class(val):
  frames, labels = val["frames"], val["labels"]
  px = _box_pixels(val["boxes"])
  glance = tf.image.resize(
      tf.reshape(tf.cast(frames, tf.float32), (-1, S, S, 3)),
      [spec.GLANCE_SIZE] * 2, method="area").numpy().reshape(
          frames.shape[:2] + (spec.GLANCE_SIZE, spec.GLANCE_SIZE, 3))
  dev4 = [[] for _ in range(spec.NUM_CLASSES)]   # glance cells - object mean
  std2 = [[] for _ in range(spec.NUM_CLASSES)]   # spread of 2x2 cells
  for i in range(len(labels)):
    for t in range(spec.NUM_FRAMES):
      y0, x0, y1, x1 = px[i, t]
      obj = frames[i, t, y0:y1, x0:x1].astype(np.float64)
      mean = obj.mean((0, 1))
      # Glance cells lying wholly inside the object.
      cy0, cx0 = -(-y0 // CELL), -(-x0 // CELL)
      cells = glance[i, t, cy0:y1 // CELL, cx0:x1 // CELL].reshape(-1, 3)
      dev4[labels[i]].append(np.abs(cells - mean).max())
      # At half the glance cell size the textures differ plainly: the
      # largest spread of 2x2 cell means over the four cell alignments.
      n2 = K // 2 - 1
      std2[labels[i]].append(max(
          obj[oy:oy + 2 * n2, ox:ox + 2 * n2].reshape(
              n2, 2, n2, 2, 3).mean((1, 3)).std((0, 1)).mean()
          for oy in (0, 1) for ox in (0, 1)))
  dev4 = np.array([np.mean(d) for d in dev4])
  std2 = np.array([np.mean(s) for s in std2])
  # A glance cell is the object's mean colour give or take noise and JPEG
  # (a few levels out of a 190-level texture contrast), for every class.
  assert dev4.max() < 6.0, dev4
  assert dev4.max() - dev4.min() < 2.0, dev4
  # The test can see differences: at 2x2 cells checker_1x1 is flat while
  # checker_2x2 keeps its full contrast.
  assert std2.max() - std2.min() > 40.0, std2


@pytest.mark.parametrize("dataset", embedded.DATASETS)
def test_ensure_is_idempotent_and_resumes(tmp_path, dataset):
  root = str(tmp_path / "ws" / dataset)
  args = dict(seed=SEED, num_train=12, num_val=8, videos_per_shard=4)
  ensure = embedded.MODULES[dataset].ensure_synthetic
  assert ensure(root, **args) == root
  before, content = _mtimes(root), helpers.file_contents(root)
  assert ensure(root, **args) == root
  assert _mtimes(root) == before
  # An interrupted generation: one shard's manifest and val/meta.json are
  # missing. Only that shard is written again, identical.
  os.remove(os.path.join(root, "val", "shard-00001-of-00002.json"))
  os.remove(os.path.join(root, "val", "meta.json"))
  ensure(root, **args)
  after = _mtimes(root)
  changed = {p for p in after if after[p] != before.get(p)}
  assert changed == {os.path.join("val", n) for n in (
      "shard-00001-of-00002.json", "shard-00001-of-00002.tfrecord",
      "meta.json")}
  assert helpers.file_contents(root) == content


def test_shards_of_another_size_are_refused(tmp_path):
  split_dir = str(tmp_path / "train")
  synthetic.write_split(split_dir, "train", SEED, 8, videos_per_shard=4)
  with pytest.raises(ValueError, match="delete it first"):
    synthetic.write_split(split_dir, "train", SEED, 8, videos_per_shard=8)


def test_pipeline_reads_it_and_oracle_patches_cover_the_target(data_dir):
  from adafocus_tf.models import patches  # pylint: disable=g-import-not-at-top
  cfg = config_lib.get_preset("synthetic")
  cfg.data.data_dir = data_dir
  ds = pipeline.make_dataset(cfg.data, pipeline.split_dir(cfg.data, "val"),
                             training=False, batch_size=4, with_boxes=True)
  batch = next(iter(ds))
  assert batch["frames"].shape == (4, spec.NUM_FRAMES, S, S, 3)
  offsets = patches.box_offsets(batch["boxes"], S, spec.PATCH_SIZE)
  crops = patches.extract_patches(batch["frames"], offsets, spec.PATCH_SIZE)
  # Undo the ImageNet normalisation to find the red target pixels again.
  rgb = crops.numpy() * np.array(cfg.data.std) + np.array(cfg.data.mean)
  red = _red(np.rint(rgb * 255))
  np.testing.assert_array_equal(red.sum((1, 2)), K * K // 2)


def test_cli_writes_the_dataset(tmp_path):
  out = tmp_path / "cli"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "datasets", "synthetic.py"),
       f"--out={out}", "--seed=3", "--num_train=10", "--num_val=10"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert shards.read_meta(str(out / "train"))["made_by"]["seed"] == 3
  assert shards.read_meta(str(out / "val"))["num_videos"] == 10
  # Another process, the same bytes.
  here = synthetic.generate(str(tmp_path / "here"), 3, 10, 10)
  assert helpers.file_contents(out) == helpers.file_contents(here)

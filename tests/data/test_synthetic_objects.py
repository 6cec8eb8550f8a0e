"""The embedded objects dataset: determinism, resumption, boxes, glance,
presets, and a few training steps of each method from the workspace."""
import copy
import io
import json
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.data import embedded
from adafocus_tf.data import shards
from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_objects
from adafocus_tf.data import synthetic_objects_spec as spec
from adafocus_tf.data import synthetic_spec

REPO = helpers.REPO
SEED = 7
NUM_TRAIN, NUM_VAL, PER_SHARD = 20, 10, 8
S, P, R = spec.FRAME_SIZE, spec.PATCH_SIZE, spec.OBJECT_RADIUS


def _generate(root, seed=SEED, per_shard=PER_SHARD):
  return synthetic_objects.generate(str(root), seed, NUM_TRAIN, NUM_VAL,
                                    per_shard)


def _records(split_dir):
  return [r.numpy() for r in tf.data.TFRecordDataset(
      shards.list_records(split_dir))]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return _generate(tmp_path_factory.mktemp("objects"))


@pytest.fixture(scope="module")
def val(data_dir):
  return synthetic.load_split(os.path.join(data_dir, "val"))


def _decoded(frame):
  """A frame as stored: JPEG-encoded at the dataset's quality and decoded."""
  return np.asarray(Image.open(io.BytesIO(
      synthetic.encode_jpeg(frame, spec.JPEG_QUALITY))))


def test_classes_and_their_patterns_vanish_in_every_glance_cell():
  assert len(set(spec.CLASS_NAMES)) == spec.NUM_CLASSES == 10
  assert spec.GLANCE_SIZE * spec.TEXTURE_PERIOD == S
  rng = np.random.default_rng(0)
  period = spec.TEXTURE_PERIOD
  for label in range(spec.NUM_CLASSES):
    centre = rng.integers(R, S - R, size=2)
    pattern = synthetic_objects.pattern(label, centre,
                                        rng.uniform(0, 2 * np.pi, 2))
    assert pattern.std() > 0.5
    # Any window of one period in each axis, wherever it lies: the box
    # average the glance takes of a pattern of uniform contrast is zero.
    for y, x in rng.integers(0, S - period, size=(20, 2)):
      assert abs(pattern[y:y + period, x:x + period].mean()) < 1e-9


def test_same_seed_same_bytes_whatever_the_shards(data_dir, tmp_path):
  again = helpers.file_contents(_generate(tmp_path / "again"))
  assert again == helpers.file_contents(data_dir)
  # Other shard sizes hold the same videos, byte for byte.
  other_shards = _generate(tmp_path / "shards", per_shard=3)
  for split in synthetic.SPLITS:
    assert _records(os.path.join(other_shards, split)) == _records(
        os.path.join(data_dir, split))
  other = helpers.file_contents(
      _generate(tmp_path / "other", seed=SEED + 1))
  records = [p for p in again if p.endswith(".tfrecord")]
  assert records and all(other[p] != again[p] for p in records)


def test_layout_labels_and_meta(data_dir, val):
  for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
    meta = shards.read_meta(os.path.join(data_dir, split))
    assert meta["dataset"] == "synthetic_objects"
    assert meta["class_names"] == list(spec.CLASS_NAMES)
    assert meta["num_videos"] == n
    assert meta["made_by"] == {
        "generator": synthetic_objects.GENERATOR,
        "version": spec.GENERATOR_VERSION, "seed": SEED, "split": split,
        "num_videos": n, "videos_per_shard": PER_SHARD}
  assert val["frames"].shape == (NUM_VAL, spec.NUM_FRAMES, S, S, 3)
  assert val["video_ids"][0] == "synthetic_objects-val-000000"
  np.testing.assert_array_equal(
      synthetic.class_counts(val["labels"], spec.NUM_CLASSES), 1)


def _red(frames):
  # The target's colour, (205, 55, 55) +- jitter, its pattern moving all
  # channels together; no distractor hue nor the background comes near.
  f = frames.astype(np.int32)
  return f[..., 0] - np.maximum(f[..., 1], f[..., 2]) > 100


def test_boxes_hold_the_target_in_every_frame(val):
  boxes = val["boxes"]
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0
  np.testing.assert_allclose(boxes[..., 2:] - boxes[..., :2], 2 * R / S)
  px = np.rint(boxes * S).astype(int)
  red = _red(val["frames"])
  for i in range(NUM_VAL):
    for t in range(spec.NUM_FRAMES):
      y0, x0, y1, x1 = px[i, t]
      cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
      # Every target pixel is in the box, and its opaque core is target.
      assert red[i, t].sum() == red[i, t, y0:y1, x0:x1].sum(), (i, t)
      core = R - spec.OBJECT_EDGE
      half = int(core / np.sqrt(2)) - 1
      assert red[i, t, cy - half:cy + half, cx - half:cx + half].all(), (
          i, t)
  # The texture dataset's motion: at most MAX_SPEED px per frame and axis.
  assert np.abs(np.diff(px[..., :2], axis=1)).max() <= synthetic_spec.MAX_SPEED


def test_glance_cannot_read_the_class_a_patch_can():
  glance = spec.GLANCE_SIZE
  for index in range(3):
    # The same video (same stream) in every class: only the pattern differs.
    rng = synthetic._rng(SEED, "val", 0, index)  # pylint: disable=protected-access
    videos = [synthetic_objects.render_video(copy.deepcopy(rng), label)
              for label in range(spec.NUM_CLASSES)]
    frames = np.stack([v["frames"] for v in videos]).astype(np.float32)
    small = tf.image.resize(frames.reshape(-1, S, S, 3), [glance, glance],
                            method="area").numpy()
    small = small.reshape(frames.shape[:2] + (glance, glance, 3))
    # A few grey levels (the contrast envelope's slope within a cell), out
    # of a 2 x TEXTURE_AMPLITUDE pattern.
    assert np.abs(small - small.mean(0)).max() < 10.0
    for t, (y, x) in enumerate(np.clip(videos[0]["centres"] - P // 2, 0,
                                       S - P)):
      patch = frames[:, t, y:y + P, x:x + P]
      assert np.abs(patch - patch.mean(0)).max() > 40.0


def test_a_patch_on_the_target_reads_the_class_after_jpeg(val):
  # A fixed rule, no training: the energy of each grating direction in the
  # oracle patch's luminance; the directions within half the strongest's
  # energy name the class.
  k = 2 * np.pi / spec.TEXTURE_PERIOD
  yy, xx = np.mgrid[0:P, 0:P]
  waves = [np.exp(-1j * k * (dy * yy + dx * xx)) for _, (dy, dx) in
           spec.GRATINGS]
  right = 0
  offsets = np.clip(np.rint((val["boxes"][..., :2] + val["boxes"][..., 2:])
                            / 2 * S - P / 2).astype(int), 0, S - P)
  for i in range(NUM_VAL):
    for t in range(spec.NUM_FRAMES):
      y, x = offsets[i, t]
      lum = val["frames"][i, t, y:y + P, x:x + P].astype(float).mean(-1)
      lum -= lum.mean()
      energy = np.array([abs((lum * w).sum()) ** 2 for w in waves])
      on = tuple(np.flatnonzero(energy >= 0.5 * energy.max()))
      right += spec.CLASS_GRATINGS.index(on) == val["labels"][i]
  assert right >= 0.95 * NUM_VAL * spec.NUM_FRAMES


def test_presets_use_the_data_and_the_synthetic_networks():
  for method in config_lib.methods():
    cfg = config_lib.get_preset("synthetic_objects", method).validate()
    base = config_lib.get_preset("synthetic", method)
    assert cfg.data.dataset == "synthetic_objects"
    assert cfg.data.num_classes == spec.NUM_CLASSES
    assert cfg.data.frame_size == cfg.data.eval_resize == S
    assert cfg.model.glance_size == spec.GLANCE_SIZE
    assert cfg.model.patch_size == P
    assert not cfg.data.flip and cfg.data.train_scales == (1.0,)
    # Everything else is the synthetic preset's, but V2's one more epoch.
    if method == "v2":
      assert cfg.stage1.epochs == cfg.stage1.schedule_epochs == (
          base.stage1.epochs + 1)
    for section in ("model", "stage0", "stage1", "stage2", "stage3"):
      mine, theirs = (getattr(c, section).__dict__.copy()
                      for c in (cfg, base))
      for name in ("glance_size", "patch_size", "epochs", "schedule_epochs"):
        if not (name.endswith("epochs") and method == "v1"):
          mine.pop(name, None)
          theirs.pop(name, None)
      assert mine == theirs, section


def test_embedded_datasets():
  assert set(embedded.DATASETS) == {"synthetic", "synthetic_objects"}
  assert set(embedded.KINDS.values()) == set(embedded.DATASETS)
  assert embedded.generator("synthetic_objects") is synthetic_objects.generate
  with pytest.raises(ValueError, match="'minik' is not an embedded dataset"):
    embedded.ensure("minik", "/nonexistent")


def test_cli_writes_the_objects_dataset(tmp_path):
  out = tmp_path / "cli"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "datasets", "synthetic.py"),
       "--kind=objects", f"--out={out}", "--seed=3", "--num_train=10",
       "--num_val=10"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "synthetic_objects dataset (seed 3" in proc.stdout
  meta = shards.read_meta(str(out / "train"))
  assert meta["dataset"] == "synthetic_objects"
  assert meta["made_by"]["seed"] == 3
  # Another process, the same bytes.
  here = synthetic_objects.generate(str(tmp_path / "here"), 3, 10, 10)
  assert helpers.file_contents(out) == helpers.file_contents(here)


@pytest.mark.training
@pytest.mark.parametrize("method", config_lib.methods())
def test_preset_trains_from_the_workspace_data(tmp_path, method):
  ws = str(tmp_path / "ws")
  # A small dataset where adafocus-train looks for the preset's data: it
  # uses it as it is (the default-size generation is tested above).
  synthetic_objects.ensure_synthetic(
      os.path.join(ws, "data", "synthetic_objects"), num_train=16,
      num_val=8, videos_per_shard=8)
  helpers.run_train([
      "--dataset=synthetic_objects", f"--method={method}",
      f"--workspace={ws}", "--batch_size=4", "--max_steps=2",
      "--eval_max_videos=8", "--noprogress"])
  name = "synthetic_objects-" + ("" if method == "v1" else f"{method}-") + (
      "p16-s0")
  with open(os.path.join(ws, "runs", name, "metrics.json")) as f:
    rows = json.load(f)["results"]["rows"]
  assert {"policy", "random", "centre", "oracle", "glance_only"} <= set(rows)
  with open(os.path.join(ws, "runs", name, "config.json")) as f:
    assert json.load(f)["data"]["data_dir"] == os.path.join(
        ws, "data", "synthetic_objects")

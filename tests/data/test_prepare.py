"""datasets/prepare.py: list formats, real videos and frame folders, bad
inputs, resume after a kill, exit statuses."""
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import adafocus_tf
import pytest
import tensorflow as tf
from PIL import Image

import helpers
import video_fixtures as vf
from adafocus_tf.data import prepare_lib
from adafocus_tf.data import shards
from adafocus_tf.data import split_lists
from adafocus_tf.data import video_decode

REPO = helpers.REPO
PREPARE = os.path.join(REPO, "datasets", "prepare.py")
# Small frames keep the tests fast: 64x48 sources, short side 32 -> 43x32.
SMALL = 32


@pytest.fixture(scope="module")
def media(tmp_path_factory):
  """A --videos directory with good and bad videos and frame folders."""
  root = str(tmp_path_factory.mktemp("videos"))

  def p(name):
    return os.path.join(root, name)

  vf.write_video(p("v_h264.mp4"), 8, "h264")
  vf.write_video(p("v_mpeg4.avi"), 8, "mpeg4")
  vf.write_video(p("noext.mkv"), 8, "h264")
  vf.write_video(p("clip one.mp4"), 8, "h264")
  vf.write_video(p("v_vp8.webm"), 12, "vp8")
  vf.write_frame_folder(p("f_a"), 6)
  vf.write_frame_folder(p("f_b"), 10)
  # Something-Something V2 extractions name frames 000001.jpg.
  vf.write_frame_folder(p("f_sth"), 5, pattern="{:06d}.jpg")
  # Bad inputs.
  with open(p("zero.mp4"), "wb"):
    pass
  vf.corrupt_copy(p("v_mpeg4.avi"), p("garbled.avi"), garble=200)
  vf.write_video(p("long.mkv"), 24, "h264")
  vf.corrupt_copy(p("long.mkv"), p("trunc.mkv"), keep_fraction=0.7)
  vf.write_frame_folder(p("f_gap"), 6, missing=(4,))
  vf.write_frame_folder(p("f_short"), 4)
  vf.write_frame_folder(p("f_mixed"), 3)
  vf.write_frame_folder(p("f_mixed"), 3, pattern="{:05d}.jpg")
  return root


def _write(directory, files):
  os.makedirs(directory, exist_ok=True)
  for name, text in files.items():
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write(text)
  return directory


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _prepare(dataset, videos, splits, out, **kwargs):
  kwargs.setdefault("short_side", SMALL)
  kwargs.setdefault("workers", 1)
  kwargs.setdefault("progress", False)
  return prepare_lib.prepare(dataset, videos, splits, out, **kwargs)


def _check_frames(video, indices, height=SMALL, width=43):
  assert video["num_frames"] == len(indices) == len(video["frames"])
  assert (video["height"], video["width"]) == (height, width)
  assert vf.match_frames(video["frames"]) == list(indices)
  assert vf.colour_error(video["frames"], indices) < 12


def test_minik_space_lists_with_h264_mpeg4_and_frame_folders(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "minik_classInd.txt": "0 abseiling\n1 archery\n2 baking\n",
      "mini_train_videofolder.txt": ("v_h264.mp4 8 0\nv_mpeg4.avi 8 2\n"
                                     "noext 8 1\nclip one.mp4 8 1\n"),
      "mini_val_videofolder.txt": "f_a 6 1\n",
  })
  out = str(tmp_path / "out")
  summary = _prepare("minik", media, splits, out, videos_per_shard=3)
  assert summary["num_videos"] == 5 and summary["num_skipped"] == 0
  train = summary["splits"]["train"]
  assert (train["num_shards"], train["shards_written"]) == (2, 2)

  videos = vf.read_split(os.path.join(out, "train"))
  assert [v["video_id"] for v in videos] == [
      "v_h264.mp4", "v_mpeg4.avi", "noext", "clip one.mp4"]
  assert [v["labels"] for v in videos] == [[0], [2], [1], [1]]
  for v in videos:
    _check_frames(v, range(8))
  # A listed path without extension is found with one.
  assert videos[2]["source"] == os.path.join(media, "noext.mkv")
  (val,) = vf.read_split(os.path.join(out, "val"))
  _check_frames(val, range(6))
  assert val["source"] == os.path.join(media, "f_a")

  meta = shards.read_meta(os.path.join(out, "train"))
  assert meta["class_names"] == ["abseiling", "archery", "baking"]
  assert (meta["num_classes"], meta["num_videos"], meta["num_skipped"],
          meta["num_shards"], meta["multi_label"]) == (3, 4, 0, 2, False)
  made_by = meta["made_by"]
  assert made_by["tool_version"] == adafocus_tf.__version__
  assert (made_by["short_side"], made_by["fps"], made_by["jpeg_quality"]) == (
      SMALL, 0.0, 90)
  assert made_by["class_source"] == os.path.join(splits, "minik_classInd.txt")
  assert made_by["list_file"].endswith("mini_train_videofolder.txt")
  assert made_by["args"]["videos_per_shard"] == 3
  report = _read_json(os.path.join(out, "train", shards.REPORT))
  assert (report["num_videos"], report["skipped"]) == (4, [])
  manifest = _read_json(os.path.join(out, "train",
                                     "shard-00000-of-00002.json"))
  assert manifest["videos"] == ["v_h264.mp4", "v_mpeg4.avi", "noext"]
  assert manifest["lines"] == [1, 3]


def test_actnet_comma_lists_keep_folder_jpegs_and_listed_frames(media,
                                                                tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "Applying sunscreen\nArchery\nBaking cookies\n",
      "actnet_train_split.txt": "f_a,6,0\nf_b,8,2,1\nv_h264.mp4,8,1\n",
      "actnet_val_split.txt": "f_b,10,1\n",
  })
  out = str(tmp_path / "out")
  # The folders' frames are 64x48 already: stored byte for byte.
  _prepare("actnet", media, splits, out, short_side=48)
  f_a, f_b, video = vf.read_split(os.path.join(out, "train"))
  with open(os.path.join(media, "f_a", "image_00001.jpg"), "rb") as f:
    assert f_a["frames"][0] == f.read()
  _check_frames(f_a, range(6), 48, 64)
  # The list says 8 of the folder's 10 frames: the first 8 are stored.
  _check_frames(f_b, range(8), 48, 64)
  assert (f_a["labels"], f_b["labels"], video["labels"]) == ([0], [2, 1], [1])
  _check_frames(video, range(8), 48, 64)
  (val,) = vf.read_split(os.path.join(out, "val"))
  _check_frames(val, range(10), 48, 64)
  meta = shards.read_meta(os.path.join(out, "train"))
  assert meta["class_names"][0] == "Applying sunscreen"
  assert not meta["multi_label"]


def test_frames_tensorflow_cannot_decode_are_re_encoded(tmp_path):
  videos = str(tmp_path / "videos")
  folder = vf.write_frame_folder(os.path.join(videos, "f_lossless"), 4,
                                 lossless=True)
  with open(os.path.join(folder, "image_00001.jpg"), "rb") as f:
    first = f.read()
  # What a check with Pillow alone sees: an RGB JPEG of the target size.
  with Image.open(io.BytesIO(first)) as image:
    image.load()
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 48))
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.decode_jpeg(first, channels=3)
  vf.write_frame_folder(os.path.join(videos, "f_text"), 3)
  with open(os.path.join(videos, "f_text", "image_00002.jpg"), "wb") as f:
    f.write(b"not an image\n")
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "a\nb\n",
      "actnet_train_split.txt": "f_lossless,4,1\nf_text,3,0\n"})
  out = str(tmp_path / "out")
  summary = _prepare("actnet", videos, splits, out, short_side=48)
  (video,) = vf.read_split(os.path.join(out, "train"))
  # Every stored frame is one the training pipeline's decoder reads.
  assert video["frames"][0] != first
  for jpeg in video["frames"]:
    assert tf.io.decode_jpeg(jpeg, channels=3).shape == (48, 64, 3)
  _check_frames(video, range(4), 48, 64)
  # A reason meant for people: no "<_io.BytesIO object at 0x...>".
  (skip,) = summary["splits"]["train"]["skipped"]
  assert skip["reason"] == ("cannot read image_00002.jpg: not an image "
                            "file Pillow can read")


def test_fcvid_multi_label_and_fps_subsampling(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      # 1-based indices; list labels stay 0-based indices into this list.
      "classInd.txt": "1 a\n2 b\n3 c\n4 d\n",
      "fcvid_train_split.txt": "v_vp8.webm,12,3,0,3\nv_h264.mp4,8,1,2\n",
      "fcvid_val_split.txt": "v_mpeg4.avi,8,0\n",
  })
  out = str(tmp_path / "out")
  _prepare("fcvid", media, splits, out, fps=5)
  webm, mp4 = vf.read_split(os.path.join(out, "train"))
  assert webm["labels"] == [3, 0] and mp4["labels"] == [1, 2]
  # 10 fps sources at 5 fps: every other frame, from the first.
  _check_frames(webm, [0, 2, 4, 6, 8, 10])
  _check_frames(mp4, [0, 2, 4, 6])
  meta = shards.read_meta(os.path.join(out, "train"))
  assert meta["multi_label"] and meta["class_names"] == ["a", "b", "c", "d"]
  assert meta["made_by"]["fps"] == 5.0


def test_sthv2_explicit_lists_and_class_index(media, tmp_path):
  labels = _write(str(tmp_path / "labels"), {
      "sthv2_labels.txt": "0 Pushing something\n1 Pulling something\n"})
  splits = _write(str(tmp_path / "splits"), {
      "first.txt": "f_sth 5 1\nf_b 10 0\nclip one.mp4 8 1\nf_mixed 3 0\n",
      "second.txt": "f_b 10 1\n",
  })
  out = str(tmp_path / "out")
  summary = _prepare(
      "sthv2", media, splits, out, lists="train:first.txt,val:second.txt",
      class_index=os.path.join(labels, "sthv2_labels.txt"))
  assert sorted(summary["splits"]) == ["train", "val"]
  videos = vf.read_split(os.path.join(out, "train"))
  assert [(v["video_id"], v["labels"]) for v in videos] == [
      ("f_sth", [1]), ("f_b", [0])]
  _check_frames(videos[0], range(5))
  _check_frames(videos[1], range(10))
  # Something-Something lines have exactly 3 fields: no spaces in paths.
  skipped = summary["splits"]["train"]["skipped"]
  assert [s["line"] for s in skipped] == [3, 4]
  assert "expected 3" in skipped[0]["reason"]
  assert "several styles" in skipped[1]["reason"]
  meta = shards.read_meta(os.path.join(out, "val"))
  assert meta["class_names"] == ["Pushing something", "Pulling something"]

  # Found by name: the lists' category.txt, *train* / *val* lists.
  _write(splits, {"category.txt": "Pushing something\nPulling something\n",
                  "train_videofolder.txt": "f_sth 5 0\n",
                  "val_videofolder.txt": "f_b 10 1\n"})
  os.remove(os.path.join(splits, "first.txt"))
  summary = _prepare("sthv1", media, splits, str(tmp_path / "out2"))
  assert summary["num_videos"] == 2
  assert summary["splits"]["train"]["meta"]["made_by"]["class_source"] == (
      os.path.join(splits, "category.txt"))


def test_custom_csv_with_class_names(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "train.csv": (f"path,label\n{os.path.join(media, 'v_h264.mp4')},dog\n"
                    "f_a,cat\nv_mpeg4.avi,dog\n"),
      "val.csv": "noext,bird\n",
  })
  out = str(tmp_path / "out")
  _prepare("custom", media, splits, out)
  videos = vf.read_split(os.path.join(out, "train"))
  # Classes: the sorted names of all lists -> bird 0, cat 1, dog 2.
  assert [v["labels"] for v in videos] == [[2], [1], [2]]
  _check_frames(videos[0], range(8))
  _check_frames(videos[1], range(6))
  meta = shards.read_meta(os.path.join(out, "train"))
  assert meta["class_names"] == ["bird", "cat", "dog"]
  assert meta["made_by"]["class_source"] == (
      "sorted unique class names of the split lists")
  assert shards.read_meta(os.path.join(out, "val"))["class_names"] == [
      "bird", "cat", "dog"]

  # With a class file, a name outside it is a bad line, never a new class.
  classes = _write(str(tmp_path / "c"), {"classes.txt": "dog\ncat\n"})
  summary = _prepare("custom", media, splits, str(tmp_path / "out2"),
                     class_index=os.path.join(classes, "classes.txt"))
  (skip,) = summary["splits"]["val"]["skipped"]
  assert (skip["line"], skip["text"]) == (1, "noext,bird")
  assert "'bird' is not in the class list" in skip["reason"]
  assert summary["splits"]["val"]["meta"] is None
  assert [v["labels"] for v in vf.read_split(
      str(tmp_path / "out2" / "train"))] == [[0], [1], [0]]


# Jester's official distribution: 20bn-jester-v1/<id>/00001.jpg... and
# jester-v1-{labels,train,validation,test}.csv; the labels file lists plain
# class names (here four of the 27, in the official file's order).
JESTER_LABELS = ("Swiping Left\nSwiping Right\nDoing other things\n"
                 "No gesture\n")
JESTER_SORTED = ["Doing other things", "No gesture", "Swiping Left",
                 "Swiping Right"]


def _jester_frames(root, frames):
  for video_id, count in frames.items():
    vf.write_frame_folder(os.path.join(root, video_id), count,
                          pattern="{:05d}.jpg")
  return root


def test_jester_official_lists(tmp_path, capsys):
  videos = _jester_frames(str(tmp_path / "20bn-jester-v1"),
                          {"34870": 5, "56557": 4, "9": 3})
  splits = _write(str(tmp_path / "jester"), {
      "jester-v1-labels.csv": JESTER_LABELS,
      "jester-v1-train.csv": "34870;Swiping Left\n56557;No gesture\n",
      "jester-v1-validation.csv": "9;Doing other things\n",
      "jester-v1-test.csv": "9\n",
  })
  out = str(tmp_path / "out")
  summary = _prepare("jester", videos, splits, out)
  # The unlabelled official test list is left out, with a warning.
  assert sorted(summary["splits"]) == ["train", "val"]
  assert (summary["num_videos"], summary["num_skipped"]) == (3, 0)
  test_list = os.path.join(splits, "jester-v1-test.csv")
  assert f"{test_list}: jester's official test list has no labels" in (
      capsys.readouterr().err)
  train = vf.read_split(os.path.join(out, "train"))
  # Labels index the sorted class names, as TSM's label files number them.
  assert [(v["video_id"], v["labels"]) for v in train] == [
      ("34870", [2]), ("56557", [1])]
  _check_frames(train[0], range(5))
  _check_frames(train[1], range(4))
  assert train[0]["source"] == os.path.join(videos, "34870")
  (val,) = vf.read_split(os.path.join(out, "val"))
  assert (val["video_id"], val["labels"]) == ("9", [0])
  _check_frames(val, range(3))
  meta = shards.read_meta(os.path.join(out, "val"))
  assert meta["class_names"] == JESTER_SORTED and meta["num_classes"] == 4
  assert meta["dataset"] == "jester" and not meta["multi_label"]
  assert meta["made_by"]["class_source"] == (
      os.path.join(splits, "jester-v1-labels.csv") +
      " (classes in sorted name order)")
  assert meta["made_by"]["list_file"] == os.path.join(
      splits, "jester-v1-validation.csv")

  # A test list alone is no dataset.
  only_test = _write(str(tmp_path / "only_test"), {
      "jester-v1-labels.csv": JESTER_LABELS, "jester-v1-test.csv": "9\n"})
  with pytest.raises(prepare_lib.PrepareError,
                     match="no labelled split lists in .*only_test"):
    _prepare("jester", videos, only_test, str(tmp_path / "out2"))


KINETICS_LABEL_MAP = ("abseiling\nair drumming\n"
                      "\"passing American football (in game)\"\n")


def test_kinetics_tsm_lists_and_label_map(tmp_path):
  """TSM's gen_label_kinetics.py output, as the official Uni-AdaFocus-X3D
  code reads it: {train,val}_videofolder.txt ``folder num_frames label``,
  frame folders of img_00001.jpg, labels the lines of
  kinetics_label_map.txt (names with spaces and quotes kept whole)."""
  videos = str(tmp_path / "images")
  for folder, count in (("abseiling/a1", 5), ("air_drumming/b2", 4),
                        ("passing_American_football_in_game/c3", 3)):
    vf.write_frame_folder(os.path.join(videos, folder), count,
                          pattern="img_{:05d}.jpg")
  splits = _write(str(tmp_path / "labels"), {
      "kinetics_label_map.txt": KINETICS_LABEL_MAP,
      "train_videofolder.txt": ("abseiling/a1 5 0\n"
                                "passing_American_football_in_game/c3 3 2\n"),
      "val_videofolder.txt": "air_drumming/b2 4 1\n",
  })
  out = str(tmp_path / "out")
  summary = _prepare("kinetics", videos, splits, out)
  assert (summary["num_videos"], summary["num_skipped"]) == (3, 0)
  train = vf.read_split(os.path.join(out, "train"))
  assert [(v["video_id"], v["labels"]) for v in train] == [
      ("abseiling/a1", [0]), ("passing_American_football_in_game/c3", [2])]
  _check_frames(train[0], range(5))
  _check_frames(train[1], range(3))
  (val,) = vf.read_split(os.path.join(out, "val"))
  assert (val["video_id"], val["labels"]) == ("air_drumming/b2", [1])
  meta = shards.read_meta(os.path.join(out, "val"))
  assert meta["dataset"] == "kinetics" and meta["class_names"] == [
      "abseiling", "air drumming", '"passing American football (in game)"']
  assert meta["made_by"]["class_source"] == os.path.join(
      splits, "kinetics_label_map.txt")


JESTER_BAD_TRAIN = """\
34870;Swiping Left
56557;Waving
77
1;Swiping Left;extra
;No gesture
34870;Swiping Right
404;No gesture
9;Swiping Right
"""


def test_jester_bad_lines_and_unknown_labels(tmp_path):
  videos = _jester_frames(str(tmp_path / "frames"), {"34870": 3, "9": 2})
  splits = _write(str(tmp_path / "jester"), {
      "jester-v1-labels.csv": JESTER_LABELS,
      "jester-v1-train.csv": JESTER_BAD_TRAIN,
      "jester-v1-test.csv": "34870\n9\n"})
  train_list = os.path.join(splits, "jester-v1-train.csv")
  out = str(tmp_path / "out")
  summary = _prepare("jester", videos, splits, out)
  assert [(v["video_id"], v["labels"]) for v in vf.read_split(
      os.path.join(out, "train"))] == [("34870", [2]), ("9", [3])]
  skipped = summary["splits"]["train"]["skipped"]
  assert all(s["list"] == train_list for s in skipped)
  got = {s["line"]: s["reason"] for s in skipped}
  assert got == {
      2: "class 'Waving' is not in the class list (4 classes)",
      3: ("expected 2 ';'-separated fields 'id;label', got 1 (no label: "
          "jester's official test list has none)"),
      4: "expected 2 ';'-separated fields 'id;label', got 3",
      5: "empty id",
      6: "'34870' is listed again (first at line 1)",
      7: got[7],
  }
  assert got[7].startswith("not found (tried "
                           f"{os.path.join(videos, '404')}")
  assert [s["text"] for s in skipped if s["line"] == 2] == ["56557;Waving"]

  # --strict names the list file and line of each bad line.
  with pytest.raises(prepare_lib.StrictError) as e:
    _prepare("jester", videos, splits, str(tmp_path / "strict"), strict=True)
  assert (f"{train_list}:2: class 'Waving' is not in the class list"
          in str(e.value))
  assert f"{train_list}:5: empty id" in str(e.value)

  # Named with --lists, the unlabelled test list is read: every line is bad.
  summary = _prepare("jester", videos, splits, str(tmp_path / "out_test"),
                     lists="test:jester-v1-test.csv")
  test = summary["splits"]["test"]
  assert (test["num_videos"], [s["line"] for s in test["skipped"]]) == (
      0, [1, 2])
  assert "no label" in test["skipped"][0]["reason"]
  assert summary["splits"]["test"]["meta"] is None

  # The labels file: plain names (a leading number stays part of the name),
  # numbered in sorted order; a repeated name is an error.
  fmt = split_lists.FORMATS["jester"]
  _write(splits, {"digits-labels.csv": "Zoom\n2 Fingers Up\n",
                  "dup-labels.csv": "Zoom\nZoom\n"})
  assert split_lists.read_class_names(
      os.path.join(splits, "digits-labels.csv"), fmt) == ["2 Fingers Up",
                                                          "Zoom"]
  with pytest.raises(split_lists.ListError, match="repeats line 1"):
    split_lists.read_class_names(os.path.join(splits, "dup-labels.csv"), fmt)
  # Several *labels.csv files: the choice is the user's.
  with pytest.raises(prepare_lib.PrepareError,
                     match="several class index files.*--class_index"):
    _prepare("jester", videos, splits, str(tmp_path / "out3"))


BAD_MINIK_LIST = """\
v_h264.mp4 8 0
zero.mp4 8 0
garbled.avi 8 1
trunc.mkv 24 1
f_gap 6 0
f_short 6 0
v_mpeg4.avi 8
v_mpeg4.avi 8 7
v_mpeg4.avi x 1
missing_video 8 0
v_h264.mp4 8 1
f_a 6 2
"""


def test_bad_inputs_are_skipped_and_reported(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "a\nb\nc\n", "train.txt": BAD_MINIK_LIST})
  out = str(tmp_path / "out")
  summary = _prepare("minik", media, splits, out, videos_per_shard=5)
  assert (summary["num_videos"], summary["num_skipped"]) == (2, 10)
  videos = vf.read_split(os.path.join(out, "train"))
  assert [v["video_id"] for v in videos] == ["v_h264.mp4", "f_a"]

  report = _read_json(os.path.join(out, "train", shards.REPORT))
  list_file = os.path.join(splits, "train.txt")
  assert report["num_skipped"] == 10
  assert all(s["list"] == list_file for s in report["skipped"])
  got = {s["line"]: (s["video"], s["reason"]) for s in report["skipped"]}
  files = {s["line"]: s["file"] for s in report["skipped"]}
  assert sorted(got) == list(range(2, 12))
  expected = {
      2: ("zero.mp4", "empty file"),
      3: ("garbled.avi", ""),
      4: ("trunc.mkv", "truncated"),
      5: ("f_gap", "missing frame image_00004.jpg"),
      6: ("f_short", "frame folder has 4 frames, the list says 6"),
      7: (None, "expected 3 space-separated fields"),
      8: (None, "label 7 is not in the class list"),
      9: (None, "num_frames 'x' is not an integer"),
      10: ("missing_video", "not found"),
      11: (None, "listed again (first at line 1)"),
  }
  for line, (video, reason) in expected.items():
    assert got[line][0] == video, line
    assert reason in got[line][1] and got[line][1], (line, got[line])
    # The file looked at (none for a line that names no usable video).
    assert files[line] == (video and os.path.join(media, video)), line
  # Each shard's manifest holds its own skipped lines.
  first = _read_json(os.path.join(out, "train", "shard-00000-of-00003.json"))
  assert [s["line"] for s in first["skipped"]] == [2, 3, 4, 5]
  assert shards.read_meta(os.path.join(out, "train"))["num_skipped"] == 10

  status, message = prepare_lib.exit_status(summary, strict=False)
  assert status == 0 and "10 input(s) skipped" in message
  status, message = prepare_lib.exit_status(summary, strict=True)
  trunc = os.path.join(media, "trunc.mkv")
  assert status == 1 and f"{list_file}:4: {trunc}: truncated" in message

  # --strict stops at the bad lines before decoding anything.
  strict_out = str(tmp_path / "strict")
  with pytest.raises(prepare_lib.StrictError, match=r"train.txt:7: expected"):
    _prepare("minik", media, splits, strict_out, strict=True)
  assert not os.path.exists(os.path.join(strict_out, "train"))


def test_list_and_class_file_parsing(tmp_path):
  d = str(tmp_path)
  cases = {
      "zero.txt": ("0 x\n1 y\n2 z\n", ["x", "y", "z"]),
      "one.txt": ("2 y\n1 x\n3 z z\n", ["x", "y", "z z"]),
      "comma.txt": ("0,x\n1,y\n", ["x", "y"]),
      "plain.txt": ("# comment\nx\n\ny y\n", ["x", "y y"]),
  }
  for name, (text, names) in cases.items():
    _write(d, {name: text})
    assert split_lists.parse_class_index(os.path.join(d, name)) == names
  errors = {
      "mixed.txt": ("0 x\ny\n", "has no index"),
      "gap.txt": ("0 x\n2 y\n", "index 1 is missing"),
      "base.txt": ("2 x\n3 y\n", "start at 0 or 1"),
      "dup.txt": ("x\ny\nx\n", "repeats line 1"),
      "empty.txt": ("\n", "no classes"),
  }
  for name, (text, message) in errors.items():
    _write(d, {name: text})
    with pytest.raises(split_lists.ListError, match=message):
      split_lists.parse_class_index(os.path.join(d, name))
  with open(os.path.join(d, "latin1.txt"), "wb") as f:
    f.write(b"caf\xe9\n")
  with pytest.raises(split_lists.ListError,
                     match=r"latin1.txt: line 1 is not UTF-8 text: byte 0xe9"):
    split_lists.parse_class_index(os.path.join(d, "latin1.txt"))

  fmt = split_lists.FORMATS["minik"]
  lists = _write(str(tmp_path / "l"), {
      "classInd.txt": "", "my_train_list.txt": "", "VAL.txt": "",
      "notes.txt": ""})
  assert split_lists.find_split_lists(lists, fmt) == {
      "train": os.path.join(lists, "my_train_list.txt"),
      "val": os.path.join(lists, "VAL.txt")}
  _write(lists, {"train2.txt": ""})
  with pytest.raises(split_lists.ListError, match="two train lists"):
    split_lists.find_split_lists(lists, fmt)
  with pytest.raises(split_lists.ListError, match="several splits"):
    split_lists.split_of("trainval.txt")
  assert split_lists.parse_lists_flag("train:a.txt, val:/x/b.txt", "/s") == {
      "train": "/s/a.txt", "val": "/x/b.txt"}

  # Clear errors (no traceback at the command line) before any work.
  videos = _write(str(tmp_path / "v"), {})
  empty = _write(str(tmp_path / "empty"), {"readme.md": ""})
  out = str(tmp_path / "out")
  with pytest.raises(prepare_lib.PrepareError, match="no split lists"):
    _prepare("minik", videos, empty, out)
  with pytest.raises(prepare_lib.PrepareError, match="no such directory"):
    _prepare("minik", str(tmp_path / "nope"), lists, out)
  no_class = _write(str(tmp_path / "nc"), {"train.txt": "a 1 0\n"})
  with pytest.raises(prepare_lib.PrepareError, match="no class index file"):
    _prepare("minik", videos, no_class, out)
  with pytest.raises(prepare_lib.PrepareError, match="cannot read"):
    _prepare("minik", videos, no_class, out,
             class_index=os.path.join(d, "latin1.txt"))


def test_a_line_that_is_not_utf8_is_a_bad_line(media, tmp_path):
  # A Latin-1 file name on line 3; line 2 is a comment in Latin-1.
  splits = str(tmp_path / "splits")
  _write(splits, {"classInd.txt": "a\nb\nc\n"})
  list_file = os.path.join(splits, "train.txt")
  with open(list_file, "wb") as f:
    f.write(b"\xef\xbb\xbfv_h264.mp4 8 0\r\n# caf\xe9\r\ncaf\xe9.mp4 8 1\r\n"
            b"f_a 6 2\r\n")
  items = split_lists.parse_split_list(list_file, split_lists.FORMATS["minik"],
                                       ["a", "b", "c"])
  assert [(type(i).__name__, i.line) for i in items] == [
      ("Entry", 1), ("BadLine", 3), ("Entry", 4)]
  assert (items[0].path, items[2].path) == ("v_h264.mp4", "f_a")
  reason = ("not UTF-8 text: byte 0xe9 at position 4 of the line (save the "
            "file as UTF-8)")
  assert (items[1].text, items[1].reason) == ("caf\ufffd.mp4 8 1", reason)
  out = str(tmp_path / "out")
  summary = _prepare("minik", media, splits, out)
  assert [v["video_id"] for v in vf.read_split(os.path.join(out, "train"))] \
      == ["v_h264.mp4", "f_a"]
  (skip,) = summary["splits"]["train"]["skipped"]
  assert (skip["list"], skip["line"], skip["reason"]) == (list_file, 3, reason)


def test_rerun_keeps_finished_shards_and_redoes_changed_ones(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "a\nb\n",
      "train.txt": "v_h264.mp4 8 0\nf_a 6 1\nv_mpeg4.avi 8 1\n"})
  out = str(tmp_path / "out")
  _prepare("minik", media, splits, out, videos_per_shard=2)
  shard0 = os.path.join(out, "train", "shard-00000-of-00002.tfrecord")
  before = os.stat(shard0).st_mtime_ns
  again = _prepare("minik", media, splits, out, videos_per_shard=2)
  assert (again["splits"]["train"]["shards_written"],
          again["splits"]["train"]["shards_reused"]) == (0, 2)
  assert os.stat(shard0).st_mtime_ns == before
  assert again["num_videos"] == 3
  # Other settings: every shard is rewritten.
  changed = _prepare("minik", media, splits, out, videos_per_shard=2,
                     jpeg_quality=70)
  assert changed["splits"]["train"]["shards_written"] == 2
  assert shards.read_meta(os.path.join(out, "train"))["made_by"][
      "jpeg_quality"] == 70
  # Another shard size cannot be mixed into the same directory.
  with pytest.raises(prepare_lib.PrepareError, match="does not belong"):
    _prepare("minik", media, splits, out, videos_per_shard=1)


def _run_cli(*args, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, PREPARE, "--noprogress", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, **kwargs)


def test_cli_exit_status(media, tmp_path):
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "a\nb\n", "train.txt": "v_h264.mp4 8 0\nzero.mp4 8 1\n"})
  common = ["--dataset=minik", f"--videos={media}", f"--short_side={SMALL}",
            "--workers=1"]
  proc = _run_cli(*common, f"--splits={splits}",
                  f"--out={tmp_path / 'strict'}", "--strict")
  assert proc.returncode == 1, proc.stderr
  assert "--strict: 1 bad input(s)" in proc.stderr
  assert f"train.txt:2: {os.path.join(media, 'zero.mp4')}: empty file" in (
      proc.stderr)
  # What could be prepared is there, and the report names the bad video.
  assert shards.read_meta(str(tmp_path / "strict" / "train"))[
      "num_videos"] == 1

  bad = _write(str(tmp_path / "bad"), {
      "classInd.txt": "a\n", "train.txt": "zero.mp4 8 0\nmissing 3 0\n"})
  proc = _run_cli(*common, f"--splits={bad}", f"--out={tmp_path / 'none'}")
  assert proc.returncode == 1, proc.stderr
  assert "no video could be prepared" in proc.stderr
  report = _read_json(str(tmp_path / "none" / "train" / shards.REPORT))
  assert [s["line"] for s in report["skipped"]] == [1, 2]

  proc = _run_cli("--dataset=minik", f"--videos={tmp_path / 'absent'}",
                  f"--splits={splits}", f"--out={tmp_path / 'x'}")
  assert proc.returncode == 2
  assert "error: --videos" in proc.stderr and "no such directory" in (
      proc.stderr)
  assert "Traceback" not in proc.stderr


def _shard_files(split_dir):
  return sorted(n for n in os.listdir(split_dir) if n.startswith("shard-"))


def test_killed_run_resumes_byte_identical(tmp_path):
  videos = str(tmp_path / "videos")
  os.makedirs(videos)
  num = 16
  for i in range(num):
    vf.write_video(os.path.join(videos, f"v{i:02d}.mp4"), 30, "h264")
  splits = _write(str(tmp_path / "splits"), {
      "classInd.txt": "a\nb\nc\n",
      "train.txt": "".join(f"v{i:02d}.mp4 30 {i % 3}\n" for i in range(num))})
  # Upscaled frames make each shard take a little while.
  common = ["--dataset=minik", f"--videos={videos}", f"--splits={splits}",
            "--short_side=96", "--videos_per_shard=2"]
  ref = tmp_path / "ref"
  proc = _run_cli(*common, f"--out={ref}", "--workers=2")
  assert proc.returncode == 0, proc.stderr

  out = tmp_path / "killed"
  first = out / "train" / "shard-00000-of-00008.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.Popen(
      [sys.executable, PREPARE, "--noprogress", *common, f"--out={out}",
       "--workers=1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 240
  while not first.exists() and run.poll() is None:
    assert time.monotonic() < deadline, "no shard finished in time"
    time.sleep(0.005)
  run.send_signal(signal.SIGKILL)
  run.wait()
  finished = sorted(p.name for p in (out / "train").glob("shard-*.json"))
  assert 1 <= len(finished) < 8, f"killed too late: {finished}"
  # Only finished shards are visible; nothing else carries a shard name.
  listed = shards.list_records(str(out / "train"))
  assert [os.path.basename(p)[:-len(".tfrecord")] for p in listed] == [
      n[:-len(".json")] for n in finished]
  for name in os.listdir(out / "train"):
    assert re.fullmatch(r"shard-000\d\d-of-00008\.(tfrecord|json)", name) or (
        name.startswith(".tmp-")), name
  assert not (out / "train" / "meta.json").exists()
  # As a kill mid-shard leaves it; the next run deletes it.
  (out / "train" / ".tmp-0badc0de-shard-00007-of-00008.tfrecord").write_bytes(
      b"partial")

  proc = _run_cli(*common, f"--out={out}", "--workers=1")
  assert proc.returncode == 0, proc.stderr
  assert f"{len(finished)} already done" in proc.stdout
  names = _shard_files(out / "train")
  assert names == _shard_files(ref / "train") and len(names) == 16
  for name in names:
    assert (out / "train" / name).read_bytes() == (
        ref / "train" / name).read_bytes(), name
  assert not [n for n in os.listdir(out / "train") if n.startswith(".tmp-")]
  assert shards.read_meta(str(out / "train"))["num_videos"] == num


def test_truncation_check_ignores_a_longer_audio_track(tmp_path):
  # The file is 3 s long but its video track, complete, 1 s.
  for ext in ("mkv", "mp4"):
    path = vf.write_video(str(tmp_path / f"a.{ext}"), 10, audio_seconds=3)
    frames = video_decode.decode_video_file(
        path, video_decode.FrameSettings(short_side=SMALL))
    assert vf.match_frames(frames.jpegs) == list(range(10))


def test_frame_settings_and_sizes():
  assert video_decode.resized_size(64, 48, 32) == (43, 32)
  assert video_decode.resized_size(48, 64, 32) == (32, 43)
  assert video_decode.resized_size(1920, 1080, 360) == (640, 360)
  assert video_decode.resized_size(64, 48, 0) == (64, 48)
  with pytest.raises(ValueError, match="jpeg_quality"):
    video_decode.FrameSettings(jpeg_quality=0).validate()

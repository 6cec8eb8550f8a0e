"""datasets/prepare.py on Apache Beam: every runner writes the same bytes,
worker processes write to S3 and end cleanly, a runner or pipeline options
Beam does not accept stop it with one line before anything is written, and
a failing worker is one error naming its cause."""
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import pytest

import helpers
import video_fixtures as vf
from adafocus_tf.data import prepare_lib
from adafocus_tf.data import prepare_shard
from adafocus_tf.data import shards

PREPARE = os.path.join(helpers.REPO, "datasets", "prepare.py")
SMALL = 32
# The made_by fields that name the command and the engine.
_ENGINE_ARGS = ("runner", "pipeline_args", "out")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """(videos, splits): three good inputs and an empty video, in two shards."""
  root = str(tmp_path_factory.mktemp("beam"))
  videos, splits = os.path.join(root, "videos"), os.path.join(root, "splits")
  os.makedirs(videos)
  os.makedirs(splits)
  vf.write_video(os.path.join(videos, "a.mp4"), 8, "h264")
  vf.write_video(os.path.join(videos, "b.avi"), 8, "mpeg4")
  vf.write_frame_folder(os.path.join(videos, "f"), 6)
  with open(os.path.join(videos, "zero.mp4"), "wb"):
    pass
  with open(os.path.join(splits, "classInd.txt"), "w") as f:
    f.write("x\ny\n")
  with open(os.path.join(splits, "train.txt"), "w") as f:
    f.write("a.mp4 8 0\nzero.mp4 8 1\nb.avi 8 1\nf 6 0\n")
  return videos, splits


def _prepare(dataset, out, **kwargs):
  videos, splits = dataset
  kwargs.setdefault("workers", 1)
  return prepare_lib.prepare("minik", videos, splits, out, short_side=SMALL,
                             videos_per_shard=2, progress=False, **kwargs)


def _split_files(split_dir):
  """Every file of a split; meta.json without what names the engine."""
  files = {}
  for name in sorted(os.listdir(split_dir)):
    if name == shards.META:
      meta = shards.read_meta(split_dir)
      meta["made_by"]["command"] = None
      for key in _ENGINE_ARGS:
        meta["made_by"]["args"].pop(key)
      files[name] = meta
    else:
      with open(os.path.join(split_dir, name), "rb") as f:
        files[name] = f.read()
  return files


def test_every_runner_writes_the_same_split(dataset, tmp_path):
  ref = _prepare(dataset, str(tmp_path / "ref"))
  assert (ref["num_videos"], ref["num_skipped"]) == (3, 1)
  (skip,) = ref["splits"]["train"]["skipped"]
  assert (skip["line"], skip["video"]) == (2, "zero.mp4")
  expected = _split_files(str(tmp_path / "ref" / "train"))
  assert sorted(expected) == [
      "meta.json", "report.json", "shard-00000-of-00002.json",
      "shard-00000-of-00002.tfrecord", "shard-00001-of-00002.json",
      "shard-00001-of-00002.tfrecord"]
  assert [v["video_id"] for v in vf.read_split(str(tmp_path / "ref" /
                                                   "train"))] == [
      "a.mp4", "b.avi", "f"]

  cases = {
      # A runner from Beam's registry, as Dataflow, Flink and Spark are.
      "bundle": {"runner": "BundleBasedDirectRunner"},
      # Options passed through win over what workers sets.
      "threads": {"workers": 2,
                  "pipeline_args": ["--direct_running_mode=multi_threading"]},
  }
  for name, kwargs in cases.items():
    out = tmp_path / name
    summary = _prepare(dataset, str(out), **kwargs)
    assert summary["splits"]["train"]["shards_written"] == 2, name
    assert _split_files(str(out / "train")) == expected, name
    made_by = shards.read_meta(str(out / "train"))["made_by"]["args"]
    assert made_by["runner"] == kwargs.get("runner", "DirectRunner"), name


@pytest.mark.parametrize("runner,args,message", [
    ("NoSuchRunner", [], "--runner=NoSuchRunner: Beam does not know this "
     "runner (one of DataflowRunner, "),
    ("DirectRunner", ["--no_such_option=1"],
     "Beam does not know the pipeline option(s) --no_such_option=1"),
    ("DirectRunner", ["--direct_running_mode=bogus"],
     "Beam refuses the pipeline options: argument --direct_running_mode: "
     "invalid choice: 'bogus'"),
    ("DataflowRunner", [], "--runner=DataflowRunner rejects the pipeline "
     "options: "),
])
def test_options_beam_does_not_accept_stop_before_writing(dataset, tmp_path,
                                                          runner, args,
                                                          message):
  out = tmp_path / "out"
  with pytest.raises(prepare_lib.PrepareError) as raised:
    _prepare(dataset, str(out), runner=runner, pipeline_args=args)
  assert str(raised.value).startswith(message), str(raised.value)
  assert "\n" not in str(raised.value)
  if runner == "DataflowRunner":
    assert "Missing required option: project." in str(raised.value)
  assert not out.exists()


def test_cli_passes_options_after_double_dash_and_refuses_bad_ones(
    dataset, tmp_path):
  videos, splits = dataset
  common = [sys.executable, PREPARE, "--noprogress", "--dataset=minik",
            f"--videos={videos}", f"--splits={splits}",
            f"--short_side={SMALL}", "--workers=1"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  bad = subprocess.run(
      [*common, f"--out={tmp_path / 'bad'}", "--", "--no_such_option=1"],
      cwd=helpers.REPO, env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2, bad.stderr
  assert bad.stderr.strip().splitlines() == [
      "error: Beam does not know the pipeline option(s) --no_such_option=1"]
  assert not (tmp_path / "bad").exists()

  good = subprocess.run(
      [*common, f"--out={tmp_path / 'good'}", "--",
       "--direct_running_mode=multi_threading"],
      cwd=helpers.REPO, env=env, capture_output=True, text=True, timeout=300)
  assert good.returncode == 0, good.stderr
  # Beam's own logging stays quiet: only the skipped video is warned about.
  assert [l for l in good.stderr.splitlines() if l.strip()] == [
      f"WARNING: {os.path.join(splits, 'train.txt')}:2: "
      f"{os.path.join(videos, 'zero.mp4')}: empty file (0 bytes)"]
  meta = shards.read_meta(str(tmp_path / "good" / "train"))
  assert meta["made_by"]["args"]["pipeline_args"] == [
      "--direct_running_mode=multi_threading"]


def test_without_beam_the_error_names_the_install(dataset, tmp_path,
                                                  monkeypatch):
  monkeypatch.setitem(sys.modules, "apache_beam", None)
  with pytest.raises(prepare_lib.PrepareError,
                     match=r"pip install 'adafocus-tf\[beam\]'"):
    _prepare(dataset, str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def test_worker_processes_write_to_s3_and_end_cleanly(dataset, s3_server,
                                                       tmp_path):
  videos, splits = dataset
  bucket = s3_server.make_bucket("beam")
  out = f"s3://{bucket}/data"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, PREPARE, "--noprogress", "--dataset=minik",
       f"--videos={videos}", f"--splits={splits}", f"--short_side={SMALL}",
       "--videos_per_shard=2", "--workers=2", f"--out={out}"],
      cwd=helpers.REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  # The workers used S3 too: none aborted at exit (tensorflow/io#2039).
  assert [l for l in proc.stderr.splitlines() if l.strip()] == [
      f"WARNING: {os.path.join(splits, 'train.txt')}:2: "
      f"{os.path.join(videos, 'zero.mp4')}: empty file (0 bytes)"]
  assert s3_server.keys(bucket) == sorted(
      [f"data/train/shard-0000{i}-of-00002.{ext}" for i in (0, 1)
       for ext in ("tfrecord", "json")] +
      ["data/train/meta.json", "data/train/report.json"])
  assert [v["video_id"] for v in vf.read_split(f"{out}/train")] == [
      "a.mp4", "b.avi", "f"]


def test_a_failing_worker_is_a_pipeline_error_naming_it(dataset, tmp_path,
                                                        monkeypatch):
  def fail(task):
    raise OSError(f"disk full writing shard {task.index}")

  # In this process (one worker), where the patch applies.
  monkeypatch.setattr(prepare_shard, "prepare_shard", fail)
  with pytest.raises(prepare_lib.PipelineError,
                     match=r"^the Beam pipeline failed: .*disk full writing "
                           r"shard \d"):
    _prepare(dataset, str(tmp_path / "out"))
  # Nothing counts as finished; a re-run (here unpatched) redoes it all.
  assert not list((tmp_path / "out" / "train").glob("shard-*"))
  assert not (tmp_path / "out" / "train" / shards.META).exists()

"""A run on s3:// end to end, on the local S3 server (moto): trained by
launch/train.py with its run directory on S3, killed mid-stage and resumed,
evaluated, exported (SavedModel and TFLite) to S3, and predicted from, its
TFLite caches in a local directory. One trained run for the module."""
import dataclasses
import os
import re
import subprocess
import sys
import time

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures as vf
from adafocus_tf import io_utils
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.runs import checkpoints
from adafocus_tf.serving import export
from adafocus_tf.serving import tflite_model

pytestmark = pytest.mark.training

# 32 videos / batch 8 = 4 steps an epoch, 2 epochs, a checkpoint every step.
TOTAL_STEPS = 8
FLAGS = ["--stage=1", "--noprogress", "--noevaluate",
         "--checkpoint_every=1"] + helpers.tiny_flags(stage1__epochs=2)
# Seconds the first training process has to write its first checkpoint.
_FIRST_CHECKPOINT_S = 300


@dataclasses.dataclass
class S3Run:
  """The module's run: ``run`` (s3://bucket/runs/r), its ``bucket``, the
  ``server``, the stderr of the resumed training and the step it was
  killed at."""
  run: str
  bucket: str
  server: object
  resumed_stderr: str
  killed_at: int


# A temporary name of TensorFlow's checkpoint state file.
STRAY_STATE_FILE = "checkpoint.tmp0123456789abcdef"


def _latest_step(run):
  ckpt = checkpoints.latest_stage_checkpoint(run, 1)
  return int(ckpt.rsplit("-", 1)[1]) if ckpt else 0


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory):
  data_dir = helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                                   num_train=32, num_val=8)
  bucket = s3_server.make_bucket("e2e")
  run = f"s3://{bucket}/runs/r"
  io_utils.ensure_filesystem(run)  # this process reads the run too
  args = FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}"]
  log = tmp_path_factory.mktemp("log") / "killed.log"
  with open(log, "w") as stderr:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(helpers.REPO, "launch", "train.py")] +
        args, stdout=subprocess.DEVNULL, stderr=stderr,
        env=helpers.user_environment())
    deadline = time.monotonic() + _FIRST_CHECKPOINT_S
    while (_latest_step(run) < 2 and proc.poll() is None and
           time.monotonic() < deadline):
      time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, possibly mid-upload
    proc.wait()
  assert proc.returncode == -9, log.read_text()[-3000:]
  killed_at = _latest_step(run)
  assert 2 <= killed_at < TOTAL_STEPS, "the kill must land mid-stage"
  assert not io_utils.exists(f"{run}/stage1/done.json")
  # What a kill between the copy and the delete of TensorFlow's rename of
  # the checkpoint state file leaves (the kill above rarely lands there).
  io_utils.write_text(f"{run}/stage1/checkpoints/{STRAY_STATE_FILE}",
                      "model_checkpoint_path: \"ckpt-1\"\n")
  # The same command resumes it (the killed trainer's lease is its host's,
  # its process gone: taken over at once).
  resumed = helpers.run_train(args)
  return S3Run(run, bucket, s3_server, resumed.stderr, killed_at)


def test_trains_resumes_and_evaluates_on_s3(s3_run):
  run, keys = s3_run.run, s3_run.server.keys(s3_run.bucket, "runs/r/")
  m = re.search(r"resumed stage 1 at step (\d+)", s3_run.resumed_stderr)
  assert m and int(m.group(1)) == s3_run.killed_at
  assert _latest_step(run) == TOTAL_STEPS
  for key in ("config.json", "classes.json", "stage1/done.json",
              "stage1/checkpoints/checkpoint"):
    assert f"runs/r/{key}" in keys, key
  assert any(k.startswith("runs/r/logs/stage1/") for k in keys)
  # No temporary name of the package's atomic writes survived the kill,
  # and the resume removed TensorFlow's.
  assert not [k for k in keys if ".tmp" in k], keys
  config = io_utils.read_json(f"{run}/config.json")
  assert config["stage1"]["epochs"] == 2

  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch", "evaluate.py"),
       f"--run={run}", "--patches=centre", "--noprogress"],
      capture_output=True, text=True, timeout=600,
      env=helpers.user_environment())
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = io_utils.read_json(f"{run}/metrics.json")["evaluation"]["val/centre"]
  assert row["num_videos"] == 8 and row["gflops_per_video"] > 0
  assert 0.0 <= row["top1"] <= 100.0


def test_exports_to_s3_and_loads_back(s3_run):
  run, bucket = s3_run.run, s3_run.bucket
  saved = f"s3://{bucket}/exports/adafocus/1"
  meta = export.export_run(run, saved)
  assert export.read_metadata(saved)["weights_digest"] == meta[
      "weights_digest"]
  loaded = tf.saved_model.load(saved)
  assert "serving_default" in loaded.signatures

  lite_dir = f"s3://{bucket}/exports/adafocus-tflite/1"
  tflite_model.export_tflite(run, lite_dir)
  lite = tflite_model.TFLiteModel(lite_dir)
  assert lite.metadata["format"] == tflite_model.FORMAT
  assert sorted(s3_run.server.keys(bucket, "exports/")) == sorted(
      [f"exports/adafocus-tflite/1/{f}" for f in
       (tflite_model.MODEL_FILE, tflite_model.METADATA_FILE)] +
      [k for k in s3_run.server.keys(bucket, "exports/adafocus/1/")])
  assert "exports/adafocus/1/saved_model.pb" in s3_run.server.keys(
      bucket, "exports/adafocus/1/")


def test_predicts_from_s3_with_a_local_cache_reused(s3_run, tmp_path,
                                                    monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setenv("ADAFOCUS_TFLITE_CACHE", str(cache))
  clip_dir = vf.write_frame_folder(str(tmp_path / "clip"), 12)
  first = predict_lib.Predictor(s3_run.run, backend="tflite")
  assert first.backend == "tflite"
  a = first.predict(first.read(clip_dir), top_k=2)
  cached = sorted(os.listdir(cache))
  assert len(cached) == 1 and cached[0].endswith(".tflite")
  stamp = os.stat(cache / cached[0]).st_mtime_ns

  # The second call converts nothing: it reads the local cache.
  def no_conversion(*args, **kwargs):
    raise AssertionError("converted again instead of reading the cache")
  monkeypatch.setattr(tflite_model, "convert", no_conversion)
  second = predict_lib.Predictor(s3_run.run, backend="tflite")
  b = second.predict(second.read(clip_dir), top_k=2)
  assert sorted(os.listdir(cache)) == cached
  assert os.stat(cache / cached[0]).st_mtime_ns == stamp
  assert len(a.top_k) == 2
  assert [c for c, _, _ in a.top_k] == [c for c, _, _ in b.top_k]
  np.testing.assert_allclose([p for _, _, p in a.top_k],
                             [p for _, _, p in b.top_k], atol=1e-6)
  # Nothing was written into the remote run.
  assert not s3_run.server.keys(s3_run.bucket, "runs/r/tflite/")

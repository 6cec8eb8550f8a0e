"""Entry points that cannot start: one line, a clean status, nothing created.

Real subprocesses of datasets/prepare.py, launch/evaluate.py and
launch/train.py, pointed at an S3 endpoint on a local port that nobody
listens on (or that never answers), at data that is not there, or given a
config file that train refuses.
"""
import os
import socket
import subprocess
import sys
import time

import pytest

from adafocus_tf import io_utils
import helpers

# Far below tensorflow-io's own give-up time (51 s of retries per request
# against a refused connection), far above a TensorFlow import.
FAIL_FAST_S = 30


def _unused_port() -> int:
  """A local port nobody listens on (bound, then released)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _s3_env(endpoint, **extra):
  env = dict(os.environ)
  for key in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "S3_CONNECT_TIMEOUT_MSEC",
              "S3_REQUEST_TIMEOUT_MSEC", io_utils.S3_TIMEOUT_ENV):
    env.pop(key, None)
  env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
             AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
             S3_VERIFY_SSL="0", S3_ENDPOINT=endpoint, **extra)
  return env


def _run(script, args, env, cwd):
  """Runs a script; returns (status, stderr, seconds)."""
  start = time.monotonic()
  proc = subprocess.run([sys.executable, os.path.join(helpers.REPO, script)] + args,
                        env=env, cwd=cwd, capture_output=True, text=True,
                        timeout=300)
  return proc.returncode, proc.stderr, time.monotonic() - start


def _error_lines(stderr):
  assert "Traceback" not in stderr, stderr[-3000:]
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _entry_points(tmp_path):
  """(script, args) of each entry point, every one given s3:// paths."""
  videos, splits = tmp_path / "videos", tmp_path / "splits"
  videos.mkdir()
  splits.mkdir()
  (splits / "minik_classInd.txt").write_text("x\ny\n")
  (splits / "train.txt").write_text("a.mp4 8 0\n")
  return {
      "prepare": ("datasets/prepare.py",
                  ["--dataset=minik", f"--videos={videos}",
                   f"--splits={splits}", "--out=s3://bucket/data",
                   "--workers=1", "--noprogress"]),
      "evaluate": ("launch/evaluate.py",
                   ["--run=s3://bucket/runs/r", "--noprogress"]),
      "train": ("launch/train.py",
                ["--dataset=minik", "--data_dir=s3://bucket/data",
                 f"--workspace={tmp_path / 'ws'}", "--noprogress"]),
  }


@pytest.mark.parametrize("entry", ["prepare", "evaluate", "train"])
def test_unreachable_s3_endpoint_fails_fast(tmp_path, entry):
  endpoint = f"http://127.0.0.1:{_unused_port()}"
  script, args = _entry_points(tmp_path)[entry]
  status, stderr, seconds = _run(script, args, _s3_env(endpoint), tmp_path)
  # 2: an unusable input, before anything was written; never the
  # tensorflow-io abort at exit (134).
  assert status == 2, stderr[-3000:]
  assert _error_lines(stderr) == [
      f"error: S3 endpoint {endpoint} cannot be reached (Connection "
      "refused); check S3_ENDPOINT and that the server is up"]
  assert "prepare the data" not in stderr
  assert seconds < FAIL_FAST_S
  # train made no run directory (nor its workspace).
  assert not (tmp_path / "ws").exists()


def test_silent_s3_endpoint_times_out_as_configured(tmp_path):
  # Connections complete in the kernel's backlog, but nothing ever answers.
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    script, args = _entry_points(tmp_path)["evaluate"]
    env = _s3_env(endpoint, **{io_utils.S3_TIMEOUT_ENV: "1.5"})
    status, stderr, seconds = _run(script, args, env, tmp_path)
  assert status == 2, stderr[-3000:]
  assert _error_lines(stderr) == [
      f"error: S3 endpoint {endpoint} cannot be reached (no answer in 1.5 s; "
      f"{io_utils.S3_TIMEOUT_ENV} sets the limit); check S3_ENDPOINT and "
      "that the server is up"]
  assert seconds < FAIL_FAST_S


def test_s3_client_bounds_keep_what_the_user_set(monkeypatch):
  monkeypatch.setenv("S3_CONNECT_TIMEOUT_MSEC", "1234")
  monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
  monkeypatch.delenv("S3_REQUEST_TIMEOUT_MSEC", raising=False)
  io_utils._bound_s3_client(2.5)  # pylint: disable=protected-access
  assert os.environ["S3_CONNECT_TIMEOUT_MSEC"] == "1234"
  assert os.environ["AWS_RETRY_MODE"] == "adaptive"
  assert os.environ["S3_REQUEST_TIMEOUT_MSEC"] == "60000"
  monkeypatch.delenv("S3_CONNECT_TIMEOUT_MSEC")
  monkeypatch.delenv("AWS_RETRY_MODE")
  io_utils._bound_s3_client(2.5)  # pylint: disable=protected-access
  assert os.environ["S3_CONNECT_TIMEOUT_MSEC"] == "2500"
  assert os.environ["AWS_RETRY_MODE"] == "standard"


@pytest.mark.parametrize("case", ["missing", "empty", "no_val"])
def test_train_without_prepared_data_creates_nothing(tmp_path, case):
  data = tmp_path / "data"
  if case != "missing":
    data.mkdir()
  if case == "no_val":
    helpers.write_split(str(data / "train"), 4)
  expected = {
      "missing": f"error: data_dir {data} does not exist; prepare the data "
                 "with datasets/prepare.py",
      "empty": f"error: {data}/train/meta.json is missing; is {data}/train "
               "a prepared split (datasets/prepare.py)?",
      "no_val": f"error: {data}/val/meta.json is missing; is {data}/val "
                "a prepared split (datasets/prepare.py)?",
  }[case]
  ws = tmp_path / "ws"
  status, stderr, _ = _run(
      "launch/train.py", ["--dataset=minik", f"--data_dir={data}",
                          f"--workspace={ws}", "--noprogress"],
      dict(os.environ), tmp_path)
  assert status == 2, stderr[-3000:]
  assert _error_lines(stderr) == [expected]
  assert not ws.exists()


@pytest.mark.parametrize("case", ["type", "unused"])
def test_train_with_a_refused_config_file_creates_nothing(tmp_path, case):
  bad = tmp_path / "bad.yaml"
  ws = tmp_path / "ws"
  args = [f"--config_file={bad}", f"--workspace={ws}", "--noprogress"]
  if case == "type":
    bad.write_text("model:\n  patch_size: [8, 8]\n")
    expected = (f"error: bad value for model.patch_size from {bad}: [8, 8] "
                "is not of type int")
  else:
    # --batch_size sets the stages V2 trains only: the error is the file's.
    bad.write_text("stage2:\n  discount: 0.5\n")
    args += ["--method=v2", "--batch_size=8"]
    expected = (f"error: config field stage2.discount=0.5 from {bad}: the v2 "
                "model family does not use it; a source may only repeat the "
                "value the config holds, 0.7")
  status, stderr, _ = _run("launch/train.py", args, dict(os.environ),
                           tmp_path)
  # 2: an input refused before anything was written (one line, no usage
  # text); no workspace, so no run directory nor synthetic data.
  assert status == 2, stderr[-3000:]
  assert _error_lines(stderr) == [expected]
  assert "flags:" not in stderr
  assert not ws.exists()

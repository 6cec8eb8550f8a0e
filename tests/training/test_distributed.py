"""Training under MirroredStrategy and MultiWorkerMirroredStrategy.

Each run is a real ``launch/train.py`` process: logical CPU devices must be
configured before TensorFlow starts, and multi-worker training needs one
process per worker talking over loopback.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import helpers
from adafocus_tf.runs import checkpoints

# Every test trains runs in launch/train.py processes.
pytestmark = pytest.mark.training

# Batch norm in inference mode: replicas that normalise by their own half of
# the batch cannot match one device normalising the whole batch.
FLAGS = ["--stage=1", "--max_steps=3", "--noevaluate", "--noprogress",
         "--deterministic"] + helpers.tiny_flags(
             model__train_batchnorm="false", model__dropout="0.5")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=48, num_val=8)


def _final(run):
  return helpers.checkpoint_tensors(checkpoints.latest_stage_checkpoint(run, 1))


def _assert_same(a, b, atol):
  assert a.keys() == b.keys() and a
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=atol, err_msg=k)


def test_mirrored_two_cpus_equals_default_strategy(data_dir, tmp_path):
  single = str(tmp_path / "single")
  mirrored = str(tmp_path / "mirrored")
  helpers.run_train(FLAGS + [f"--data_dir={data_dir}", f"--run_dir={single}"])
  proc = helpers.run_train(FLAGS + [f"--data_dir={data_dir}",
                                    f"--run_dir={mirrored}",
                                    "--strategy=mirrored", "--cpu_devices=2"])
  assert "2 replica(s)" in proc.stderr
  a, b = _final(single), _final(mirrored)
  _assert_same(a, b, atol=1e-5)
  init = str(tmp_path / "init")
  helpers.run_train(FLAGS[:1] + ["--max_steps=1"] + FLAGS[2:] +
                    [f"--data_dir={data_dir}", f"--run_dir={init}"])
  moved = [k for k in a if not np.allclose(a[k], _final(init)[k])]
  assert moved, "three steps must change the weights after one step"


# V2 (docs/METHOD.md V2-4): both branches, the policy trained through the
# crop; batch norm (also the policy's and the classifier's) on running
# statistics, as above.
V2_FLAGS = ["--stage=1", "--max_steps=2", "--noevaluate", "--noprogress",
            "--deterministic"] + helpers.tiny_v2_flags(
                model__train_batchnorm="false")


def test_v2_mirrored_two_cpus_equals_default_strategy(data_dir, tmp_path):
  single = str(tmp_path / "single")
  mirrored = str(tmp_path / "mirrored")
  helpers.run_train(V2_FLAGS + [f"--data_dir={data_dir}",
                                f"--run_dir={single}"])
  proc = helpers.run_train(V2_FLAGS + [f"--data_dir={data_dir}",
                                       f"--run_dir={mirrored}",
                                       "--strategy=mirrored",
                                       "--cpu_devices=2"])
  assert "2 replica(s)" in proc.stderr
  a, b = _final(single), _final(mirrored)
  assert any(k.startswith("model/policy/") for k in a)
  _assert_same(a, b, atol=1e-5)


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_on_loopback_finish_with_identical_weights(data_dir,
                                                               tmp_path):
  run = str(tmp_path / "run")
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = []
  for i in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                   "index": i}}))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(helpers.REPO, "launch", "train.py")] +
        FLAGS + [f"--data_dir={data_dir}", f"--run_dir={run}",
                 "--strategy=multi_worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=600))
    finally:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  assert "2 replica(s)" in outs[0][1]
  chief = _final(run)
  scratch = os.path.join(run, "stage1", "checkpoints-scratch", "worker1")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  other = helpers.checkpoint_tensors(tf.train.latest_checkpoint(scratch))
  assert tf.train.latest_checkpoint(scratch).endswith("ckpt-3")
  _assert_same(chief, other, atol=0)
  # Only the chief writes the run's config.
  assert os.path.exists(os.path.join(run, "config.json"))

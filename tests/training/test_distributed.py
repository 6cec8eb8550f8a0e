"""Training under MirroredStrategy and MultiWorkerMirroredStrategy.

Each run is a real process (``launch/train.py``, or for every family at
once ``distributed_families.py``): logical CPU devices must be configured
before TensorFlow starts, and multi-worker training needs one process per
worker talking over loopback with a real TF_CONFIG. Two TensorFlow
processes on a 2-core machine are slow, so each multi-worker behaviour is
one job: every stage of every family, a killed worker and the resume, a
peer that never starts.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import distributed_families
import helpers
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.training import cluster
from adafocus_tf.training import strategy as strategy_lib

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


def _tf_config(workers, index):
  return json.dumps({"cluster": {"worker": workers},
                     "task": {"type": "worker", "index": index}})


def _start(command, tf_config=None):
  """Starts ``command`` (a Python script and its arguments) as a user would,
  with ``TF_CONFIG`` when given."""
  env = helpers.user_environment()
  if tf_config:
    env["TF_CONFIG"] = tf_config
  return subprocess.Popen([sys.executable] + command, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _finish(procs, timeout=900):
  """Waits for ``procs``; their stderr, after checking that all succeeded."""
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[1])
  finally:
    for p in procs:
      p.kill()
  for p, err in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  return outs


def _train_py(args):
  return [os.path.join(helpers.REPO, "launch", "train.py")] + args


def _relative_files(root):
  """Files under ``root`` relative to it, sorted, TensorBoard event files
  named by their directory (their names hold the host, process and time)."""
  found = []
  for dirpath, _, names in os.walk(root):
    for name in names:
      rel = os.path.relpath(os.path.join(dirpath, name), root)
      if "tfevents" in name:
        rel = os.path.join(os.path.dirname(rel), "EVENTS")
      found.append(rel)
  return sorted(found)


# Every stage of every family (distributed_families.py), two steps each,
# by two workers and by one with the same global batches: the stages each
# trains.
FAMILY_STAGES = {"v1": [0, 1, 2, 3], "two_stream": [0, 1, 2, 3],
                 "v2": [0, 1], "v2_tsm": [0, 1], "uni": [0, 1],
                 "uni_tsm": [0, 1], "uni_x3d": [1]}
# Two workers sum their replicas' gradients, losses and PPO return
# statistics in another order than one device sums its batch's: float32
# rounding, amplified by two optimizer steps (measured: at most 1e-6, in
# the PPO actor's GRU).
FAMILY_ATOL = 1e-5
POLICY_OBJECTS = ("model", "actor", "critic")


@pytest.mark.parametrize("families", [("v1", "two_stream", "v2", "v2_tsm"),
                                      ("uni", "uni_tsm", "uni_x3d")],
                         ids=["v1_two_stream_v2", "uni"])
def test_every_stage_of_every_family_on_two_workers_equals_one(tmp_path,
                                                               families):
  """Stages 0-3 of V1 and of the two-stream model, the stages of V2, V2-TSM
  and the Uni-AdaFocus families under MultiWorkerMirroredStrategy (two
  processes on loopback, real TF_CONFIG) train with the workers' weights
  equal to the bit, and end with the weights one worker trains on the
  same global batches; the second worker writes only its scratch
  checkpoints (every other file of the run is the chief's)."""
  # One global batch of videos: every step of either run sees all of them.
  data = helpers.write_dataset(
      str(tmp_path / "data"), num_train=distributed_families.GLOBAL_BATCH,
      num_val=8)
  driver = os.path.join(helpers.TESTS, "training", "distributed_families.py")
  workers = cluster.loopback_addresses(2)
  procs = [_start([driver, data, str(tmp_path / "two"), "multi_worker",
                   *families], _tf_config(workers, i)) for i in range(2)]
  procs.append(_start([driver, data, str(tmp_path / "one"), "default",
                       *families]))
  _finish(procs)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for family in families:
    two, one = str(tmp_path / "two" / family), str(tmp_path / "one" / family)
    stages = sorted(int(d[len("stage"):]) for d in os.listdir(one)
                    if d.startswith("stage"))
    assert stages == FAMILY_STAGES[family], family
    for stage in stages:
      chief = checkpoints.latest_stage_checkpoint(two, stage)
      assert chief.endswith("ckpt-2"), chief
      a = helpers.checkpoint_tensors(chief, POLICY_OBJECTS)
      _assert_same(a, helpers.checkpoint_tensors(
          checkpoints.latest_stage_checkpoint(one, stage), POLICY_OBJECTS),
                   atol=FAMILY_ATOL)
      scratch = os.path.join(two, f"stage{stage}", "checkpoints-scratch",
                             "worker1")
      _assert_same(a, helpers.checkpoint_tensors(
          tf.train.latest_checkpoint(scratch), POLICY_OBJECTS), atol=0)
    # Only the chief writes: the run holds what a single worker's holds
    # (one event file per stage, config, classes, done.json, checkpoints)
    # and the second worker's scratch checkpoints.
    theirs = [f for f in _relative_files(two) if "checkpoints-scratch" not in f]
    assert theirs == _relative_files(one), family


# A worker killed mid-epoch: two epochs of 6 steps, a checkpoint every 2.
KILL_FLAGS = ["--stage=1", "--max_steps=12", "--checkpoint_every=2",
              "--noevaluate", "--noprogress", "--deterministic"] + \
    helpers.tiny_flags(model__train_batchnorm="false", model__dropout="0.5")
# Seconds within which the surviving worker stops: TensorFlow's
# coordination service misses the dead worker's heartbeats for 10 s, then
# aborts the collectives; the rest is this loaded machine's slack.
STOP_WITHIN_S = 90
_OPTIMIZER_STEPS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def test_killed_worker_stops_the_job_and_the_same_command_resumes(
    data_dir, tmp_path):
  """Worker 1 killed after the chief's step-2 checkpoint: the chief stops
  within STOP_WITHIN_S with one error line; the same command on both
  workers resumes from the chief's last checkpoint and finishes the stage,
  every step taken once (the optimizer's count), the workers' weights
  equal to the bit."""
  run = str(tmp_path / "run")
  command = _train_py(KILL_FLAGS + [f"--data_dir={data_dir}",
                                    f"--run_dir={run}",
                                    "--strategy=multi_worker"])
  workers = cluster.loopback_addresses(2)
  procs = [_start(command, _tf_config(workers, i)) for i in range(2)]
  second = os.path.join(run, "stage1", "checkpoints", "ckpt-2.index")
  try:
    deadline = time.monotonic() + 600
    while not os.path.exists(second):
      assert procs[0].poll() is None and time.monotonic() < deadline, (
          procs[0].communicate()[1][-4000:])
      time.sleep(0.05)
    procs[1].kill()
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=STOP_WITHIN_S)
    assert time.monotonic() - killed < STOP_WITHIN_S
  finally:
    for p in procs:
      p.kill()
  assert procs[0].returncode == 2, err[-4000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, err
  assert "a worker of the multi-worker job stopped" in errors[0], err
  assert "Run the same command on every worker" in errors[0], err
  assert "Traceback" not in err
  last = checkpoints.latest_stage_checkpoint(run, 1)
  assert not last.endswith("ckpt-12"), "the kill came too late"
  # The same command on every worker.
  outs = _finish([_start(command, _tf_config(workers, i)) for i in range(2)])
  for out in outs:
    assert f"resumed stage 1 at step {checkpoints.step_of(last)}" in out
  final = checkpoints.latest_stage_checkpoint(run, 1)
  assert final.endswith("ckpt-12")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  assert tf.train.load_checkpoint(final).get_tensor(_OPTIMIZER_STEPS) == 12
  scratch = tf.train.latest_checkpoint(
      os.path.join(run, "stage1", "checkpoints-scratch", "worker1"))
  assert scratch.endswith("ckpt-12")
  _assert_same(helpers.checkpoint_tensors(final),
               helpers.checkpoint_tensors(scratch), atol=0)
  assert os.path.exists(run_dir.done_path(run, 1))


def test_tf_config_naming_an_address_twice_is_refused(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", _tf_config(
      ["127.0.0.1:2222", "127.0.0.1:2223", "127.0.0.1:2222"], 1))
  with pytest.raises(cluster.ClusterError,
                     match=r"names 127\.0\.0\.1:2222 twice \(worker 0 and "
                     r"worker 2\)"):
    strategy_lib.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", _tf_config(["127.0.0.1:2222"], 1))
  with pytest.raises(cluster.ClusterError, match="task worker 1 is not in"):
    strategy_lib.make_strategy("multi_worker")


# --cluster_timeout of the unreachable-peer test, and the seconds the
# command may take in all (a TensorFlow start on this loaded machine).
JOIN_TIMEOUT_S = 5
REFUSED_WITHIN_S = 120


def test_unreachable_peer_is_named_within_the_timeout(data_dir, tmp_path):
  run = str(tmp_path / "run")
  workers = cluster.loopback_addresses(2)
  start = time.monotonic()
  proc = _start(_train_py(FLAGS + [f"--data_dir={data_dir}",
                                   f"--run_dir={run}",
                                   "--strategy=multi_worker",
                                   f"--cluster_timeout={JOIN_TIMEOUT_S}"]),
                _tf_config(workers, 0))
  try:
    _, err = proc.communicate(timeout=REFUSED_WITHIN_S)
  finally:
    proc.kill()
  assert time.monotonic() - start < REFUSED_WITHIN_S
  # Ended by its timer: TensorFlow's wait cannot be interrupted
  # (training/join_watchdog.py).
  assert proc.returncode == 1, err[-4000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert errors == [
      f"error: the multi-worker cluster did not form within "
      f"{JOIN_TIMEOUT_S} s (--cluster_timeout): no answer from worker 1 "
      f"({workers[1]}) of TF_CONFIG"], err
  assert not os.path.exists(run)

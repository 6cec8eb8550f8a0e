"""One trainer per run directory (issue 23): the lock, the lease, readers.

Real processes throughout: a lock held here is tried from a subprocess, a
real launch/train.py is refused, two real trainers start together, and an
``s3://`` run's lease lives on the local S3 server.
"""
import json
import logging
import os
import subprocess
import sys
import time

import adafocus_tf  # pylint: disable=unused-import
import pytest

import helpers
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_lock

# A process that takes the lock of argv[1], says so, and sleeps until
# killed (os._exit: it never releases by itself).
_HOLD = """
import sys, time
from adafocus_tf.runs import run_lock
lock = run_lock.RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""
# Tries the lock of argv[1]; prints what happened.
_TRY = """
import sys
from adafocus_tf.runs import run_lock
try:
  run_lock.RunLock(sys.argv[1]).acquire()
  print("acquired")
except run_lock.RunLockedError as e:
  print("refused:", e)
"""


def _python(code, *args, **kwargs):
  return subprocess.run([sys.executable, "-c", code] + list(args),
                        capture_output=True, text=True, timeout=120, **kwargs)


def _holding(run):
  proc = subprocess.Popen([sys.executable, "-c", _HOLD, run],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def _dead_pid():
  """The pid of a process of this host that has ended."""
  proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  return int(proc.stdout)


def _tree(path):
  """{relative path: (size, mtime_ns)} of every file under ``path``."""
  out = {}
  for root, _, names in os.walk(path):
    for n in names:
      p = os.path.join(root, n)
      st = os.stat(p)
      out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
  return out


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path):
  run = str(tmp_path / "run")
  with run_lock.RunLock(run):
    holder = json.load(open(os.path.join(run, run_lock.HOLDER_FILE)))
    assert holder["pid"] == os.getpid()
    out = _python(_TRY, run).stdout
    assert out.startswith(f"refused: {run} is being trained by pid "
                          f"{os.getpid()} on host "), out
    assert "wait for it, or train into another --run_dir" in out
    assert run_lock.holder(run).pid == os.getpid()
  # Released: the holder record goes, the next trainer gets it.
  assert not os.path.exists(os.path.join(run, run_lock.HOLDER_FILE))
  assert run_lock.holder(run) is None
  assert _python(_TRY, run).stdout.strip() == "acquired"


def test_a_killed_trainers_lock_is_free_and_reported(tmp_path, caplog):
  run = str(tmp_path / "run")
  proc = _holding(run)
  proc.kill()  # SIGKILL: no release; the kernel frees the lock
  proc.wait()
  assert os.path.exists(os.path.join(run, run_lock.HOLDER_FILE))
  assert run_lock.holder(run) is None
  with caplog.at_level(logging.INFO):
    with run_lock.RunLock(run):
      pass
  assert f"the previous trainer (pid {proc.pid} " in caplog.text


def test_a_stale_lock_says_how_to_clear_it(tmp_path):
  run = str(tmp_path / "run")
  holder = _holding(run)
  try:
    # The recorded trainer is gone, yet the lock is held (here by another
    # process): what a child that inherited the lock would leave.
    record = json.load(open(os.path.join(run, run_lock.HOLDER_FILE)))
    record["pid"] = _dead_pid()
    with open(os.path.join(run, run_lock.HOLDER_FILE), "w") as f:
      json.dump(record, f)
    with pytest.raises(run_lock.RunLockedError) as e:
      run_lock.RunLock(run).acquire()
    lock = os.path.join(run, run_lock.LOCK_FILE)
    assert "is no longer running" in str(e.value)
    assert (f"clear the stale lock: rm {lock} "
            f"{os.path.join(run, run_lock.HOLDER_FILE)}") in str(e.value)
  finally:
    holder.kill()
    holder.wait()


def test_readers_say_that_the_run_is_being_trained(tmp_path, caplog):
  run = helpers.write_fake_run(str(tmp_path), {1: ([4], True)})
  with run_lock.RunLock(run):
    with caplog.at_level(logging.WARNING):
      weights = final_weights.resolve(run)
  assert weights.stage == 1
  assert (f"{run} is being trained right now (pid {os.getpid()} on host "
          in caplog.text)


def test_train_refuses_a_held_run_and_writes_nothing(tmp_path):
  data_dir = helpers.write_dataset(str(tmp_path / "data"), num_train=16,
                                   num_val=8)
  run = str(tmp_path / "run")
  with run_lock.RunLock(run):
    before = _tree(run)
    proc = helpers.run_train(
        ["--stage=1", "--noprogress", f"--data_dir={data_dir}",
         f"--run_dir={run}"] + helpers.tiny_flags(), check=False)
    assert _tree(run) == before
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(
      f"error: {run} is being trained by pid {os.getpid()} on host "), (
          proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr


@pytest.mark.training
def test_two_trainers_started_together_one_refused(tmp_path):
  data_dir = helpers.write_dataset(str(tmp_path / "data"), num_train=16,
                                   num_val=8)
  run = str(tmp_path / "run")
  args = [sys.executable, os.path.join(helpers.REPO, "launch", "train.py"),
          "--stage=1", "--noprogress", "--noevaluate", f"--data_dir={data_dir}",
          f"--run_dir={run}"] + helpers.tiny_flags(stage1__epochs=1)
  procs = [subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], [o[1][-2000:] for o in outs]
  winner, loser = ((procs[0], procs[1]) if procs[0].returncode == 0
                   else (procs[1], procs[0]))
  loser_err = outs[procs.index(loser)][1]
  errors = [l for l in loser_err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and (
      f"is being trained by pid {winner.pid} " in errors[0]), loser_err
  # The winner trained the stage alone, to its end, and let go of the run.
  assert os.path.exists(os.path.join(run, "stage1", "done.json"))
  assert not os.path.exists(os.path.join(run, run_lock.HOLDER_FILE))
  assert not os.path.exists(os.path.join(run, "config_history.json"))


# -- s3:// ---------------------------------------------------------------------
def _lease(s3_server, bucket, run_key="run"):
  client = s3_server.client()
  body = client.get_object(Bucket=bucket,
                           Key=f"{run_key}/{run_lock.LEASE_FILE}")["Body"]
  return json.loads(body.read())


def _put_lease(s3_server, bucket, record):
  s3_server.client().put_object(Bucket=bucket,
                                Key=f"run/{run_lock.LEASE_FILE}",
                                Body=json.dumps(record).encode())


def test_an_s3_run_is_held_by_a_renewed_lease(s3_server):
  bucket = s3_server.make_bucket("lease")
  run = f"s3://{bucket}/run"
  lock = run_lock.RunLock(run, lease_seconds=3.0)
  lock.acquire()
  try:
    first = _lease(s3_server, bucket)
    assert first["pid"] == os.getpid() and first["token"]
    time.sleep(1.5)  # a renewal every lease_seconds / 3
    assert _lease(s3_server, bucket)["expires"] > first["expires"]
    assert run_lock.holder(run).token == first["token"]
    out = _python(_TRY, run, env={**os.environ}).stdout
    assert out.startswith(f"refused: {run} is being trained by pid "
                          f"{os.getpid()} "), out
    assert f"delete {run}/{run_lock.LEASE_FILE}" in out
  finally:
    lock.release()
  assert s3_server.keys(bucket, "run/") == []
  assert run_lock.holder(run) is None


def test_s3_leases_of_gone_or_expired_holders_are_taken_over(s3_server,
                                                             caplog):
  bucket = s3_server.make_bucket("lease")
  run = f"s3://{bucket}/run"
  host = run_lock.Holder.of_this_process().host
  dead_pid = _dead_pid()
  now = time.time()
  stale = [
      # This host, a process that no longer runs: stale at once.
      {"host": host, "pid": dead_pid, "since": now, "command": "x",
       "token": "a", "expires": now + 600},
      # Another host that stopped renewing.
      {"host": "elsewhere", "pid": 1, "since": now - 900, "command": "x",
       "token": "b", "expires": now - 1},
  ]
  for record in stale:
    _put_lease(s3_server, bucket, record)
    with caplog.at_level(logging.WARNING):
      with run_lock.RunLock(run):
        assert _lease(s3_server, bucket)["pid"] == os.getpid()
    assert f"taking over the lease of pid {record['pid']} " in caplog.text
  # Another host's lease that is still renewed: refused, with the wait.
  _put_lease(s3_server, bucket, {"host": "elsewhere", "pid": 7, "since": now,
                                 "command": "adafocus-train", "token": "c",
                                 "expires": time.time() + 120})
  with pytest.raises(run_lock.RunLockedError,
                     match=r"by pid 7 on host elsewhere .*Its lease expires "
                           r"in 1[01]\d s unless renewed"):
    run_lock.RunLock(run).acquire()
  assert _lease(s3_server, bucket)["token"] == "c"

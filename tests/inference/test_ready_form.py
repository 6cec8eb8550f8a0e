"""The predictor's ready form and its measured ``auto`` backend (issue 27).

On copies of one TINY AdaFocusV2 run (``helpers.copy_of_tiny_v2_run``):
the form is built once, reused without building the Keras model, keyed by
the weights, kept locally for a read-only run and rebuilt when damaged;
``auto`` measures the backends once per machine and a forced backend never
does.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.inference import backend_calibration
from adafocus_tf.inference import loading
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import ready_form
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.training

NAMES = ["v0", "v1"]


@pytest.fixture
def run(tmp_path, monkeypatch):
  """A fresh copy of the TINY V2 run; the local cache under tmp_path."""
  monkeypatch.setenv("ADAFOCUS_TFLITE_CACHE",
                     str(tmp_path / "cache" / "tflite"))
  return helpers.copy_of_tiny_v2_run(tmp_path / "run")[1]


def _frames(run_path):
  cfg = trained_run.TrainedRun(run_path).cfg
  s = cfg.data.frame_size
  rng = np.random.default_rng(3)
  return rng.normal(size=[len(NAMES), cfg.data.num_frames, s, s, 3]).astype(
      np.float32)


def _forbid_building(monkeypatch) -> None:
  """Makes building the Keras recognizer raise."""
  def refuse(*args, **kwargs):
    raise AssertionError("built the Keras recognizer")
  monkeypatch.setattr(loading, "from_checkpoints", refuse)


def _form_dirs(parent):
  return sorted(n for n in os.listdir(parent) if n.startswith("tf-"))


def test_the_form_is_built_once_and_reused(run, monkeypatch):
  frames = _frames(run)
  built = predict_lib.Predictor(run, backend="tf")
  want = built.exit_outputs(frames, NAMES)
  parent = os.path.join(run, ready_form.DIRECTORY)
  [name] = _form_dirs(parent)
  model_file = os.path.join(parent, name, "saved_model.pb")
  mtime = os.stat(model_file).st_mtime_ns

  with monkeypatch.context() as m:
    _forbid_building(m)
    loaded = predict_lib.Predictor(run, backend="tf")
    got = loaded.exit_outputs(frames, NAMES)
    np.testing.assert_array_equal(loaded.step_macs, built.step_macs)
  assert os.stat(model_file).st_mtime_ns == mtime
  assert _form_dirs(parent) == [name]
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
  # The form equals the Keras recognizer run directly (built on demand).
  rec = loaded.recognizer
  outputs = rec({"frames": tf.constant(frames),
                 "seed": tf.zeros([len(NAMES), 2], tf.int64)}, "policy")
  np.testing.assert_allclose(got[0], rec.exit_probs(outputs), atol=1e-5)
  np.testing.assert_allclose(
      got[1], exit_rule.step_confidences(rec, outputs), atol=1e-5)
  frames_of, regions = rec.patch_regions(got[2])
  assert frames_of is None
  assert ready_form.open_form(loaded.run, "policy", ready_form.TF
                              ).patch_regions(got[2])[0] is None
  np.testing.assert_allclose(
      ready_form.open_form(loaded.run, "policy", ready_form.TF
                           ).patch_regions(got[2])[1], regions, atol=1e-6)


# Prints the backend of a predictor on a prepared run, then the training
# libraries its start loaded.
_TRAINING_LIBRARIES_LOADED = """
import sys
import adafocus_tf
from adafocus_tf.inference import predictor
print(predictor.Predictor(sys.argv[1]).backend)
print(*[m for m in ("tf_agents", "tensorflow_probability") if m in sys.modules])
"""


def test_export_prepares_the_run_for_prediction(run, monkeypatch):
  # ``adafocus-export --format=predictor``: the first prediction's work
  # done ahead of time; the next predictor builds nothing.
  proc = helpers.start_launch("export.py", [f"--run={run}",
                                            "--format=predictor"])
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert (f"prepared {run} for prediction on this machine: backend hybrid"
          in out), out
  parent = os.path.join(run, ready_form.DIRECTORY)
  [hybrid] = [n for n in os.listdir(parent) if n.startswith("hybrid-")]
  with monkeypatch.context() as m:
    _forbid_building(m)
    assert predict_lib.Predictor(run).backend == "hybrid"
  # Nor does a fresh process load the training libraries for it (half a
  # second of every warm start).
  loaded = subprocess.run(
      [sys.executable, "-c", _TRAINING_LIBRARIES_LOADED, run],
      capture_output=True, text=True, timeout=600,
      env=helpers.user_environment())
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  assert loaded.stdout.split() == ["hybrid"], loaded.stdout
  # A form saves the variables its compiled pass reads: the hybrid's none
  # of the glance network (its TFLite model runs it).
  model = predict_lib.Predictor(run, backend="tf").recognizer.model
  [whole] = _form_dirs(parent)
  saved = {name: len(tf.saved_model.load(os.path.join(parent, name)
                                         ).model_variables)
           for name in (hybrid, whole)}
  glance = len(model.glance.trainable_variables)
  assert 0 < saved[hybrid] <= saved[whole] - glance
  assert saved[whole] <= len(model.variables)


def test_the_key_follows_the_weights(run):
  frames = _frames(run)
  before = predict_lib.Predictor(run, backend="tf").exit_outputs(
      frames, NAMES)[0]
  parent = os.path.join(run, ready_form.DIRECTORY)
  [old] = _form_dirs(parent)
  helpers.rewrite_checkpoint(final_weights.resolve(run).model_checkpoint)
  after = predict_lib.Predictor(run, backend="tf")
  [new] = _form_dirs(parent)  # the outdated form pruned
  assert new != old
  got = after.exit_outputs(frames, NAMES)[0]
  assert np.max(np.abs(got - before)) > 1e-3, "the weights must matter"


def test_a_read_only_run_caches_locally(run, monkeypatch):
  frames = _frames(run)
  want = predict_lib.Predictor(run, backend="tf").exit_outputs(frames, NAMES)
  shutil.rmtree(os.path.join(run, ready_form.DIRECTORY))
  mode = os.stat(run).st_mode
  os.chmod(run, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
  try:
    if os.access(run, os.W_OK):
      # Root writes anyway: answer as a read-only mount would.
      real = os.access
      monkeypatch.setattr(os, "access", lambda p, m, **kw: (
          False if os.path.abspath(p) == os.path.abspath(run) and m & os.W_OK
          else real(p, m, **kw)))
    got = predict_lib.Predictor(run, backend="tf").exit_outputs(frames,
                                                                NAMES)
    assert not os.path.exists(os.path.join(run, ready_form.DIRECTORY))
    local = ready_form.local_cache_dir()
    assert local.startswith(os.path.dirname(os.environ[
        "ADAFOCUS_TFLITE_CACHE"]))
    assert len(_form_dirs(local)) == 1
    with monkeypatch.context() as m:
      _forbid_building(m)
      again = predict_lib.Predictor(run, backend="tf").exit_outputs(frames,
                                                                    NAMES)
  finally:
    os.chmod(run, mode)
  for a, b, c in zip(want, got, again):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(c, b)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "no_info"])
def test_a_damaged_form_is_rebuilt(run, monkeypatch, damage):
  frames = _frames(run)
  want = predict_lib.Predictor(run, backend="tf").exit_outputs(frames, NAMES)
  parent = os.path.join(run, ready_form.DIRECTORY)
  [name] = _form_dirs(parent)
  form = os.path.join(parent, name)
  model_file = os.path.join(form, "saved_model.pb")
  if damage == "truncated":
    with open(model_file, "r+b") as f:
      f.truncate(100)
  elif damage == "garbled":  # same size: only loading it can tell
    size = os.path.getsize(model_file)
    with open(model_file, "wb") as f:
      f.write(b"\x07" * size)
  else:  # a form whose info file never came
    os.remove(os.path.join(form, ready_form.INFO_FILE))
  # A build killed before its rename left a temporary directory behind.
  dead = os.path.join(parent, f".tmp-dead-{name}")
  os.makedirs(dead)
  old = os.path.getmtime(dead) - 2 * ready_form.STALE_TEMP_SECONDS
  os.utime(dead, (old, old))
  built = []
  real = loading.from_checkpoints
  monkeypatch.setattr(loading, "from_checkpoints",
                      lambda *a, **k: built.append(1) or real(*a, **k))
  got = predict_lib.Predictor(run, backend="tf").exit_outputs(frames, NAMES)
  assert built == [1]
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
  info = json.load(open(os.path.join(form, ready_form.INFO_FILE)))
  assert info["key"] == name and os.path.getsize(model_file) > 100
  assert not os.path.exists(dead)


def test_auto_measures_once_per_machine_and_forced_never(run, monkeypatch):
  monkeypatch.setenv(backend_calibration.MODE_ENV, backend_calibration.MEASURE)
  assert backend_calibration.BATCH_SIZES == (1, 8)
  measured = []

  def fake(calls):
    # The real calls run (each backend works); the times are made up, per
    # call: the hybrid faster for one video, tf for a batch of 8.
    for call in calls.values():
      call()
    measured.append(sorted(calls))
    return ({"hybrid": 1.0, "tf": 2.0} if len(measured) % 2 else
            {"hybrid": 16.0, "tf": 8.0})
  monkeypatch.setattr(backend_calibration, "measure", fake)
  auto = predict_lib.Predictor(run)
  # The whole TFLite model cannot run AdaFocusV2: hybrid and tf measured,
  # at each batch size.
  assert measured == [["hybrid", "tf"]] * 2
  assert auto.backends == {1: "hybrid", 8: "tf"}
  assert auto.backend == "hybrid" and "sub-pixel" in auto.backend_note
  assert ("tf measured faster on this CPU than hybrid at 8 video(s) per "
          "call") in auto.backend_note
  # A call runs on the choice of the nearer batch size measured: 8 videos
  # give what tf gives, 1 what the hybrid gives.
  one = _frames(run)[:1]
  eight = np.concatenate([_frames(run)] * 4)
  names = [f"v{i}" for i in range(8)]
  forced = {b: predict_lib.Predictor(run, backend=b) for b in ("hybrid", "tf")}
  for got, want in zip(auto.exit_outputs(eight, names),
                       forced["tf"].exit_outputs(eight, names)):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(auto.exit_outputs(one, names[:1]),
                       forced["hybrid"].exit_outputs(one, names[:1])):
    np.testing.assert_array_equal(got, want)
  assert predict_lib.Predictor(run).backends == {1: "hybrid", 8: "tf"}
  for backend, p in forced.items():
    assert p.backend == backend and p.backends == {1: backend}
  assert len(measured) == 2
  [path] = [n for n in os.listdir(os.path.join(run, ready_form.DIRECTORY))
            if n.startswith("backend-")]
  record = json.load(open(os.path.join(run, ready_form.DIRECTORY, path)))
  assert record["backends"] == {"1": "hybrid", "8": "tf"}
  assert record["seconds"]["8"] == {"hybrid": 2.0, "tf": 1.0}
  # ``prepare`` measures again; another CPU model too.
  assert predict_lib.prepare(run) == {1: "hybrid", 8: "tf"}
  assert len(measured) == 4
  monkeypatch.setattr(backend_calibration, "cpu_model", lambda: "other CPU")
  assert predict_lib.Predictor(run).backends == {1: "hybrid", 8: "tf"}
  assert len(measured) == 6
  # In order (the test suite's setting): the first that runs, unmeasured.
  monkeypatch.setenv(backend_calibration.MODE_ENV, backend_calibration.ORDER)
  in_order = predict_lib.Predictor(run)
  assert in_order.backends == {1: "hybrid"}
  assert "sub-pixel" in in_order.backend_note
  assert len(measured) == 6


def test_a_call_runs_on_the_nearest_batch_size_measured():
  nearest = [backend_calibration.for_batch((1, 8), n) for n in range(1, 12)]
  assert nearest == [1, 1] + [8] * 9
  assert backend_calibration.for_batch((1,), 64) == 1
  assert backend_calibration.describe({1: "tf", 8: "tf"}) == "tf"
  assert (backend_calibration.describe({8: "tf", 1: "hybrid"})
          == "hybrid at 1 video per call, tf at 8")


def test_a_near_tie_keeps_the_preferred_order():
  order = ("tflite", "hybrid", "tf")
  assert backend_calibration.fastest(
      {"tflite": 1.0, "hybrid": 0.95, "tf": 0.5}, order) == "tf"
  assert backend_calibration.fastest(
      {"tflite": 1.0, "hybrid": 0.95, "tf": 0.92}, order) == "tflite"
  assert backend_calibration.fastest({"hybrid": 1.0, "tf": 1.2},
                                     order) == "hybrid"

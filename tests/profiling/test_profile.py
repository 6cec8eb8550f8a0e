"""Profiling: training-step windows and launch/profile.py on a tiny run."""
import glob
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import helpers
from adafocus_tf.data import pipeline
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.policy import frame_stack
from adafocus_tf.profiling import inference_parts
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import trained_run


def _xplanes(logdir):
  return sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*",
                                       "*.xplane.pb")))


def _event_names(path):
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  return {m.name for plane in space.planes
          for m in plane.event_metadata.values()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(cfg, run) of a run trained for one epoch of stages 1 and 2."""
  return helpers.train_tiny_run(tmp_path_factory.mktemp("profile"), (1, 2))


@pytest.fixture(scope="module")
def tiny_two_stream(tmp_path_factory):
  """(cfg, run) of a two-stream run trained for one epoch of stages 1, 2."""
  return helpers.train_tiny_run(tmp_path_factory.mktemp("profile2"), (1, 2),
                                **helpers.two_stream_overrides())


def test_profile_steps_are_parsed_and_checked():
  assert step_profiler.parse_steps("20,25") == (20, 25)
  assert step_profiler.parse_steps(" 7 ") == (7, 7)
  assert step_profiler.parse_steps("") is None and step_profiler.parse_steps(
      None) is None
  for bad in ("25,20", "0,3", "a,b", "1,2,3"):
    with pytest.raises(ValueError, match="A,B"):
      step_profiler.parse_steps(bad)


def test_step_profiler_traces_exactly_its_window(tmp_path):
  logdir = str(tmp_path / "logs")
  double = tf.function(lambda x: tf.image.crop_and_resize(
      x, [[0.0, 0.0, 0.5, 0.5]], [0], [4, 4]))
  frames = tf.zeros([1, 8, 8, 3])
  active = []
  with step_profiler.StepProfiler(logdir, "2,3",
                              host_tracer_level=3) as profiler:
    profiler.step(0)
    for step in range(1, 6):
      active.append(profiler.active)
      with profiler.trace(step):
        double(frames)
      profiler.step(step)
  # Steps 2 and 3 ran while profiling; the profile was written after 3.
  assert active == [False, True, True, False, False]
  (path,) = _xplanes(logdir)
  assert any("CropAndResize" in n for n in _event_names(path))
  # Disabled, or resumed past the window: nothing is written.
  for steps, resumed_at in ((None, 0), ("2,3", 5)):
    other = str(tmp_path / f"other-{resumed_at}")
    profiler = step_profiler.StepProfiler(other, steps)
    profiler.step(resumed_at)
    profiler.step(resumed_at + 1)
    profiler.stop()
    assert not profiler.active and not _xplanes(other)


def _by_hand(cfg, recognizer, batch):
  """Policy offsets and per-step probabilities from the model's own calls."""
  model, policy = recognizer.model, recognizer.policy
  if "frames" in batch:
    frames = batch["frames"]
    offsets = policy.offsets(model.glance_features(frames)[0])
    return offsets, model.classifier.step_probs(model(frames, offsets))
  maps, _ = model.glance_features(batch["glance_frames"])
  offsets = policy.offsets(frame_stack.stack_frames(maps))
  logits = model(batch["glance_frames"], batch["focus_frames"], offsets)
  return offsets, tf.nn.softmax(logits)


@pytest.mark.training
@pytest.mark.parametrize("family", ["tiny", "tiny_two_stream"])
def test_inference_parts_compute_the_model_with_its_policy(family, request):
  cfg, run = request.getfixturevalue(family)
  recognizer = trained_run.TrainedRun(run).recognizer()
  assert recognizer.policy is not None
  batch = next(iter(pipeline.make_dataset(
      cfg.data, os.path.join(cfg.data.data_dir, "val"), False, 4)))
  parts = inference_parts.inference_parts(recognizer)
  assert [name for name, _ in parts] == list(recognizer_lib.STAGES)
  timings = {}
  out = inference_parts.run_parts(parts, batch, step_num=1, timings=timings)
  offsets, probs = _by_hand(cfg, recognizer, batch)
  np.testing.assert_array_equal(out["offsets"], offsets)
  np.testing.assert_allclose(out["probs"], probs, atol=1e-5)
  assert sorted(timings) == sorted(recognizer_lib.STAGES)
  # Centre patches: the same parts, the policy stage placing the centre.
  out = inference_parts.run_parts(inference_parts.inference_parts(recognizer, "centre"),
                            batch)
  np.testing.assert_array_equal(out["offsets"], np.full_like(out["offsets"],
                                                             12))


@pytest.mark.training
@pytest.mark.parametrize("family", ["tiny", "tiny_two_stream"])
def test_profile_command_writes_an_xplane_with_every_part(family, request):
  _, run = request.getfixturevalue(family)
  proc = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "launch", "profile.py"),
       f"--run={run}", "--batch_size=4", "--steps=2", "--warmup=1"],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "policy patches" in proc.stdout
  logdir = os.path.join(run, "logs", "profile_inference")
  (path,) = _xplanes(logdir)
  names = _event_names(path)
  assert "head/CropAndResize:CropAndResize" in names
  assert set(recognizer_lib.STAGES) | {"inference"} <= names
  # An events file makes the directory a TensorBoard run (the profile tab
  # lists only those).
  assert glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  for part in recognizer_lib.STAGES:
    assert part in proc.stdout
  assert path in proc.stdout


@pytest.mark.training
def test_train_profile_steps_write_an_xplane(tmp_path):
  data = helpers.write_dataset(str(tmp_path / "data"), num_train=32,
                               num_val=8)
  run = str(tmp_path / "run")
  helpers.run_train([f"--data_dir={data}", f"--run_dir={run}", "--stage=1",
                     "--max_steps=3", "--profile_steps=2,3", "--noevaluate",
                     "--noprogress"] + helpers.tiny_flags())
  planes = glob.glob(os.path.join(run, "logs", "stage1", "plugins",
                                  "profile", "*", "*.xplane.pb"))
  assert len(planes) == 1
  content = open(planes[0], "rb").read()
  assert b"Conv2D" in content
  bad = helpers.run_train([f"--data_dir={data}", "--profile_steps=5,2"],
                          check=False)
  assert bad.returncode != 0 and "error: profile steps '5,2'" in bad.stderr

"""A model family defined entirely here, taken through every tool.

The family follows docs/FAMILIES.md: a Keras model, a recognizer, a
training task and the family object, registered with the registry; no
other file knows it. Its model is the glance net on whole frames and the
focus net on a centre crop of each frame, the prediction the mean of both
nets' per-frame logits (no policy). It trains, evaluates, predicts a video
file, exports a SavedModel that a fresh process reloads, and calibrates
early exit after its glance.
"""
import json
import os
import subprocess
import types

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf import config as config_lib
from adafocus_tf.evaluation import evaluate
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.one_stream import presets as one_stream_presets
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.inference.early_exit import calibrate
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.models import adafocus
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import patches
from adafocus_tf.profiling import flops
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import export
from adafocus_tf.serving import preprocess
from adafocus_tf.training import experiment
from adafocus_tf.training import step_loss
from adafocus_tf.training import tasks

pytestmark = pytest.mark.training

NAME = "glance_and_centre"
METHOD = "centre"
# The TINY sizes of the other families' tests; only stage 1 trains.
TINY = {**{k: v for k, v in helpers.TINY.items()
           if not k.startswith(("stage0.", "stage2.", "stage3."))},
        "stage0.epochs": 0, "stage2.epochs": 0, "stage3.epochs": 0,
        "stage1.epochs": 2, "stage1.batch_size": 8,
        "stage1.backbone_lr": 0.05}


# -- the family --------------------------------------------------------------
class CentreModel(tf.keras.Model):
  """The glance net on whole frames, the focus net on each frame's centre
  crop; per-frame logits of both heads, averaged over nets and frames."""

  def __init__(self, cfg):
    super().__init__(name="adafocus")
    m, d = cfg.model, cfg.data
    self.frame_size, self.patch_size = d.frame_size, m.patch_size
    self.num_frames = d.num_frames
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(m.focus_backbone, d.num_classes)

  def build_all(self):
    frames = tf.zeros([1, self.num_frames, self.frame_size, self.frame_size,
                       3])
    _, pooled = self.glance_features(frames)
    self.logits(pooled, frames, self.centre(1))

  def centre(self, n):
    return patches.centre_offsets(tf.stack([n, self.num_frames]),
                                  self.frame_size, self.patch_size)

  def glance_features(self, frames, training=False):
    return adafocus.video_glance(self.glance, frames, training=training)

  def glance_logits(self, pooled):
    return tf.reduce_mean(self.glance.logits(pooled), 1, keepdims=True)

  def logits(self, pooled, frames, offsets, training=False):
    focus = adafocus.video_focus(self.focus, frames, offsets,
                                 self.patch_size, training=training)
    focus_logits = tf.reduce_mean(self.focus.logits(focus), 1, keepdims=True)
    return (self.glance_logits(pooled) + focus_logits) / 2


class CentreRecognizer(stepwise_recognizer.StepwiseRecognizer):
  """Two exit steps: the glance alone, then the mean with the focus net."""

  num_exit_steps = 2

  def logits(self, batch, glance, offsets, training=False, train_focus=None):
    return self.model.logits(glance.pooled, batch["frames"], offsets,
                             training=training if train_focus is None
                             else train_focus)

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

  def glance_probs(self, glance):
    return tf.nn.softmax(self.model.glance_logits(glance.pooled), axis=-1)

  def exit_probs(self, outputs):
    return tf.concat([outputs.glance_probs, outputs.probs], 1)

  def exit_step_macs(self, cost, choice):
    glance = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
    total = round(flops.choice_gflops(cost, choice) * flops.G)
    return np.array([glance, total - glance], np.float64)

  def step_inputs(self, batch, e):
    return {"frames": batch["frames"]}

  def initial_state(self, n):
    return tf.zeros([n, self.model.num_frames,
                     self.model.glance.feature_dim])

  def _step(self, inputs, state, e_kind):
    frames = inputs["frames"]
    if e_kind == 0:
      glance = self.glance(inputs)
      return (self.glance_probs(glance)[:, 0], tf.zeros([tf.shape(frames)[0],
                                                         0, 2], tf.int32),
              glance.pooled)
    offsets = self.model.centre(tf.shape(frames)[0])
    probs = tf.nn.softmax(self.model.logits(state, frames, offsets)[:, 0])
    return probs, offsets, state


class CentreTask(tasks.SupervisedTask):
  """Both nets and their heads, on the mean prediction's cross-entropy."""

  def variable_groups(self):
    s = self.section
    return {"glance": (self.model.glance.trainable_variables, s.backbone_lr),
            "focus": (self.model.focus.trainable_variables, s.backbone_lr)}

  def build_losses(self, batch, targets):
    logits, _ = self.recognizer.forward(batch, "centre", training=True,
                                        train_glance=True)
    logits = logits[:, -1]
    return step_loss.of_terms(
        {"mean": classifier_lib.soft_cross_entropy(logits, targets)},
        tf.nn.softmax(logits))


def _preset():
  cfg = one_stream_presets.synthetic()
  cfg.model.variant, cfg.model.classifier = NAME, "mean"
  for stage in (cfg.stage0, cfg.stage2, cfg.stage3):
    stage.epochs = 0
  return cfg


class CentreFamily(model_family.ModelFamily):
  """The glance net and a centre crop (module doc)."""

  name = NAME
  method = METHOD
  title = "glance-and-centre"
  classifiers = ("mean",)
  glance_head_trained = True

  def presets(self):
    return {"synthetic": _preset}

  def validate(self, cfg):
    stream_checks.one_stream(cfg, self.name)

  def build_model(self, cfg):
    return CentreModel(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    return CentreRecognizer(cfg, model)

  def stage_plan(self):
    return {1: CentreTask}

  def policy_macs(self, cfg, map_shape):
    return 0


# -- the tools ---------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  family = registry.register(CentreFamily())
  try:
    root = tmp_path_factory.mktemp("toy")
    data = helpers.write_dataset(str(root / "data"), num_train=16,
                                 num_val=16)
    cfg = config_lib.get_preset("synthetic", METHOD)
    cfg.data.data_dir = data
    for key, value in TINY.items():
      config_lib.override(cfg, key, value)
    run = str(root / "run")
    stats = experiment.run_stages(cfg, run, [1], tf.distribute.get_strategy(),
                                  progress=False)
    video = str(root / "clip.mp4")
    video_fixtures.write_video(video, 24, width=48, height=40)
    yield types.SimpleNamespace(cfg=cfg, run=run, stats=stats, data=data,
                                video=video, root=root, family=family)
  finally:
    registry.unregister(NAME)


def _by_hand(model, frames):
  """The family's definition, computed directly: softmax of the mean of
  the glance and centre-crop logits."""
  _, pooled = model.glance_features(frames)
  return tf.nn.softmax(model.logits(pooled, frames, model.centre(
      tf.shape(frames)[0]))[:, 0]).numpy()


def test_the_family_trains_its_stage_plan(toy):
  cfg = run_dir.read_config(toy.run)
  assert cfg.model.variant == NAME and config_lib.method_of(cfg) == METHOD
  assert sorted(toy.stats) == [1]
  assert toy.stats[1]["step"] == 2 * (16 // 8)
  assert np.isfinite(toy.stats[1]["train_loss"])
  assert run_dir.stage_done(toy.run, 1)
  # Stages outside the plan are refused by name.
  with pytest.raises(ValueError, match="an glance-and-centre run trains "
                     "stages 1 only"):
    experiment.check_stage(cfg, 2)
  # The trained weights moved away from the seeded initial ones.
  fresh = CentreModel(cfg)
  fresh.build_all()
  trained = trained_run.TrainedRun(toy.run).recognizer().model
  assert any(not np.allclose(a, b) for a, b in
             zip(fresh.get_weights(), trained.get_weights()))


def test_evaluation_is_the_family_definition(toy):
  split = os.path.join(toy.data, "val")
  row, pred = evaluate.evaluate_split(toy.run, split, "centre",
                                      progress=False)
  assert row["num_videos"] == 16
  cost = flops.video_macs(toy.cfg)
  assert row["gflops_per_video"] == pytest.approx(
      flops.choice_gflops(cost, "centre"))
  # Glance and focus on every frame, no policy; the mean costs its heads.
  assert cost["per_video"]["policy"] == 0
  assert cost["runs"]["glance"] == cost["runs"]["focus"] == 8
  model = trained_run.TrainedRun(toy.run).recognizer().model
  batch = next(iter(helpers.eval_dataset(toy.cfg)))
  want = _by_hand(model, batch["frames"])
  np.testing.assert_allclose(pred["step_probs"][:len(want), -1], want,
                             atol=1e-5)
  assert np.mean(np.argmax(pred["step_probs"][:, -1], -1)
                 == pred["labels"]) * 100 == pytest.approx(row["top1"])


def test_predict_a_video_file_on_every_backend(toy):
  want = predict_lib.Predictor(toy.run, backend="tf")
  clip = want.read(toy.video)
  expected = want.predict(clip)
  assert expected.patches == "centre"
  probs = _by_hand(want.recognizer.model,
                   tf.constant(clip.inputs["frames"][None]))
  assert expected.top_k[0][0] == int(np.argmax(probs[0]))
  assert expected.top_k[0][2] == pytest.approx(float(probs[0].max()),
                                             abs=1e-5)
  for backend in ("tflite", "hybrid"):
    got = predict_lib.Predictor(toy.run, backend=backend)
    assert got.backend == backend, got.backend_note
    assert got.predict(clip).top_k[0][:2] == expected.top_k[0][:2]


_RELOAD = helpers.ISOLATED + """
import numpy as np
import tensorflow as tf
export_dir, inputs, out = sys.argv[2:5]
frames = np.load(inputs)["frames"]
loaded = tf.saved_model.load(export_dir)
got = loaded.signatures["serving_default"](tf.constant(frames))
np.savez(out, **{k: v.numpy() for k, v in got.items()})
"""


def test_export_reloads_in_a_fresh_process(toy):
  out = str(toy.root / "export")
  export.export_run(toy.run, out)
  with open(os.path.join(out, "assets.extra", "adafocus.json")) as f:
    meta = json.load(f)
  assert meta["model_variant"] == NAME and meta["patches"] == "centre"
  assert meta["exit_steps"] == 2
  # Raw uint8 videos, N = T frames each; the graph resizes, crops and
  # normalises them.
  frames = np.random.default_rng(0).integers(
      0, 256, (3, toy.cfg.data.num_frames, 40, 56, 3), dtype=np.uint8)
  inputs, got = str(toy.root / "in.npz"), str(toy.root / "out.npz")
  np.savez(inputs, frames=frames)
  argv, env = helpers.isolated_python(_RELOAD, [out, inputs, got])
  proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                        timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = np.load(got)
  network_inputs = preprocess.preprocess_frames(tf.constant(frames), toy.cfg)
  want = _by_hand(trained_run.TrainedRun(toy.run).recognizer().model, network_inputs["frames"])
  np.testing.assert_allclose(result["probabilities"], want, atol=1e-4)


def test_early_exit_calibration_and_prediction(toy):
  section = calibrate.calibrate(toy.run, profile="1,1", progress=False,
                                check_videos=0)
  record = threshold_file.load(toy.run)
  assert len(record["thresholds"]) == 2
  cost = flops.video_macs(toy.cfg)
  glance = cost["runs"]["glance"] * (cost["glance"] + cost["glance_head"])
  np.testing.assert_allclose(
      record["exit_step_macs"],
      [glance, cost["per_video"]["total"] - cost["per_video"]["policy"]
       - glance])
  assert section
  early = predict_lib.Predictor(toy.run, early_exit=True, backend="tf")
  pred = early.predict(early.read(toy.video))
  assert pred.exit_step in (0, 1) and pred.early_exit
  assert pred.gflops == pytest.approx(
      np.cumsum(record["exit_step_macs"])[pred.exit_step] / flops.G)

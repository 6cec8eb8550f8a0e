"""The two-stream (Something-Something) model, its stages 0, 1, 3 and tables.

docs/METHOD.md section 3: glance frames and focus frames sampled
independently, one patch location per video cropped from every focus frame,
prediction = mean focus logits + mean glance logits.
"""
import copy
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import predictions
from adafocus_tf.evaluation import results_table
from adafocus_tf.families import registry
from adafocus_tf.inference import loading
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import factory
from adafocus_tf.models import patches
from adafocus_tf.models import two_stream
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import greedy
from adafocus_tf.policy import patch_choice
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run
from adafocus_tf.training import experiment
from adafocus_tf.training import stage_trainer
from adafocus_tf.training import tasks

P = 8  # helpers.TINY's patch size
NUM_TRAIN = 16  # two steps of 8 videos per epoch


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=NUM_TRAIN, num_val=16)


@pytest.fixture(scope="module")
def batch(data_dir):
  cfg = helpers.tiny_two_stream_config(data_dir)
  return next(iter(pipeline.make_dataset(cfg.data, data_dir + "/train",
                                         True, 4, seed=3, with_boxes=True)))


def _model(cfg):
  model = factory.build_model(cfg)
  model.build_all()
  return model


def _logits(cfg, model, batch, offsets, training=False, train_focus=None):
  """The model's logits [B, 1, C] for given patches (the recognizer's)."""
  recognizer = loading.build(cfg, model)
  return recognizer.logits(batch, recognizer.glance(batch), offsets,
                           training=training, train_focus=train_focus)


def _by_hand(model, batch, offsets):
  """Mean focus-head logits + mean glance-head logits, one video at a time.

  Each net sees one whole video per call (so a temporal shift sees exactly
  that video's frames), and the patches are numpy slices at the video's
  one offset.
  """
  out = []
  for b in range(batch["label"].shape[0]):
    _, pooled = model.glance(batch["glance_frames"][b])
    glance = model.glance.head(pooled).numpy().mean(0)
    y, x = offsets[b, 0]
    crops = batch["focus_frames"][b, :, y:y + P, x:x + P]
    focus = model.focus.head(model.focus(crops)).numpy().mean(0)
    out.append(glance + focus)
  return np.stack(out)


def test_factory_picks_the_model_of_the_streams():
  assert isinstance(_model(helpers.tiny_two_stream_config()),
                    two_stream.TwoStreamAdaFocus)
  assert not isinstance(_model(helpers.tiny_config()),
                        two_stream.TwoStreamAdaFocus)
  for preset in ("sthv1", "sthv2"):
    cfg = config_lib.get_preset(preset)
    assert registry.of(cfg).frame_streams(cfg) == {
        "glance_frames": cfg.data.glance_frames,
        "focus_frames": cfg.data.focus_frames}
    assert patch_choice.patch_steps(cfg) == 1
  assert patch_choice.patch_steps(config_lib.get_preset("minik")) == 16
  with pytest.raises(ValueError, match="logit_mean"):
    factory.build_model(helpers.tiny_two_stream_config(
        model__classifier="gru"))
  with pytest.raises(ValueError, match="data.glance_frames=4: must be 0"):
    factory.build_model(helpers.tiny_config(data__glance_frames=4))


def test_every_focus_frame_of_a_video_gets_the_same_box(batch):
  cfg = helpers.tiny_two_stream_config()
  b, tf_frames = batch["focus_frames"].shape[:2]
  offsets = {kind: patch_choice.choose_offsets(kind, batch, cfg).numpy()
             for kind in patch_choice.BASELINES}
  # The policy's: one per video too, from the glance maps of all frames.
  model = _model(cfg)
  recognizer = loading.build(cfg, model, greedy.GreedyPolicy.build(
      cfg, model.glance.map_shape))
  offsets["policy"] = recognizer.offsets(
      batch, recognizer.glance(batch), "policy").numpy()
  for kind, off in offsets.items():
    assert off.shape == (b, 1, 2), kind
    assert ((off >= 0) & (off <= 32 - P)).all(), kind
  np.testing.assert_array_equal(offsets["centre"], 12)
  assert len({tuple(o) for o in offsets["random"][:, 0]}) > 1
  # Oracle: the patch centred on the mean of the focus frames' box centres.
  boxes = batch["boxes"].numpy()
  centre = ((boxes[..., :2] + boxes[..., 2:]) / 2).mean(1) * 32
  np.testing.assert_array_equal(
      offsets["oracle"][:, 0],
      np.clip(np.round(centre - P / 2), 0, 32 - P).astype(np.int32))
  # The crops of all focus frames of a video are slices at its one offset.
  frames = batch["focus_frames"].numpy()
  for kind, off in offsets.items():
    crops = patches.extract_patches(batch["focus_frames"], off, P).numpy()
    crops = crops.reshape(b, tf_frames, P, P, 3)
    for v in range(b):
      y, x = off[v, 0]
      np.testing.assert_array_equal(crops[v],
                                    frames[v, :, y:y + P, x:x + P])


@pytest.mark.parametrize("shift", [False, True])
def test_prediction_is_mean_focus_plus_mean_glance_logits(batch, shift):
  cfg = helpers.tiny_two_stream_config(model__temporal_shift=shift)
  model = _model(cfg)
  offsets = patch_choice.choose_offsets("random", batch, cfg).numpy()
  logits = _logits(cfg, model, batch, offsets)
  assert logits.shape == (4, 1, helpers.NUM_CLASSES)
  np.testing.assert_allclose(logits[:, 0], _by_hand(model, batch, offsets),
                             rtol=1e-4, atol=1e-5)
  _, pooled = model.glance_features(batch["glance_frames"])
  parts = model.combine(model.glance_logits(pooled),
                        model.focus_logits(batch["focus_frames"], offsets))
  np.testing.assert_allclose(parts, logits, rtol=1e-6, atol=1e-6)
  # The loss is the cross-entropy of that sum; the prediction its softmax.
  targets = tf.one_hot(batch["label"], helpers.NUM_CLASSES)
  np.testing.assert_allclose(
      model.classifier.loss(logits, targets),
      classifier_lib.soft_cross_entropy(logits[:, 0], targets), rtol=1e-6)
  np.testing.assert_allclose(model.classifier.step_probs(logits)[:, -1],
                             tf.nn.softmax(logits[:, 0]), rtol=1e-6)
  # Reversing the focus frames: the mean over frames ignores their order,
  # a temporal shift does not.
  flipped = dict(batch, focus_frames=batch["focus_frames"][:, ::-1])
  same = np.allclose(_logits(cfg, model, flipped, offsets), logits,
                     rtol=1e-5, atol=1e-6)
  assert same != shift


def test_training_dropout_is_per_video_and_reaches_the_focus_head_only(
    batch):
  cfg = helpers.tiny_two_stream_config(model__dropout=0.5)
  model = _model(cfg)
  offsets = patch_choice.choose_offsets("centre", batch, cfg)
  # Backbones in inference mode: only dropout differs from evaluation.
  train = lambda b, o: _logits(cfg, model, b, o, training=True,
                               train_focus=False).numpy()
  full = train(batch, offsets)
  assert not np.allclose(full, _logits(cfg, model, batch, offsets))
  # A video's mask depends only on its seed, not on the rest of the batch.
  half = {k: v[:2] for k, v in batch.items()}
  np.testing.assert_allclose(train(half, offsets[:2]), full[:2], rtol=1e-5,
                             atol=1e-6)
  # The focus head's mask is drawn from the same seeds every time.
  focus_logits = lambda t: model.focus_logits(
      batch["focus_frames"], offsets, batch["seed"], training=t,
      train_focus=False)
  assert not np.allclose(focus_logits(True), focus_logits(False))
  np.testing.assert_array_equal(focus_logits(True), focus_logits(True))
  # The glance logits are the frozen glance net's, without dropout (the
  # official code's glancer in evaluation mode): training changes the
  # prediction by the focus term alone.
  _, pooled = model.glance_features(batch["glance_frames"])
  np.testing.assert_allclose(
      full[:, 0] - focus_logits(True).numpy(),
      model.glance_logits(pooled).numpy(), rtol=1e-5, atol=1e-5)


def _trainer(cfg, run, stage, patch="random", policy_checkpoint=None):
  task = (tasks.BackboneTask(cfg, stage) if stage == 0 else
          tasks.PatchTask(cfg, stage, patch=patch,
                          policy_checkpoint=policy_checkpoint))
  return stage_trainer.StageTrainer(task, tf.distribute.get_strategy(), run,
                                    progress=False)


def _values(variables):
  return [v.numpy().copy() for v in variables]


def _changed(before, variables):
  return any(not np.array_equal(a, b) for a, b in
             zip(before, _values(variables)))


def test_stage0_fine_tunes_each_backbone_on_its_own_stream(data_dir, batch,
                                                           tmp_path):
  cfg = helpers.tiny_two_stream_config(data_dir,
                                       stage0__backbones="glance,focus")
  t = _trainer(cfg, str(tmp_path / "run"), stage=0)
  model = t.task.model
  targets = tf.one_hot(batch["label"], helpers.NUM_CLASSES)
  # By hand: each net on every whole frame of its stream, logits averaged.
  want = 0.0
  for net, frames in ((model.glance, batch["glance_frames"]),
                      (model.focus, batch["focus_frames"])):
    flat = tf.reshape(frames, [-1, 32, 32, 3])
    feats = net(flat, training=True)
    feats = feats[1] if isinstance(feats, tuple) else feats
    logits = tf.reduce_mean(tf.reshape(
        net.head(feats), [4, -1, helpers.NUM_CLASSES]), 1)
    want += classifier_lib.soft_cross_entropy(logits, targets)
  glance, focus = _values(model.glance.variables), _values(
      model.focus.variables)
  loss = t.make_train_fn(4)(batch)["loss"]
  assert float(loss) == pytest.approx(float(tf.reduce_mean(want)), rel=1e-4)
  assert _changed(glance, model.glance.variables)
  assert _changed(focus, model.focus.variables)


@pytest.fixture(scope="module")
def stage1_run(data_dir, tmp_path_factory):
  """Stage 1 of a two-stream run: stopped after one step and resumed.

  Returns:
    (config, the resumed run, the same stage run straight through, the
    resumed run's checkpoint after its first step).
  """
  root = tmp_path_factory.mktemp("stage1")
  cfg = helpers.tiny_two_stream_config(data_dir, stage1__epochs=1)
  strategy = tf.distribute.get_strategy()
  # Both runs start from the same weights.
  init = tf.train.Checkpoint(model=_model(cfg)).write(str(root / "init"))
  straight = str(root / "straight")
  experiment.run_stages(cfg, straight, [1], strategy, progress=False,
                        init_from=init)
  run = str(root / "resumed")
  # Stopped after its first step, as an interrupted run would be.
  t = _trainer(cfg, run, stage=1)
  t.initialize(init)
  assert t.train(max_steps=1)["step"] == 1
  first = checkpoints.latest_stage_checkpoint(run, 1)
  assert first.endswith("ckpt-1") and not run_dir.stage_done(run, 1)
  experiment.run_stages(cfg, run, [1], strategy, progress=False)
  return cfg, run, straight, first


@pytest.mark.training
def test_stage1_trains_focus_and_its_head_and_resumes(stage1_run):
  cfg, run, straight, first = stage1_run
  steps = NUM_TRAIN // cfg.stage1.batch_size
  last = checkpoints.latest_stage_checkpoint(run, 1)
  assert last.endswith(f"ckpt-{steps}") and run_dir.stage_done(run, 1)
  after_one = helpers.checkpoint_tensors(first)
  final = helpers.checkpoint_tensors(last)
  # The resumed run ends where the uninterrupted one does.
  uninterrupted = helpers.checkpoint_tensors(
      checkpoints.latest_stage_checkpoint(straight, 1))
  assert final.keys() == uninterrupted.keys()
  for k in final:
    np.testing.assert_allclose(final[k], uninterrupted[k], rtol=1e-5,
                               atol=1e-6, err_msg=k)
  # Between its two steps: the glance net frozen, head included (as in the
  # official code), the focus backbone and head trained.
  moved = lambda part: [k for k in final if part in k and
                        not np.array_equal(final[k], after_one[k])]
  glance = [k for k in final if "glance/" in k]
  assert glance and not moved("glance/")
  assert moved("focus/backbone") and moved("focus/head")
  # TensorBoard shows the focus frames with the video's one patch.
  events = tf.io.gfile.glob(os.path.join(run_dir.log_dir(run, 1), "events*"))
  images = [v for e in events for ev in tf.compat.v1.train.summary_iterator(e)
            for v in ev.summary.value if v.tag == "patches/random/video0"]
  assert images
  strip = tf.image.decode_png(
      tf.make_ndarray(images[-1].tensor)[2]).numpy()
  assert strip.shape == (32, cfg.data.focus_frames * 32, 3)


@pytest.mark.training
def test_stage1_groups_and_stage3_policy_patches(stage1_run, batch, tmp_path):
  cfg, run, _, _ = stage1_run
  t1 = _trainer(cfg, str(tmp_path / "s1"), stage=1)
  # The classifier group is the focus head: the glance head stays with the
  # frozen glance net, as in the official code.
  groups = t1.task.variable_groups()
  assert ({v.ref() for v in groups["classifier"][0]}
          == {v.ref() for v in t1.task.model.focus.head.trainable_variables})
  assert t1.task.optimizer.group_lr == {"classifier": cfg.stage1.classifier_lr,
                                   "focus": cfg.stage1.backbone_lr}

  cfg = copy.deepcopy(cfg)
  cfg.stage3.train_focus = False  # the reference code's stage 3
  # A policy checkpoint (untrained weights are enough: its greedy patches
  # are what stage 3 must train on).
  policy = greedy.GreedyPolicy.build(cfg, t1.task.model.glance.map_shape)
  policy_ckpt = tf.train.Checkpoint(actor=policy.actor).save(
      str(tmp_path / "policy"))
  t = _trainer(cfg, str(tmp_path / "s3"), stage=3, patch="policy",
               policy_checkpoint=policy_ckpt)
  assert "initialised from" in t.initialize(
      checkpoints.previous_checkpoint(run, 3))
  assert set(t.task.optimizer.group_lr) == {"classifier"}
  model = t.task.model
  maps, pooled = model.glance_features(batch["glance_frames"])
  chosen = policy.offsets(frame_stack.stack_frames(maps))
  # The step's loss is that of the policy's patches (dropout included: it
  # is drawn from the videos' seeds).
  targets = tf.one_hot(batch["label"], helpers.NUM_CLASSES)
  want = model.classifier.loss(
      model.head_logits(pooled, batch["focus_frames"], chosen, batch["seed"],
                        training=True, train_focus=False), targets)
  frozen = _values(model.glance.variables + model.focus.backbone.variables)
  head = _values(model.focus.head.variables)
  loss = t.make_train_fn(4)(batch)["loss"]
  assert float(loss) == pytest.approx(float(tf.reduce_mean(want)), rel=1e-5)
  assert not _changed(frozen, model.glance.variables +
                      model.focus.backbone.variables)
  assert _changed(head, model.focus.head.variables)


@pytest.mark.training
def test_results_table_of_a_two_stream_run(stage1_run, data_dir):
  cfg, run, _, _ = stage1_run
  results = results_table.results_table(
      trained_run.TrainedRun(run, cfg=cfg), progress=False)
  rows = results["rows"]
  assert set(rows) == {"random", "centre", "oracle",
                       predictions.GLANCE_ONLY}
  assert results["num_videos"] == 16
  for row in rows.values():
    assert len(row["mAP_per_step"]) == 1 and row["gflops_per_video"] > 0
  assert rows[predictions.GLANCE_ONLY]["gflops_per_video"] < rows["centre"][
      "gflops_per_video"]
  # The centre row by hand: the final model on the held-out videos.
  model = trained_run.TrainedRun(run, cfg=cfg).recognizer().model
  ds = pipeline.make_dataset(cfg.data, data_dir + "/val", False, 16,
                             seed=cfg.seed)
  val = next(iter(ds))
  centre = np.full([16, 1, 2], 12, np.int32)
  top1 = np.mean(_by_hand(model, val, centre).argmax(-1) ==
                 val["label"].numpy())
  assert rows["centre"]["top1"] == pytest.approx(100 * top1)
  glance_top1 = np.mean(np.stack([
      model.glance.head(model.glance(v)[1]).numpy().mean(0)
      for v in val["glance_frames"]]).argmax(-1) == val["label"].numpy())
  assert rows[predictions.GLANCE_ONLY]["top1"] == pytest.approx(
      100 * glance_top1)
  assert os.path.exists(os.path.join(run, run_dir.METRICS))

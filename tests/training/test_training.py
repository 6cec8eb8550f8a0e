"""Supervised stages: learning, frozen parts, groups, checkpoints, config."""
import json
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.data import pipeline
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import data_check
from adafocus_tf.runs import run_config
from adafocus_tf.runs import run_dir
from adafocus_tf.training import experiment
from adafocus_tf.training import optim
from adafocus_tf.training import stage_trainer
from adafocus_tf.training import tasks


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=32, num_val=16)


def _trainer(cfg, run, stage=1, patch="random"):
  task = (tasks.BackboneTask(cfg, stage) if stage == 0
          else tasks.PatchTask(cfg, stage, patch=patch))
  return stage_trainer.StageTrainer(task, tf.distribute.get_strategy(), run,
                                    progress=False)


def _weights(model):
  return [v.numpy().copy() for v in model.variables]


@pytest.mark.training
def test_stage1_steps_reduce_loss_and_keep_glance_frozen(data_dir, tmp_path):
  cfg = helpers.tiny_config(data_dir, model__dropout=0.0)
  t = _trainer(cfg, str(tmp_path / "run"))
  batch = next(iter(pipeline.make_dataset(cfg.data, data_dir + "/train",
                                          True, 8, seed=0)))
  glance_before = _weights(t.task.model.glance)
  focus_before = _weights(t.task.model.focus.backbone)
  clf_before = _weights(t.task.model.classifier)
  step = t.make_train_fn(8)
  losses = [float(step(batch)["loss"]) for _ in range(15)]
  assert losses[-1] < 0.7 * losses[0], losses
  for a, b in zip(glance_before, _weights(t.task.model.glance)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in
             zip(focus_before, _weights(t.task.model.focus.backbone)))
  assert any(not np.array_equal(a, b) for a, b in
             zip(clf_before, _weights(t.task.model.classifier)))


def test_stage3_trains_focus_only_when_asked(data_dir, tmp_path):
  assert not config_lib.get_preset("minik").stage3.train_focus
  cfg = helpers.tiny_config(data_dir, stage3__train_focus=False)
  t = _trainer(cfg, str(tmp_path / "run"), stage=3, patch="centre")
  assert set(t.task.optimizer.group_lr) == {"classifier"}
  cfg.stage3.train_focus = True
  t = _trainer(cfg, str(tmp_path / "run2"), stage=3, patch="centre")
  assert set(t.task.optimizer.group_lr) == {"classifier", "focus"}
  assert t.task.optimizer.group_lr["focus"] == cfg.stage3.backbone_lr


def test_stage0_drops_out_what_the_glance_head_sees_only(data_dir, tmp_path):
  # The official V1 stage 0 trains the glance net through torchvision's
  # MobileNetV2 head, Dropout(0.2) then linear; the ResNet-50 focus head
  # has no dropout.
  assert config_lib.get_preset("actnet").model.head_dropout == 0.2
  d = helpers.tiny_config().data
  frames = tf.random.stateless_normal(
      [4, d.num_frames, d.frame_size, d.frame_size, 3], [0, 1])
  labels = tf.range(4)
  targets = tf.one_hot(labels, d.num_classes)
  terms = {}
  for rate, seed in ((0.0, 0), (0.5, 0), (0.5, 1)):
    cfg = helpers.tiny_config(data_dir, model__head_dropout=rate,
                              stage0__backbones="glance,focus")
    t = _trainer(cfg, str(tmp_path / f"run{rate}_{seed}"), stage=0)
    batch = {"frames": frames, "label": labels,
             "seed": tf.fill([4, 2], seed)}
    out = t.task.build_losses(batch, targets)
    terms[rate, seed] = {k: float(tf.reduce_mean(v))
                         for k, v in out.terms.items()}
  # The same initial weights (seeded by the run's seed and stage).
  assert terms[0.5, 0]["focus"] == terms[0.0, 0]["focus"]
  assert terms[0.5, 0]["glance"] != pytest.approx(terms[0.0, 0]["glance"],
                                                  rel=1e-4)
  assert terms[0.5, 1]["glance"] != pytest.approx(terms[0.5, 0]["glance"],
                                                  rel=1e-4)


def test_group_rates_follow_cosine_and_weight_decay():
  a = tf.Variable([1.0])
  b = tf.Variable([1.0])
  opt = optim.GroupSGD({"x": ([a], 0.1), "y": ([b], 0.01)}, momentum=0.0,
                       weight_decay=0.5)
  opt.set_epoch(0, 4)
  opt.apply([tf.constant([1.0]), tf.constant([1.0])])
  # w - lr * (g + wd * w): 1 - 0.1 * 1.5 and 1 - 0.01 * 1.5.
  np.testing.assert_allclose(a.numpy(), [0.85], rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), [0.985], rtol=1e-6)
  opt.set_epoch(2, 4)
  rates = opt.learning_rates()
  assert rates["x"] == pytest.approx(0.05) and rates["y"] == pytest.approx(
      0.005)
  assert optim.cosine_lr(1.0, 4, 4) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.training
def test_run_writes_config_checkpoints_and_resumes_stage(data_dir, tmp_path):
  cfg = helpers.tiny_config(data_dir)
  cfg.stage1.epochs = 1
  run = str(tmp_path / "run")
  strategy = tf.distribute.get_strategy()
  experiment.run_stages(cfg, run, [1], strategy, progress=False)
  saved = config_lib.ExperimentConfig.from_json(
      open(os.path.join(run, "config.json")).read())
  assert saved == cfg
  assert run_dir.stage_done(run, 1)
  ckpt = checkpoints.latest_stage_checkpoint(run, 1)
  assert ckpt.endswith("ckpt-4")  # 32 videos / batch 8
  done = json.load(open(run_dir.done_path(run, 1)))
  assert done["step"] == 4
  # Stage 3 starts from stage 1's weights.
  cfg.stage3.epochs = 1
  t = _trainer(cfg, run, stage=3, patch="centre")
  assert "initialised from" in t.initialize(checkpoints.previous_checkpoint(
      run, 3))
  want = helpers.checkpoint_tensors(ckpt)
  key = next(k for k in want if "classifier" in k and "fc" in k and
             "kernel" in k)
  np.testing.assert_array_equal(t.task.model.classifier.fc.kernel.numpy(),
                                want[key])


def test_config_overrides_are_typed_and_checked():
  cfg = config_lib.get_preset("actnet")
  config_lib.apply_overrides(cfg, ["model.patch_size=96",
                                   "data.train_scales=1:0.5",
                                   "stage3.train_focus=true"])
  assert cfg.model.patch_size == 96
  assert cfg.data.train_scales == (1.0, 0.5)
  assert cfg.stage3.train_focus is True
  with pytest.raises(ValueError, match="no field"):
    config_lib.override(cfg, "model.patch", "3")
  with pytest.raises(ValueError, match="bad value"):
    config_lib.override(cfg, "model.patch_size", "big")
  with pytest.raises(ValueError, match="unknown dataset preset"):
    config_lib.get_preset("kinetics")
  assert config_lib.ExperimentConfig.from_json(cfg.to_json()) == cfg


def test_paper_presets_match_spec():
  for name, classes in (("actnet", 200), ("fcvid", 239), ("minik", 200)):
    cfg = config_lib.get_preset(name)
    assert cfg.data.num_classes == classes
    assert (cfg.data.num_frames, cfg.data.frame_size) == (16, 224)
    assert cfg.model.num_actions == 49 and cfg.model.patch_size == 128
    assert (cfg.stage1.backbone_lr, cfg.stage1.classifier_lr) == (5e-4, 0.05)
    assert cfg.model.dropout == 0.8
    # The stage-0 glance head's (torchvision's MobileNetV2 classifier).
    assert cfg.model.head_dropout == 0.2
    assert (cfg.stage2.discount, cfg.stage2.clip) == (0.7, 0.2)
  assert config_lib.get_preset("fcvid").data.multi_label


def _read(path):
  with open(path) as f:
    return f.read()


def test_a_run_keeps_the_settings_its_weights_were_trained_with(data_dir,
                                                                 tmp_path):
  cfg = helpers.tiny_config(data_dir)
  run = str(tmp_path / "run")
  strategy = tf.distribute.get_strategy()
  experiment.run_stages(cfg, run, [], strategy, progress=False)
  # Stage 1 interrupted after its first checkpoint.
  t = _trainer(cfg, run)
  t.initialize(None)
  t.train(max_steps=1)
  config_path = os.path.join(run, "config.json")
  written = _read(config_path)
  history = os.path.join(run, run_config.HISTORY)

  for field, value, reason in (
      ("model.patch_size", 16, "stage 1 has trained with it"),
      ("seed", 3, "stage 1 has trained with it"),
      ("stage1.batch_size", 4, "stage 1 has trained with it")):
    changed = helpers.tiny_config(data_dir)
    config_lib.override(changed, field, value)
    with pytest.raises(run_config.ConfigChangeError) as e:
      experiment.run_stages(changed, run, [1], strategy, progress=False)
    old = config_lib.ExperimentConfig.from_json(written)
    section, _, name = field.rpartition(".")
    was = getattr(getattr(old, section) if section else old, name)
    assert f"{field} is {was} in {config_path}" in str(e.value)
    assert f"sets {value}, and {reason}" in str(e.value)
    assert "--run_dir" in str(e.value)
    assert _read(config_path) == written and not os.path.exists(history)
    assert checkpoints.latest_stage_checkpoint(run, 1).endswith("ckpt-1")

  # Longer training, evaluation options and a later stage's settings may
  # change; config.json takes them and the history records them.
  extended = helpers.tiny_config(data_dir, stage1__epochs=3,
                                 eval_batch_size=4,
                                 stage3__classifier_lr=0.5)
  experiment.run_stages(extended, run, [1], strategy, progress=False,
                        max_steps=2)
  assert config_lib.ExperimentConfig.from_json(_read(config_path)) == extended
  entries = json.load(open(history))
  assert len(entries) == 1
  assert entries[0]["changes"] == [
      {"field": "eval_batch_size", "old": 8, "new": 4},
      {"field": "stage1.epochs", "old": 2, "new": 3},
      {"field": "stage3.classifier_lr", "old": 0.01, "new": 0.5}]
  # Stage 1 is finished now (max_steps): its epochs are fixed too.
  assert run_dir.stage_done(run, 1)
  more = helpers.tiny_config(data_dir, stage1__epochs=4, eval_batch_size=4,
                             stage3__classifier_lr=0.5)
  with pytest.raises(run_config.ConfigChangeError,
                     match="stage1.epochs is 3 .* sets 4, and stage 1 is "
                           "finished"):
    experiment.run_stages(more, run, [1], strategy, progress=False)
  assert len(json.load(open(history))) == 1


def test_data_with_other_classes_than_the_config_stops_before_any_step(
    data_dir, tmp_path):
  strategy = tf.distribute.get_strategy()
  # Four classes in the data, three in the config: label 3 would be an
  # all-zero target.
  fewer = helpers.tiny_config(data_dir, data__num_classes=3)
  run = str(tmp_path / "run")
  with pytest.raises(data_check.DataMismatchError) as e:
    experiment.run_stages(fewer, run, [1], strategy, progress=False)
  assert str(e.value).startswith(
      f"{data_dir}/train/meta.json has num_classes=4 but the config has "
      "data.num_classes=3")
  assert not os.path.exists(run)

  # The held-out split names its classes in another order.
  other = str(tmp_path / "other")
  helpers.write_split(os.path.join(other, "train"), 8)
  helpers.write_split(os.path.join(other, "val"), 8,
                      class_names=["c1", "c0", "c2", "c3"])
  with pytest.raises(data_check.DataMismatchError,
                     match=f"{other}/train/meta.json and {other}/val/"
                           "meta.json list different classes: class 0 is "
                           "'c0' in the first and 'c1' in the second"):
    experiment.run_stages(helpers.tiny_config(other), run, [1], strategy,
                          progress=False)
  assert not os.path.exists(run)

  # A run moved onto data whose classes are not those it learnt.
  cfg = helpers.tiny_config(data_dir)
  experiment.run_stages(cfg, run, [], strategy, progress=False)
  assert json.load(open(os.path.join(run, "classes.json"))) == {
      "class_names": ["c0", "c1", "c2", "c3"]}
  renamed = str(tmp_path / "renamed")
  for split in ("train", "val"):
    helpers.write_split(os.path.join(renamed, split), 8,
                        class_names=["c0", "c1", "c2", "dog"])
  with pytest.raises(data_check.DataMismatchError,
                     match="class 3 is 'c3' in the first and 'dog'"):
    experiment.run_stages(helpers.tiny_config(renamed), run, [1], strategy,
                          progress=False)


def test_resume_removes_what_a_killed_checkpoint_save_left(data_dir,
                                                            tmp_path):
  cfg = helpers.tiny_config(data_dir)
  run = str(tmp_path / "run")
  t = _trainer(cfg, run)
  t.initialize(None)
  t.train(max_steps=1)
  ckpt_dir = run_dir.checkpoint_dir(run, 1)
  # What a save killed before its merge leaves: TensorFlow's own shard
  # files under ckpt-<N>_temp/.
  tf.train.Checkpoint(v=tf.Variable([1.0, 2.0])).write(
      os.path.join(ckpt_dir, "ckpt-2_temp", "part-00000-of-00001"))
  assert os.listdir(os.path.join(ckpt_dir, "ckpt-2_temp"))
  # Not TensorFlow's temporary names: kept.
  os.makedirs(os.path.join(ckpt_dir, "notes_temp"))
  open(os.path.join(ckpt_dir, "ckpt-2_temp.txt"), "w").close()
  stats = experiment.run_stages(cfg, run, [1], tf.distribute.get_strategy(),
                                progress=False, max_steps=2)
  assert stats[1]["step"] == 2
  left = sorted(os.listdir(ckpt_dir))
  assert "ckpt-2_temp" not in left
  assert {"notes_temp", "ckpt-2_temp.txt", "ckpt-1.index",
          "ckpt-2.index"} <= set(left)

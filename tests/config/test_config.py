"""Configs: validation names the bad field, files and overrides, old runs."""
import json

import pytest

from adafocus_tf import config as config_lib


@pytest.mark.parametrize("method, preset", [
    (method, name) for method in sorted(config_lib.PRESETS)
    for name in sorted(config_lib.PRESETS[method])])
def test_every_preset_is_valid(method, preset):
  cfg = config_lib.get_preset(preset, method)
  assert cfg.validate() is cfg
  assert config_lib.method_of(cfg) == method


def test_every_dataset_has_a_preset_of_each_method():
  assert set(config_lib.PRESETS) == set(config_lib.METHODS)
  for method in config_lib.METHODS:
    assert sorted(config_lib.PRESETS[method]) == list(config_lib.DATASETS)


@pytest.mark.parametrize("name, base_lr, batch", [
    ("actnet", 0.002, 32), ("fcvid", 0.002, 32), ("minik", 0.003, 48)])
def test_v2_presets_hold_the_official_settings(name, base_lr, batch):
  # docs/METHOD.md V2-3 and V2-5.
  cfg = config_lib.get_preset(name, "v2")
  m, s = cfg.model, cfg.stage1
  assert (m.variant, m.classifier, m.frame_order, m.patch_size) == (
      "v2", "frame_exit", "coarse_to_fine", 128)
  assert (m.policy_conv_channels, m.policy_hidden, m.classifier_hidden) == (
      64, 2048, 4096)
  assert (m.dropout, m.head_dropout) == (0.2, 0.2)
  assert (s.epochs, s.schedule_epochs, s.batch_size) == (51, 50, batch)
  assert (s.momentum, s.weight_decay, s.grad_clip_norm) == (0.9, 1e-4, 0.0)
  assert (s.policy_lr, s.glance_lr, s.backbone_lr, s.classifier_lr) == (
      pytest.approx(0.1 * base_lr), pytest.approx(0.5 * base_lr),
      pytest.approx(base_lr), pytest.approx(5 * base_lr))
  assert cfg.stage2.epochs == 0 and cfg.stage3.epochs == 0


@pytest.mark.parametrize("name, patch", [("sthv1", 144), ("sthv2", 144),
                                         ("jester", 128)])
def test_v2_tsm_presets_hold_the_official_settings(name, patch):
  # docs/METHOD.md V2-5 (last column) and V2-6.
  cfg = config_lib.get_preset(name, "v2")
  m, s = cfg.model, cfg.stage1
  assert (m.variant, m.patch_per_video, m.temporal_shift, m.patch_size) == (
      "v2_tsm", True, True, patch)
  assert (cfg.data.glance_frames, cfg.data.focus_frames) == (8, 12)
  assert m.policy_mlp == (1024, 512) and m.head_dropout == 0.5
  assert (s.epochs, s.schedule_epochs, s.batch_size, s.weight_decay,
          s.grad_clip_norm) == (50, 50, 32, 5e-4, 20.0)
  assert (s.policy_lr, s.glance_lr, s.backbone_lr) == (
      pytest.approx(1e-4), pytest.approx(5e-3), pytest.approx(1e-2))


@pytest.mark.parametrize("dotted, value, message", [
    ("stage2.epochs", 6, "stage2.epochs=6: must be 0 for V2"),
    ("stage3.epochs", 3, "stage3.epochs=3: must be 0 for V2"),
    ("model.classifier", "gru", "model.classifier='gru': must be one of "
     "('frame_exit',) for the v2 model"),
    ("model.policy_batchnorm", False, "model.policy_batchnorm=False: must be "
     "true for V2"),
    ("stage1.policy_lr", 0.0, "stage1.policy_lr=0.0: V2's end-to-end stage 1 "
     "needs"),
    ("model.temporal_shift", True, "model.temporal_shift=True"),
    ("model.patch_per_video", True, "model.patch_per_video=True: must be "
     "False for the v2 model"),
])
def test_a_v1_setting_in_a_v2_config_is_refused_by_name(dotted, value,
                                                        message):
  cfg = config_lib.get_preset("minik", "v2")
  config_lib.override(cfg, dotted, value)
  with pytest.raises(ValueError) as e:
    cfg.validate()
  assert message in str(e.value)


def test_the_v2_frame_order_in_a_v1_config_is_refused_by_name():
  cfg = config_lib.get_preset("minik")
  cfg.model.frame_order = "coarse_to_fine"
  with pytest.raises(ValueError, match="model.frame_order='coarse_to_fine': "
                     "the coarse-to-fine order belongs to V2"):
    cfg.validate()
  cfg.model.frame_order = "shuffled"
  with pytest.raises(ValueError, match="model.frame_order='shuffled': must "
                     "be one of"):
    cfg.validate()


def test_unknown_method_or_preset_is_named():
  with pytest.raises(ValueError, match="unknown method 'v3'"):
    config_lib.get_preset("minik", "v3")
  with pytest.raises(ValueError, match="unknown dataset preset 'kinetics'"):
    config_lib.get_preset("kinetics", "v2")


@pytest.mark.parametrize("dotted, value, message", [
    ("model.variant", "v9", "model.variant='v9': must be one of"),
    ("model.patch_size", 300, "model.patch_size=300: must be between 1 and "
     "data.frame_size (224)"),
    ("model.num_actions", 50, "model.num_actions=50: must be a square"),
    ("model.policy", "greedy", "model.policy='greedy'"),
    ("model.classifier", "logit_mean", "model.classifier='logit_mean': must "
     "be one of ('gru', 'fc') for the one_stream model"),
    ("model.temporal_shift", True, "model.temporal_shift=True: needs the "
     "two_stream model"),
    ("model.glance_backbone", "vgg", "model.glance_backbone='vgg'"),
    ("data.glance_frames", 4, "data.glance_frames=4: must be 0 for the "
     "one_stream model"),
    ("stage2.reward", "gold", "stage2.reward='gold'"),
    ("stage1.batch_size", 0, "stage1.batch_size=0: must be at least 1"),
    ("stage3.classifier_lr", 0.0, "stage3.classifier_lr=0.0: must be "
     "positive"),
    ("stage0.backbones", "glance,tail", "stage0.backbones='glance,tail'"),
    ("mixed_precision", "fp8", "mixed_precision='fp8'"),
])
def test_a_bad_field_is_named_with_its_value(dotted, value, message):
  cfg = config_lib.get_preset("minik")
  config_lib.override(cfg, dotted, value)
  with pytest.raises(ValueError) as e:
    cfg.validate()
  assert message in str(e.value)


def test_two_stream_fields_must_agree():
  cfg = config_lib.get_preset("sthv2")
  cfg.model.classifier = "gru"
  with pytest.raises(ValueError, match="for the two_stream model"):
    cfg.validate()
  cfg = config_lib.get_preset("sthv2")
  cfg.data.focus_frames = 0
  with pytest.raises(ValueError, match="data.focus_frames=0: must be at "
                     "least 1 for the two_stream model"):
    cfg.validate()


def test_a_config_written_before_the_variant_field_reads_its_family():
  for preset, family in (("sthv1", config_lib.TWO_STREAM),
                         ("actnet", config_lib.ONE_STREAM)):
    old = json.loads(config_lib.get_preset(preset).to_json())
    del old["model"]["variant"]
    cfg = config_lib.ExperimentConfig.from_dict(old)
    assert cfg.model.variant == family
    assert cfg == config_lib.get_preset(preset)


@pytest.mark.parametrize("name, text", [
    ("c.json", '{"model": {"patch_size": 96}, "stage1": {"epochs": 3},'
               ' "data": {"train_scales": [1.0, 0.5]}, "seed": 7}'),
    ("c.yaml", "model:\n  patch_size: 96\nstage1:\n  epochs: 3\n"
               "data:\n  train_scales: [1.0, 0.5]\nseed: 7\n"),
])
def test_config_files_set_nested_fields(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  cfg = config_lib.apply_dict(config_lib.get_preset("minik"),
                              config_lib.load_file(str(path)))
  assert (cfg.model.patch_size, cfg.stage1.epochs, cfg.seed) == (96, 3, 7)
  assert cfg.data.train_scales == (1.0, 0.5)
  assert cfg.stage2.epochs == config_lib.get_preset("minik").stage2.epochs


def test_config_file_errors_name_the_file_or_field(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text("model: [unclosed\n")
  with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
    config_lib.load_file(str(bad))
  other = tmp_path / "c.toml"
  other.write_text("")
  with pytest.raises(ValueError, match="ends in .json, .yaml or .yml"):
    config_lib.load_file(str(other))
  with pytest.raises(ValueError, match="no field 'model.patch'"):
    config_lib.apply_dict(config_lib.get_preset("minik"),
                          {"model": {"patch": 3}})

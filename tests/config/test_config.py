"""Configs: validation names the bad field, files and overrides, old runs."""
import json

import pytest

from adafocus_tf import config as config_lib


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_every_preset_is_valid(preset):
  cfg = config_lib.get_preset(preset)
  assert cfg.validate() is cfg


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

"""Configs: validation names the bad field, files and overrides, old runs,
the type of every value from every source, the fields a family does not
use."""
import functools
import json
from typing import Tuple

import pytest
import yaml

from adafocus_tf import config as config_lib
from adafocus_tf import config_checks
from adafocus_tf import errors
from adafocus_tf.families import registry

# Every (method, dataset) preset of the registered families.
ALL_PRESETS = [(method, name) for method in config_lib.methods()
               for name in config_lib.datasets(method)]


@pytest.mark.parametrize("method, preset", ALL_PRESETS)
def test_every_preset_is_valid(method, preset):
  cfg = config_lib.get_preset(preset, method)
  assert cfg.validate() is cfg
  assert config_lib.method_of(cfg) == method


def test_every_dataset_has_a_preset_of_each_method():
  assert config_lib.methods() == ("v1", "v2", "uni")
  # Uni-AdaFocus's X3D family adds presets of its own (Kinetics-400 was
  # published with Uni-AdaFocus-X3D only).
  x3d = tuple(registry.get("uni_x3d").presets())
  for method in config_lib.methods():
    assert config_lib.datasets(method) == tuple(
        d for d in config_lib.datasets() if method == "uni" or d not in x3d)
  # Uni-AdaFocus serves them with three families: the ActivityNet one, the
  # TSM one (sthv1, sthv2, jester) and the X3D one (kinetics).
  assert {registry.preset_family(d, "uni").name
          for d in config_lib.datasets()} == {"uni", "uni_tsm", "uni_x3d"}
  assert registry.preset_family("jester", "uni").name == "uni_tsm"
  assert registry.preset_family("kinetics", "uni").name == "uni_x3d"


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
    ("stage2.epochs", 6, "stage2.epochs=6: must be 0 for AdaFocusV2: it "
     "trains stages 0 and 1"),
    ("stage3.epochs", 3, "stage3.epochs=3: must be 0 for AdaFocusV2: it "
     "trains stages 0 and 1"),
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
  for preset, family in (("sthv1", "two_stream"), ("actnet", "one_stream")):
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


def _nested(dotted, value):
  """``{"a": {"b": value}}`` of ``a.b``."""
  for name in reversed(dotted.split(".")):
    value = {name: value}
  return value


def _field_value(cfg, dotted):
  return functools.reduce(getattr, dotted.split("."), cfg)


@pytest.mark.parametrize("method, preset", ALL_PRESETS)
def test_every_preset_reads_back_unchanged(method, preset):
  cfg = config_lib.get_preset(preset, method)
  text = cfg.to_json()
  back = config_lib.ExperimentConfig.from_json(text)
  assert back == cfg and back.to_json() == text


# (field, a value of the wrong type in a file, the same as --override text
# or None where any text is of the field's type, what it must be).
BAD_TYPES = [
    ("stage1.epochs", 2.5, "2.5", "of type int"),
    ("stage1.batch_size", True, "true", "of type int"),
    ("model.patch_size", [8, 8], "8:8", "of type int"),
    ("stage1.backbone_lr", False, "no", "of type float"),
    ("data.flip", "yes", "maybe", "of type bool"),
    ("data.dataset", 5, None, "of type str"),
    ("data.mean", 0.5, None, "a list of float"),
    ("data.train_scales", [1.0, "x"], "1:x", "a list of float"),
    ("model.policy_mlp", [64, 2.5], "64:2.5", "a list of int"),
    ("model", 5, "5", "a mapping of ModelConfig fields"),
]


@pytest.mark.parametrize("kind", ["json", "yaml", "config.json"])
@pytest.mark.parametrize("dotted, value, text, must", BAD_TYPES)
def test_a_value_of_the_wrong_type_in_a_file_is_refused_by_name(
    tmp_path, kind, dotted, value, text, must):
  del text
  cfg = config_lib.get_preset("minik")
  if kind == "config.json":
    # A run's config.json read back: the whole config, one field bad.
    whole = cfg.to_dict()
    *parents, leaf = dotted.split(".")
    functools.reduce(dict.__getitem__, parents, whole)[leaf] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(whole))
    read = lambda: config_lib.ExperimentConfig.from_json(path.read_text(),
                                                         str(path))
  else:
    path = tmp_path / f"bad.{kind}"
    path.write_text(json.dumps(_nested(dotted, value)) if kind == "json"
                    else yaml.safe_dump(_nested(dotted, value)))
    read = lambda: config_lib.apply_dict(
        cfg, config_lib.load_file(str(path)), source=str(path))
  with pytest.raises(ValueError) as e:
    read()
  assert str(e.value) == (f"bad value for {dotted} from {path}: {value!r} "
                          f"is not {must}")
  # The command line reports it in one line (errors.RefusedError).
  assert isinstance(e.value, errors.RefusedError)
  assert cfg == config_lib.get_preset("minik")


@pytest.mark.parametrize("dotted, value, text, must",
                         [case for case in BAD_TYPES if case[2] is not None])
def test_an_override_of_the_wrong_type_is_refused_by_name(dotted, value,
                                                          text, must):
  del value
  cfg = config_lib.get_preset("minik")
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.apply_overrides(cfg, [f"{dotted}={text}"])
  message = str(e.value)
  assert message.startswith(f"bad value for {dotted} from --override: ")
  assert message.endswith(f" is not {must}")
  assert cfg == config_lib.get_preset("minik")


def test_a_python_value_of_the_wrong_type_is_refused():
  cfg = config_lib.get_preset("minik")
  with pytest.raises(config_lib.ConfigError, match=r"bad value for "
                     r"model.patch_size from --patch_size: \[8, 8\] is not "
                     "of type int"):
    config_lib.override(cfg, "model.patch_size", [8, 8], "--patch_size")


def test_values_are_taken_as_their_field_types(tmp_path):
  path = tmp_path / "c.yaml"
  # YAML 1.1 would read 1e-3 as a string; whole floats are ints.
  path.write_text("stage1:\n  epochs: 3.0\n  backbone_lr: 1e-3\n"
                  "  classifier_lr: 1\ndata:\n  train_scales: [1, 0.5]\n")
  cfg = config_lib.apply_dict(config_lib.get_preset("minik"),
                              config_lib.load_file(str(path)))
  s = cfg.stage1
  assert (s.epochs, s.backbone_lr, s.classifier_lr) == (3, 1e-3, 1.0)
  assert [type(v) for v in (s.epochs, s.backbone_lr, s.classifier_lr)] == [
      int, float, float]
  assert cfg.data.train_scales == (1.0, 0.5)
  assert all(type(v) is float for v in cfg.data.train_scales)
  config_lib.apply_overrides(cfg, ["data.flip=yes", "stage1.epochs=4.0",
                                   "model.train_batchnorm=0",
                                   "data.train_scales=1:0.875"])
  assert (cfg.data.flip, cfg.stage1.epochs, cfg.model.train_batchnorm) == (
      True, 4, False)
  assert cfg.data.train_scales == (1.0, 0.875)


def test_fixed_length_tuple_fields_take_one_item_per_type():
  hint = Tuple[int, float]
  assert config_checks.typed(hint, [1, 2], "x.pair", "t") == (1, 2.0)
  assert config_checks.typed(
      hint, config_checks.from_text(hint, "1:2"), "x.pair", "t") == (1, 2.0)
  for bad in ([1], [1, 2, 3], [1.5, 2]):
    with pytest.raises(config_lib.ConfigError, match="is not a list of 2 "
                       "items: int, float"):
      config_checks.typed(hint, bad, "x.pair", "t")
  with pytest.raises(config_lib.ConfigError, match="x.pair from t: "
                     "\\('1', '2', '3'\\) is not a list of 2 items"):
    config_checks.typed(hint, config_checks.from_text(hint, "1:2:3"),
                        "x.pair", "t")


def test_an_unknown_field_names_its_source():
  with pytest.raises(config_lib.ConfigError, match="config has no field "
                     "'model.patch' \\(from c.yaml\\)"):
    config_lib.apply_dict(config_lib.get_preset("minik"),
                          {"model": {"patch": 3}}, source="c.yaml")
  with pytest.raises(config_lib.ConfigError, match="unknown DataConfig "
                     "fields in run/config.json: \\['frames'\\]"):
    config_lib.ExperimentConfig.from_dict({"data": {"frames": 3}},
                                          "run/config.json")


# A preset of each model family.
FAMILY_PRESETS = {"one_stream": ("minik", "v1"),
                  "two_stream": ("sthv1", "v1"),
                  "v2": ("minik", "v2"),
                  "v2_tsm": ("sthv1", "v2"),
                  "uni": ("actnet", "uni"),
                  "uni_tsm": ("sthv1", "uni"),
                  "uni_x3d": ("kinetics", "uni")}


def _other(value):
  """A value of the type of ``value`` that is not ``value``."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, str):
    return value + "x"
  if isinstance(value, tuple):
    return value + (value[:1] or (1,))
  return value + 1


def test_every_family_has_its_unused_fields():
  assert set(FAMILY_PRESETS) == set(registry.names())
  v2 = registry.get("v2").unused()
  for dotted in ("stage2.discount", "stage2.reward", "stage3.train_focus",
                 "model.num_actions"):
    assert dotted in v2
  # Fields validate fixes per family are validate's to name.
  assert "stage2.epochs" not in v2 and "stage3.epochs" not in v2


@pytest.mark.parametrize("family, dotted", [
    (family, dotted) for family in sorted(FAMILY_PRESETS)
    for dotted in registry.get(family).unused()])
def test_a_change_to_a_field_the_family_does_not_use_is_refused(family,
                                                                dotted):
  cfg = config_lib.get_preset(*FAMILY_PRESETS[family])
  held = _field_value(cfg, dotted)
  value = _other(held)
  changed = {}
  config_lib.apply_dict(cfg, json.loads(json.dumps(_nested(dotted, value))),
                        source="c.json", changed=changed)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.check_family_fields(cfg, changed)
  assert str(e.value) == (
      f"config field {dotted}={value!r} from c.json: the {family} model "
      f"family does not use it; a source may only repeat the value the "
      f"config holds, {held!r}")


def test_the_family_is_the_resolved_one():
  # The file that makes a V1 config V2 makes its V1 fields unused...
  cfg = config_lib.get_preset("minik")
  changed = {}
  config_lib.apply_dict(cfg, {"model": {"variant": "v2"},
                              "stage2": {"discount": 0.5}}, source="c.yaml",
                        changed=changed)
  with pytest.raises(config_lib.ConfigError, match="stage2.discount=0.5 "
                     "from c.yaml: the v2 model family does not use it"):
    config_lib.check_family_fields(cfg, changed)
  # ...and the one that makes a V2 config V1 makes them used.
  cfg = config_lib.get_preset("minik", "v2")
  changed = {}
  config_lib.apply_dict(cfg, {"model": {"variant": "one_stream"},
                              "stage2": {"discount": 0.5}}, source="c.yaml",
                        changed=changed)
  config_lib.check_family_fields(cfg, changed)


def test_overrides_and_flags_are_sources_too():
  cfg = config_lib.get_preset("minik", "v2")
  changed = {}
  config_lib.override(cfg, "model.num_actions", 25, "--num_actions", changed)
  config_lib.apply_overrides(cfg, ["stage2.discount=0.5"], changed)
  with pytest.raises(config_lib.ConfigError, match="model.num_actions=25 "
                     "from --num_actions: the v2 model family"):
    config_lib.check_family_fields(cfg, changed)
  # Set back to the value the config held: no change left to refuse.
  config_lib.apply_overrides(cfg, ["model.num_actions=49"], changed)
  with pytest.raises(config_lib.ConfigError, match="stage2.discount=0.5 "
                     "from --override"):
    config_lib.check_family_fields(cfg, changed)
  config_lib.apply_overrides(cfg, ["stage2.discount=0.7"], changed)
  config_lib.check_family_fields(cfg, changed)


@pytest.mark.parametrize("method, preset", ALL_PRESETS)
def test_a_runs_whole_config_json_is_accepted_back_as_a_config_file(
    tmp_path, method, preset):
  # The run's config differs from its preset in fields its family uses.
  run_cfg = config_lib.get_preset(preset, method)
  run_cfg.model.patch_size, run_cfg.stage1.epochs = 48, 7
  path = tmp_path / "config.json"
  path.write_text(run_cfg.to_json())
  cfg = config_lib.get_preset(preset, method)
  changed = {}
  config_lib.apply_dict(cfg, config_lib.load_file(str(path)),
                        source=str(path), changed=changed)
  config_lib.check_family_fields(cfg, changed)
  assert cfg == run_cfg.validate()
  assert sorted(changed) == ["model.patch_size", "stage1.epochs"]

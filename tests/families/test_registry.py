"""The family registry: lookups, and bad names refused by name."""
import adafocus_tf  # pylint: disable=unused-import
import pytest

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.families import registry

BUILT_IN = ("one_stream", "two_stream", "v2", "v2_tsm")


def test_built_in_families_methods_and_presets():
  assert registry.names()[:4] == BUILT_IN
  assert registry.methods()[:2] == ("v1", "v2")
  assert registry.preset_family("sthv1", "v1").name == "two_stream"
  assert registry.preset_family("minik", "v2").name == "v2"
  assert registry.preset_family("kinetics", "v1") is None


def test_a_name_taken_is_refused_unless_replaced():
  family = registry.get("v2")
  with pytest.raises(ValueError, match="'v2' is already registered"):
    registry.register(family)
  assert registry.register(family, replace=True) is family
  assert registry.get("v2") is family


def test_an_unknown_family_is_named_with_the_registered_ones():
  with pytest.raises(ValueError, match=r"unknown model family 'v3'; "
                     r"registered families: one_stream, two_stream, v2, "
                     r"v2_tsm"):
    registry.get("v3")
  cfg = helpers.tiny_config()
  cfg.model.variant = "v3"
  with pytest.raises(ValueError, match=r"model.variant='v3': must be one of "
                     r"the registered model families"):
    cfg.validate()


def test_an_unknown_method_or_preset_names_the_choices():
  with pytest.raises(ValueError, match=r"unknown method 'v3'; choose one of "
                     r"\('v1', 'v2', 'uni'\)"):
    config_lib.get_preset("minik", "v3")
  with pytest.raises(ValueError, match=r"unknown dataset preset 'kinetics' "
                     r"for method v2; choose one of .*\(kinetics is a preset "
                     r"of --method=uni\)"):
    config_lib.get_preset("kinetics", "v2")
  with pytest.raises(ValueError, match=r"unknown dataset preset 'nope' for "
                     r"method v2; choose one of \[[^]]*\]$"):
    config_lib.get_preset("nope", "v2")

"""Uni-AdaFocus, ActivityNet family (docs/METHOD.md V2-11.2 to V2-11.7): presets,
config errors, the cost against the official constants, the focus plans of
every patch choice and the 17 (here K + 1) exits, whole-clip against step by
step."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import single_region_checks
from adafocus_tf import config as config_lib
from adafocus_tf.families import registry
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.profiling import flops

G = flops.G


@pytest.mark.parametrize("preset", ["actnet", "fcvid", "minik", "synthetic",
                                    "synthetic_objects"])
def test_every_preset_validates_and_trains_end_to_end(preset):
  cfg = config_lib.get_preset(preset, "uni").validate()
  family = registry.of(cfg)
  assert family.name == "uni" and family.stage_plan().keys() == {0, 1}
  assert cfg.data.num_frames % cfg.uni.glance_frames == 0


def test_paper_presets_hold_the_official_settings():
  a = config_lib.get_preset("actnet", "uni")
  assert (a.data.num_frames, a.uni.glance_frames, a.uni.focus_frames,
          a.model.patch_size) == (48, 16, 16, 128)
  s = a.stage1
  assert (s.backbone_lr, s.policy_lr, s.glance_lr, s.classifier_lr,
          s.batch_size, s.weight_decay, s.epochs) == (
              0.002, 0.0004, 0.001, 0.04, 32, 2e-4, 50)
  m = config_lib.get_preset("minik", "uni")
  assert (m.uni.norm_ratio, m.model.head_dropout, m.stage1.backbone_lr) == (
      0.75, 0.1, 0.003)


def test_actnet_costs_the_official_27_2_gflops_part_by_part():
  cost = flops.video_macs(config_lib.get_preset("actnet", "uni"))
  per = cost["per_video"]
  # docs/METHOD.md V2-11.7: MobileNetV2 0.29951 per glance frame, ResNet-50
  # 1.33460 per P = 128 patch, both policies 0.82249 + 0.00413, the
  # classifier (5.247 + 0.819) x 16 + (8.393 + 1.638) x 16 MFLOPs.
  assert per["glance"] / G == pytest.approx(16 * 0.29951, rel=2e-3)
  assert per["focus"] / G == pytest.approx(16 * 1.33460, rel=2e-3)
  assert per["policy"] / G == pytest.approx(0.82249 + 0.00413, rel=1e-3)
  assert per["classifier"] / G == pytest.approx(
      (16 * (5.247 + 0.819) + 16 * (8.393 + 1.638)) / 1e3, rel=1e-3)
  assert cost["gflops_per_video"] == pytest.approx(27.2, abs=0.05)


def test_the_glance_only_row_costs_exit_step_0():
  # The glance net and the classifier's glance steps on the 16 glance
  # frames (MLP and head, docs/METHOD.md V2-11.7), not the glance net's
  # own (training-only) head: what adafocus-flops, evaluation and the
  # recognizer's exit step 0 all report.
  cfg = config_lib.get_preset("actnet", "uni")
  cost = flops.video_macs(cfg)
  want = cost["per_video"]["glance"] / G + 16 * (5.247 + 0.819) / 1e3
  assert registry.of(cfg).choice_gflops(cfg, cost, "glance_only") == (
      pytest.approx(want, rel=1e-3))


@pytest.mark.parametrize("field, value, message", [
    ("uni.focus_frames", 9, "must be at most data.num_frames"),
    ("uni.glance_frames", 3, "must divide data.num_frames"),
    ("uni.min_region", 13, "uni.min_region <= uni.max_region"),
    ("uni.max_region", 40, "<= data.frame_size"),
])
def test_bad_frame_and_region_settings_are_named(field, value, message):
  cfg = helpers.tiny_uni_config()
  config_lib.override(cfg, field, value)
  with pytest.raises(ValueError, match=message) as e:
    cfg.validate()
  assert field.split(".")[0] in str(e.value)


def test_other_families_refuse_a_change_to_the_uni_section():
  cfg = config_lib.get_preset("synthetic", "v2")
  changed = {}
  config_lib.apply_overrides(cfg, ["uni.norm_ratio=0.5"], changed)
  with pytest.raises(config_lib.ConfigError, match="uni.norm_ratio=0.5 from "
                     "--override: the v2 model family does not use it"):
    config_lib.check_family_fields(cfg, changed)


@pytest.fixture(scope="module")
def tiny():
  cfg = helpers.tiny_uni_config()
  family = registry.of(cfg)
  model = family.build_model(cfg)
  model.build_all()
  rec = family.build_recognizer(cfg, model)
  s = cfg.data.frame_size
  batch = {"frames": tf.random.stateless_normal([3, 8, s, s, 3], [5, 6]),
           "seed": tf.constant([[1, 0], [2, 0], [3, 0]], tf.int64)}
  return cfg, rec, batch


@pytest.mark.parametrize("choice", ["policy", "random", "centre"])
def test_plans_pick_increasing_candidates_and_regions_inside(tiny, choice):
  cfg, rec, batch = tiny
  plan = rec.offsets(batch, rec.glance(batch), choice)
  idx = focus_plan.indices(plan).numpy()
  assert plan.shape == (3, 4, 5)
  assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0
  assert idx.max() < cfg.data.num_frames
  y, x, h, w = np.moveaxis(focus_plan.regions(plan).numpy(), -1, 0)
  s = cfg.data.frame_size
  assert np.all(y >= 0) and np.all(x >= 0)
  assert np.all(y + h <= s + 1e-4) and np.all(x + w <= s + 1e-4)
  lo, hi = cfg.uni.min_region, cfg.uni.max_region
  assert np.all((h >= lo - 1e-4) & (h <= hi + 1e-4))
  if choice != "policy":
    np.testing.assert_allclose(h, cfg.model.patch_size)
  if choice == "centre":
    assert idx[0].tolist() == [1, 3, 5, 7]


def test_step_by_step_exits_match_whole_clip_outputs(tiny):
  cfg, rec, batch = tiny
  assert rec.num_exit_steps == cfg.uni.focus_frames + 1
  whole, runner, pred = single_region_checks.exits_never_taken(rec, batch)
  full = runner.step_macs.sum()
  np.testing.assert_allclose(pred.macs, full)
  assert full == pytest.approx(flops.video_macs(cfg)["per_video"]["total"],
                               rel=1e-6)
  # Thresholds every video meets at once: the glance-only exit, which
  # costs the glance and the classifier's glance steps, no policy.
  first = runner.predict(batch, np.full(rec.num_exit_steps, -1e9))
  assert first.exit_steps.tolist() == [0, 0, 0]
  np.testing.assert_allclose(first.probs, whole[:, 0], atol=1e-5)
  cost = flops.video_macs(cfg)
  assert first.macs[0] == runner.step_macs[0]
  assert runner.step_macs[0] < cost["per_video"]["glance"] + cost[
      "per_video"]["classifier"]
  assert first.step_videos.tolist()[:2] == [3, 0]

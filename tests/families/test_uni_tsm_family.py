"""Uni-AdaFocus, TSM family (docs/METHOD.md V2-11.4, V2-11.5): presets, config
errors, the cost against the official constants, the focus plans of every
patch choice (one region per video) and the two exits, whole-clip against
step by step."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import single_region_checks
from adafocus_tf import config as config_lib
from adafocus_tf.families import registry
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.profiling import flops

G = flops.G
DATASETS = ("sthv1", "sthv2", "jester")
# The official early-exit script's constants (ops/early_exit_uni_adafocus_
# tsm.py), GFLOPs: TSM-MobileNetV2 per glance frame, TSM-ResNet-50 per
# patch at P = 96 / 128, the spatial and the temporal policy.
MN2_TSM = 0.299956768
R50_TSM = {96: 0.75143776, 128: 1.335314368}
SPATIAL, TEMPORAL = 0.41124288, 0.002065024


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_preset_validates_and_trains_end_to_end(dataset):
  cfg = config_lib.get_preset(dataset, "uni").validate()
  family = registry.of(cfg)
  assert family.name == "uni_tsm" and family.stage_plan().keys() == {0, 1}
  assert registry.preset_family(dataset, "uni") is family
  assert family.frame_streams(cfg) == {"glance_frames": 8,
                                       "focus_frames": 36}
  assert family.exit_criterion == exit_rule.MAX_LOGIT


@pytest.mark.parametrize("dataset, weight_decay, norm_ratio", [
    ("sthv1", 1e-3, 0.5), ("sthv2", 5e-4, 0.5), ("jester", 1e-3, 0.25)])
def test_presets_hold_the_official_readme_settings(dataset, weight_decay,
                                                   norm_ratio):
  cfg = config_lib.get_preset(dataset, "uni")
  d, m, u, s = cfg.data, cfg.model, cfg.uni, cfg.stage1
  assert (d.glance_frames, d.focus_frames, u.focus_frames, m.patch_size) == (
      8, 36, 12, 128)
  assert d.num_classes == (27 if dataset == "jester" else 174)
  assert not d.flip
  assert (m.glance_backbone, m.focus_backbone, m.temporal_shift,
          m.shift_div, m.patch_per_video) == (
              "mobilenet_v2_torch", "resnet50", True, 8, True)
  assert (m.head_dropout, m.classifier) == (0.5, "logit_mean")
  assert (u.min_region, u.max_region, u.spatial_hidden, u.temporal_hidden,
          u.mc_draws, u.norm_ratio, u.kl_ratio) == (
              96, 224, 128, 64, 128, norm_ratio, 0.0)
  assert (s.epochs, s.schedule_epochs, s.batch_size, s.momentum,
          s.weight_decay, s.grad_clip_norm) == (50, 50, 64, 0.9,
                                                weight_decay, 20.0)
  # lr 0.02: the policies x 0.2, the glance net and its heads x 0.5.
  assert (s.policy_lr, s.glance_lr, s.backbone_lr) == (0.004, 0.01, 0.02)
  assert cfg.stage2.epochs == 0 and cfg.stage3.epochs == 0


def _setting(patch, focus):
  cfg = config_lib.get_preset("sthv1", "uni")
  config_lib.override(cfg, "model.patch_size", patch)
  config_lib.override(cfg, "uni.focus_frames", focus)
  config_lib.override(cfg, "data.focus_frames", 3 * focus)
  return cfg.validate()


@pytest.mark.parametrize("patch, focus, published", [
    (96, 8, 8.8), (96, 12, 11.8), (128, 12, 18.8), (128, 16, 24.2)])
def test_cost_is_the_official_constants_and_the_published_totals(
    patch, focus, published):
  cost = flops.video_macs(_setting(patch, focus))
  per = cost["per_video"]
  # The official constants count both linear heads of each TSN (new_fc
  # and new_new_fc, 174 classes) with its backbone, and a few thousand
  # MACs more (biases, presumably); this project counts the prediction's
  # heads alone (the aux heads only train).
  assert cost["glance"] + 2 * cost["glance_head"] == pytest.approx(
      MN2_TSM * G, rel=1e-4)
  assert cost["focus"] + 2 * cost["focus_head"] == pytest.approx(
      R50_TSM[patch] * G, rel=1e-4)
  assert per["glance"] == 8 * cost["glance"]
  assert per["focus"] == focus * cost["focus"]
  assert per["policy"] / G == pytest.approx(SPATIAL + TEMPORAL, rel=2e-6)
  assert per["classifier"] == 8 * cost["glance_head"] + focus * cost[
      "focus_head"]
  official = 8 * MN2_TSM + SPATIAL + TEMPORAL + focus * R50_TSM[patch]
  assert cost["gflops_per_video"] == pytest.approx(official, rel=1e-3)
  assert round(cost["gflops_per_video"], 1) == published


def test_policy_parts_count_as_the_official_spatial_and_temporal_policy():
  cfg = config_lib.get_preset("sthv2", "uni")
  family = registry.of(cfg)
  macs = family.policy_macs(cfg, (7, 7, 1280))
  assert macs / G == pytest.approx(SPATIAL + TEMPORAL, rel=2e-6)
  assert family.policy_runs(cfg) == 1
  assert family.frames_read(cfg) == (8, 12)
  assert family.patch_steps(cfg) == 12


@pytest.mark.parametrize("field, value, message", [
    ("uni.focus_frames", 7, "must be at most data.focus_frames"),
    ("data.glance_frames", 2, "must be at least 3"),
    ("uni.min_region", 13, "uni.min_region <= uni.max_region"),
    ("uni.max_region", 40, "<= data.frame_size"),
    ("model.patch_per_video", False, "must be True for the uni_tsm model"),
    ("uni.focus_frames", 0, "must be at least 1"),
])
def test_bad_frame_and_region_settings_are_named(field, value, message):
  single_region_checks.assert_setting_refused(helpers.tiny_uni_tsm_config(),
                                              field, value, message)


def test_stage_0_of_the_tsm_focus_net_needs_clips_of_k_candidates():
  # Stage 0 fine-tunes the focus net on the candidates, which its shift
  # reads as clips of K frames.
  cfg = helpers.tiny_uni_tsm_config(stage0__backbones="glance,focus")
  config_lib.override(cfg, "data.focus_frames", 5)
  with pytest.raises(ValueError, match="data.focus_frames=5: must be a "
                     "multiple of uni.focus_frames"):
    cfg.validate()
  for field, value in (("stage0.epochs", 0), ("stage0.backbones", "glance"),
                       ("model.temporal_shift", False)):
    other = helpers.tiny_uni_tsm_config(stage0__backbones="glance,focus")
    config_lib.override(other, "data.focus_frames", 5)
    config_lib.override(other, field, value)
    other.validate()


def test_the_activitynet_family_s_glance_count_is_unused_here():
  cfg = config_lib.get_preset("sthv1", "uni")
  changed = {}
  config_lib.apply_overrides(cfg, ["uni.glance_frames=8"], changed)
  with pytest.raises(config_lib.ConfigError, match="uni.glance_frames=8 "
                     "from --override: the uni_tsm model family does not "
                     "use it"):
    config_lib.check_family_fields(cfg, changed)


VIDEOS = 3


@pytest.fixture(scope="module")
def tiny():
  cfg = helpers.tiny_uni_tsm_config()
  rec, batch = single_region_checks.tiny_recognizer(
      cfg, [[1, 0], [2, 0], [3, 0]], ([5, 6], [7, 8]), weight_seed=4)
  batch["boxes"] = tf.tile(tf.constant([[[0.5, 0.0, 0.75, 0.25]]]),
                           [VIDEOS, cfg.data.focus_frames, 1])
  return cfg, rec, batch


@pytest.mark.parametrize("choice", ["policy", "random", "centre", "oracle"])
def test_plans_cut_one_region_per_video_from_k_increasing_candidates(
    tiny, choice):
  cfg, rec, batch = tiny
  idx, regions = single_region_checks.check_plan(
      cfg, rec.offsets(batch, rec.glance(batch), choice), VIDEOS, choice)
  h = regions[..., 2]
  lo, hi = cfg.uni.min_region, cfg.uni.max_region
  assert np.all((h >= lo - 1e-4) & (h <= hi + 1e-4))
  if choice in ("centre", "oracle"):
    assert idx[0].tolist() == [1, 3, 5]
  if choice == "oracle":
    # P = 8 centred on the box (16..24, 0..8) of a 32-pixel frame.
    np.testing.assert_allclose(regions[:, 0, :2], [[16, 0]] * VIDEOS)


def test_oracle_needs_boxes(tiny):
  _, rec, batch = tiny
  no_boxes = {k: v for k, v in batch.items() if k != "boxes"}
  with pytest.raises(ValueError, match="oracle patches need object boxes"):
    rec.offsets(no_boxes, rec.glance(no_boxes), "oracle")


def test_prediction_is_the_two_head_means_and_the_exit_the_aux_mean(tiny):
  _, rec, batch = tiny
  model = rec.model
  out = rec(batch)
  maps, pooled = model.glance_features(batch["glance_frames"])
  plan = model.policy_plan(maps, pooled)
  glance_head = tf.reduce_mean(model.glance.head(pooled), 1)
  feats = model.focus_features(batch["focus_frames"], plan)
  focus_head = tf.reduce_mean(model.focus.head(feats), 1)
  np.testing.assert_allclose(out.logits[:, 1], glance_head + focus_head,
                             atol=1e-5)
  np.testing.assert_allclose(
      out.logits[:, 0],
      tf.reduce_mean(model.glance_aux_head(pooled), 1), atol=1e-5)
  np.testing.assert_allclose(out.glance_probs[:, 0],
                             tf.nn.softmax(out.logits[:, 0]), atol=1e-6)
  glance_only = rec(batch, "glance_only")
  np.testing.assert_allclose(glance_only.probs[:, -1],
                             tf.nn.softmax(out.logits[:, 0]), atol=1e-6)
  assert glance_only.offsets.shape == (VIDEOS, 3, 5)


def test_step_by_step_exits_match_whole_clip_outputs(tiny):
  cfg, rec, batch = tiny
  runner, cost, first = single_region_checks.check_exits_step_by_step(
      cfg, rec, batch)
  # The glance-only exit costs the glance net and its head on every glance
  # frame, without the policies (the official get_flops' k = 0).
  assert runner.step_macs[0] == cfg.data.glance_frames * (
      cost["glance"] + cost["glance_head"])
  np.testing.assert_allclose(first.macs, runner.step_macs[0])
  assert np.isnan(first.offsets).all()
  assert first.step_videos.tolist() == [VIDEOS, 0]


def test_baselines_cost_no_policy(tiny):
  cfg, rec, _ = tiny
  cost = flops.video_macs(cfg)
  policy = rec.exit_step_macs(cost, "policy")
  centre = rec.exit_step_macs(cost, "centre")
  assert policy[0] == centre[0]
  assert policy[1] - centre[1] == cost["per_video"]["policy"]

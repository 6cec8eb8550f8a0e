"""Uni-AdaFocus, X3D family (docs/METHOD.md V2-11.4, V2-11.5): the
``kinetics`` preset against the official README command (LeapLabTHU/
Uni-AdaFocus @ 8846488, "Uni-AdaFocus-X3D with Experiments on
Kinetics-400"), its cost against the official constants
(``ops/early_exit_unifocus_X3D.py``), and on a tiny X3D: the focus plans
(one region per video), the prediction and the glance-only exit as
``archs/uni_adafocus_X3D.py`` forms them, the two exits step by step
against whole clips and their cost, what each loss term trains
(``main.py`` ``train``), and training on records."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import single_region_checks
from adafocus_tf import config as config_lib
from adafocus_tf.families import registry
from adafocus_tf.families.uni_x3d import loss as x3d_loss
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.models.x3d import settings as x3d_settings
from adafocus_tf.profiling import flops

G = flops.G
# The official constants (GFLOPs): X3D-S on 16 x 160^2, X3D-L on 32 x
# 128^2, the spatial and the temporal policy; their sum, published as 8.8.
X3D_S, X3D_L = 2.415453044, 5.984521316
SPATIAL, TEMPORAL = 0.376217984, 0.001524864
# The official counter's batch norms, one operation per channel
# (tests/models/x3d/test_x3d_cost.py): X3D-S, X3D-L, the spatial policy's
# three of 128 channels and the temporal policy's two of 64.
OFFICIAL_BATCHNORM = 15_732 + 33_156 + 3 * 128 + 2 * 64
VIDEOS = 3


def test_kinetics_preset_is_the_official_command():
  cfg = config_lib.get_preset("kinetics", "uni").validate()
  assert registry.preset_family("kinetics", "uni").name == "uni_x3d"
  family = registry.of(cfg)
  assert family.name == "uni_x3d" and family.stage_plan().keys() == {1}
  assert family.exit_criterion == exit_rule.MAX_LOGIT
  d, m, u, s = cfg.data, cfg.model, cfg.uni, cfg.stage1
  assert family.frame_streams(cfg) == {"glance_frames": 16,
                                       "focus_frames": 96}
  assert (d.num_classes, u.focus_frames, m.glance_size, m.patch_size) == (
      400, 32, 160, 128)
  assert (m.glance_backbone, m.focus_backbone) == ("x3d_s", "x3d_l")
  assert (m.head_dropout, u.norm_ratio, u.spatial_hidden,
          u.temporal_hidden, u.min_region, u.max_region) == (
              0.5, 0.5, 128, 64, 96, 224)
  assert (s.epochs, s.schedule_epochs, s.batch_size, s.momentum,
          s.weight_decay, s.grad_clip_norm) == (50, 50, 64, 0.9, 5e-5, 20.0)
  # lr 0.005: the policies x 0.4, the glance net and its heads x 0.5.
  assert (s.policy_lr, s.glance_lr, s.backbone_lr) == (0.002, 0.0025, 0.005)
  assert cfg.mixed_precision == "mixed_float16"
  assert cfg.stage0.epochs == cfg.stage2.epochs == cfg.stage3.epochs == 0
  assert set(x3d_settings.BACKBONES) <= set(config_lib.BACKBONES)


def test_kinetics_cost_is_the_official_total():
  cfg = config_lib.get_preset("kinetics", "uni").validate()
  cost = flops.video_macs(cfg)
  per = cost["per_video"]
  official = X3D_S + X3D_L + SPATIAL + TEMPORAL
  # The official counter also counted one operation per batch-norm
  # channel; otherwise the same MACs.
  assert per["total"] + OFFICIAL_BATCHNORM == round(official * G)
  assert round(cost["gflops_per_video"], 1) == 8.8
  assert per["policy"] + 3 * 128 + 2 * 64 == round((SPATIAL + TEMPORAL) * G)
  assert cost["runs"] == {p: 1 for p in flops.PARTS}
  # The glance-only exit: X3D-S up to its map and the 16 per-frame heads
  # (432 -> 2048 -> 400 each), where the official constant counts X3D-S
  # with its own head: 1.1% more.
  head = 432 * 2048 + 2048 * 400
  assert cost["glance_head"] == 16 * head
  glance_only = flops.choice_gflops(cost, "glance_only")
  assert glance_only * G == cost["glance"] + 16 * head
  assert glance_only == pytest.approx(X3D_S, rel=0.011)


@pytest.mark.parametrize("field, value, message", [
    ("model.glance_backbone", "tiny_cnn", "must be one of"),
    ("model.temporal_shift", True, "must be False for the uni_x3d model"),
    ("data.glance_frames", 2, "must be at least 3"),
    ("uni.focus_frames", 9, "must be at most data.focus_frames"),
    ("uni.max_region", 40, "<= data.frame_size"),
])
def test_bad_settings_are_named(field, value, message):
  single_region_checks.assert_setting_refused(helpers.tiny_uni_x3d_config(),
                                              field, value, message)


@pytest.fixture(scope="module")
def tiny():
  cfg = helpers.tiny_uni_x3d_config()
  rec, batch = single_region_checks.tiny_recognizer(
      cfg, [[1, 0], [2, 0], [3, 0]], ([5, 6], [7, 8]), weight_seed=4)
  return cfg, rec, batch


@pytest.mark.parametrize("choice", ["policy", "random", "centre"])
def test_plans_cut_one_region_per_video_from_k_increasing_candidates(
    tiny, choice):
  cfg, rec, batch = tiny
  single_region_checks.check_plan(
      cfg, rec.offsets(batch, rec.glance(batch), choice), VIDEOS, choice)


def test_prediction_is_both_x3d_heads_and_the_exit_the_frame_heads(tiny):
  _, rec, batch = tiny
  model = rec.model
  out = rec(batch)
  maps, pooled = model.glance_features(batch["glance_frames"])
  plan = model.policy_plan(maps, pooled)
  focus_maps = model.focus_features(batch["focus_frames"], plan)
  # X3D.get_featmap's logits: the head on the whole map (no dropout here).
  expected = (model.glance.head.classify(maps)
              + model.focus.head.classify(focus_maps))
  np.testing.assert_allclose(out.logits[:, 1], expected, atol=1e-5)
  frame = model.glance_frame_head(tf.reduce_mean(maps, axis=[2, 3]))
  np.testing.assert_allclose(out.logits[:, 0], tf.reduce_mean(frame, 1),
                             atol=1e-5)
  # The per-frame heads start as the X3D heads (share_head_params).
  np.testing.assert_array_equal(model.glance_frame_head.lin.kernel,
                                model.glance.head.lin_5.kernel)
  np.testing.assert_array_equal(model.focus_frame_head.projection.bias,
                                model.focus.head.projection.bias)


def test_step_by_step_exits_match_whole_clips_and_cost(tiny):
  cfg, rec, batch = tiny
  runner, cost, _ = single_region_checks.check_exits_step_by_step(cfg, rec,
                                                                  batch)
  # Exit 0: X3D up to its map and the per-frame heads on the G frames, no
  # policy; exit 1: the policies, the focus net, both X3D heads.
  assert runner.step_macs[0] == cost["glance"] + cost["glance_head"]
  assert runner.step_macs[1] == (cost["per_video"]["total"]
                                 - runner.step_macs[0])
  centre = rec.exit_step_macs(cost, "centre")
  assert runner.step_macs[1] - centre[1] == cost["per_video"]["policy"]


def test_each_term_trains_what_the_official_objective_says(tiny):
  cfg, rec, batch = tiny
  model = rec.model
  targets = tf.one_hot(range(VIDEOS), cfg.data.num_classes)
  with tf.GradientTape(persistent=True) as tape:
    out = x3d_loss.end_to_end_loss(rec, batch, targets)
    terms = {k: tf.reduce_mean(v) for k, v in out.terms.items()}
  assert set(terms) == single_region_checks.LOSS_TERMS
  assert out.weights["size"] == cfg.uni.norm_ratio
  assert out.weights["policy_focus"] == out.weights["random_prediction"] == 0.5
  only = single_region_checks.term_checker(tape, terms)
  heads = {id(v) for net in (model.glance, model.focus)
           for v in (net.head.lin_5.trainable_variables
                     + net.head.projection.trainable_variables)}
  body = lambda net: [v for v in net.trainable_variables
                      if id(v) not in heads]
  only(model.spatial_policy.trainable_variables, "spatial", "spatial",
       "size")
  only(model.temporal_policy.trainable_variables, "temporal", "temporal")
  # The nets learn through their per-frame heads only (get_featmap pools
  # a detached map for the X3D heads).
  only(body(model.glance), "glance", "glance")
  only(body(model.focus), "focus", "policy_focus", "random_focus")
  only(model.glance.head.projection.trainable_variables, "glance head",
       "policy_prediction", "random_prediction")
  only(model.focus_frame_head.trainable_variables, "focus frame head",
       "policy_focus", "random_focus")
  only(model.aux_head.trainable_variables, "aux head", "spatial")
  groups = x3d_loss.variable_groups(model, cfg.stage1)
  grouped = [v.ref() for vs, _ in groups.values() for v in vs]
  assert len(grouped) == len(set(grouped))
  assert set(grouped) == {v.ref() for v in model.trainable_variables}


def test_mixed_float16_keeps_all_but_the_x3d_nets_in_float32():
  """As the official autocast around ``get_featmap`` alone (the preset's
  ``mixed_float16``)."""
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    cfg = helpers.tiny_uni_x3d_config(mixed_precision="mixed_float16")
    rec, batch = single_region_checks.tiny_recognizer(
        cfg, [[1, 0], [2, 0]], ([1, 2], [3, 4]))
    model = rec.model
    out = x3d_loss.end_to_end_loss(rec, batch, tf.one_hot(
        [0, 1], cfg.data.num_classes))
  finally:
    tf.keras.mixed_precision.set_global_policy(saved)
  assert model.glance.compute_dtype == model.focus.compute_dtype == "float16"
  for part in (model.glance_frame_head, model.focus_frame_head,
               model.aux_head, model.spatial_policy, model.temporal_policy):
    assert part.compute_dtype == "float32", part.name
  for name, term in out.terms.items():
    assert term.dtype == tf.float32 and np.all(np.isfinite(term)), name


@pytest.mark.training
def test_one_epoch_on_records_trains_and_evaluates(tmp_path):
  single_region_checks.check_one_epoch(tmp_path, helpers.tiny_uni_x3d_config,
                                       "uni_x3d")

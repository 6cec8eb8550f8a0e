"""Uni-AdaFocus-TSM's end-to-end stage (docs/METHOD.md V2-11.3, V2-11.4): its
variable groups, what each loss term trains, the injectable draws, and a
one-epoch run of the stage on real records."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
import single_region_checks
from adafocus_tf.families.uni import loss as uni_loss
from adafocus_tf.families.uni_tsm import loss as tsm_loss
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.policy import patch_choice

VIDEOS = 4


def _tiny():
  cfg = helpers.tiny_uni_tsm_config()
  rec, batch = single_region_checks.tiny_recognizer(
      cfg, [[i, 0] for i in range(VIDEOS)], ([1, 2], [3, 4]), weight_seed=5)
  return cfg, rec.model, rec, batch, tf.one_hot(range(VIDEOS),
                                                cfg.data.num_classes)


def test_groups_hold_every_trainable_variable_once_at_its_rate():
  cfg, model, _, _, _ = _tiny()
  groups = tsm_loss.variable_groups(model, cfg.stage1)
  s = cfg.stage1
  assert {k: lr for k, (_, lr) in groups.items()} == {
      "policy": s.policy_lr, "glance": s.glance_lr, "focus": s.backbone_lr}
  grouped = [v.ref() for vs, _ in groups.values() for v in vs]
  assert len(grouped) == len(set(grouped))
  assert set(grouped) == {v.ref() for v in model.trainable_variables}
  names = {k: {v.name for v in vs} for k, (vs, _) in groups.items()}
  # The spatial auxiliary head trains with the glance (the official aux_fc
  # at global_lr_ratio).
  assert any("aux_head" in n for n in names["glance"])


def test_each_term_trains_what_the_official_objective_says():
  cfg, model, rec, batch, targets = _tiny()
  with tf.GradientTape(persistent=True) as tape:
    out = tsm_loss.end_to_end_loss(rec, batch, targets)
    terms = {k: tf.reduce_mean(v) for k, v in out.terms.items()}
  assert set(terms) == single_region_checks.LOSS_TERMS
  assert out.weights["size"] == cfg.uni.norm_ratio
  for name in ("glance", "temporal", "spatial"):
    assert out.weights[name] == 1.0
  for branch in ("policy", "random"):
    assert out.weights[f"{branch}_prediction"] == 0.5
    assert out.weights[f"{branch}_focus"] == 0.5

  only_variables = single_region_checks.term_checker(tape, terms)

  def only(part, *trained_by):
    only_variables(part.trainable_variables, part.name, *trained_by)

  # The spatial policy: its auxiliary prediction and the size regulariser
  # (the focus regions use stopped actions).
  only(model.spatial_policy, "spatial", "size")
  # The temporal policy: the Monte-Carlo prediction (the selection reads
  # its weights without a gradient).
  only(model.temporal_policy, "temporal")
  # The backbones learn through their aux heads only: the prediction's
  # heads read stopped features, the policies stopped maps, features and
  # logits (this family's).
  only(model.glance.backbone, "glance")
  only(model.focus.backbone, "policy_focus", "random_focus")
  only(model.glance.head, "policy_prediction", "random_prediction")
  only(model.focus.head, "policy_prediction", "random_prediction")
  only(model.glance_aux_head, "glance")
  only(model.focus_aux_head, "policy_focus", "random_focus")
  only(model.aux_head, "spatial")


def test_the_branches_share_the_selected_frames_and_take_given_draws():
  cfg, model, rec, batch, targets = _tiny()
  k = cfg.uni.focus_frames
  given = {**batch,
           uni_loss.FRAME_DRAWS: tf.fill([VIDEOS, k], 0.5),
           uni_loss.MC_REMOVED: tf.zeros(
               [VIDEOS, 2, 1, cfg.data.glance_frames]),
           patch_choice.RANDOM_POSITIONS: tf.zeros([VIDEOS, 1, 2])}
  # The random branch: the given corner, regions of side P.
  actions = tsm_loss.random_actions(model, given)
  regions = model.regions(actions).numpy()
  p = cfg.model.patch_size
  np.testing.assert_allclose(regions, [[0, 0, p, p]] * VIDEOS, atol=1e-5)
  first = tsm_loss.end_to_end_loss(rec, given, targets)
  again = tsm_loss.end_to_end_loss(rec, given, targets)
  for name, value in first.terms.items():
    np.testing.assert_allclose(value, again.terms[name], rtol=1e-5,
                               err_msg=name)
  # u_i = 1/2 selects the test-time frames (the weights in training mode
  # equal those at test on these frames only up to batch norm, so the
  # selection is checked on the same weights).
  weights = model.temporal_weights(model.glance_features(
      batch["glance_frames"])[1])
  plan = model.plan_of(weights, actions, given[uni_loss.FRAME_DRAWS])
  test_plan = model.plan_of(weights, actions)
  np.testing.assert_array_equal(focus_plan.indices(plan),
                                focus_plan.indices(test_plan))


@pytest.mark.training
def test_one_epoch_on_records_trains_and_evaluates(tmp_path):
  single_region_checks.check_one_epoch(tmp_path, helpers.tiny_uni_tsm_config,
                                       "uni_tsm")

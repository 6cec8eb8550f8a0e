"""Uni-AdaFocus's end-to-end stage (docs/METHOD.md V2-11.3, U-4): its variable
groups and what each loss term trains (its kill-and-resume run:
tests/training/test_resume.py)."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

import helpers
from adafocus_tf.families import registry
from adafocus_tf.families.uni import loss as uni_loss


def _tiny():
  cfg = helpers.tiny_uni_config()
  family = registry.of(cfg)
  model = family.build_model(cfg)
  model.build_all()
  rec = family.build_recognizer(cfg, model)
  s = cfg.data.frame_size
  batch = {"frames": tf.random.stateless_normal([4, 8, s, s, 3], [1, 2]),
           "seed": tf.constant([[i, 0] for i in range(4)], tf.int64)}
  return cfg, model, rec, batch, tf.one_hot([0, 1, 2, 3],
                                            cfg.data.num_classes)


def test_groups_hold_every_trainable_variable_once_at_its_rate():
  cfg, model, _, _, _ = _tiny()
  groups = uni_loss.variable_groups(model, cfg.stage1)
  s = cfg.stage1
  assert {k: lr for k, (_, lr) in groups.items()} == {
      "policy": s.policy_lr, "glance": s.glance_lr, "focus": s.backbone_lr,
      "classifier": s.classifier_lr}
  grouped = [v.ref() for vs, _ in groups.values() for v in vs]
  assert len(grouped) == len(set(grouped))
  assert set(grouped) == {v.ref() for v in model.trainable_variables}


def test_each_term_trains_what_the_official_objective_says():
  cfg, model, rec, batch, targets = _tiny()
  with tf.GradientTape(persistent=True) as tape:
    out = uni_loss.end_to_end_loss(rec, batch, targets)
    terms = {k: tf.reduce_mean(v) for k, v in out.terms.items()}
  assert set(terms) == {"glance", "temporal", "spatial", "size",
                        "policy_steps", "policy_focus", "random_steps",
                        "random_focus"}
  assert out.weights["size"] == cfg.uni.norm_ratio
  assert out.weights["policy_steps"] == 0.5 and out.weights["glance"] == 1.0

  def moved(term, part):
    grads = tape.gradient(terms[term], part.trainable_variables)
    return any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
               for g in grads)
  # The spatial policy learns only through its auxiliary prediction and the
  # size regulariser: the focus regions use stopped actions.
  for term in ("spatial", "size"):
    assert moved(term, model.spatial_policy)
  for term in ("policy_steps", "policy_focus", "glance", "temporal"):
    assert not moved(term, model.spatial_policy), term
  # The temporal policy learns through the Monte-Carlo prediction only
  # (the selection reads its weights without a gradient).
  assert moved("temporal", model.temporal_policy)
  for term in ("policy_steps", "policy_focus", "spatial"):
    assert not moved(term, model.temporal_policy), term
  # The glance net learns from its head, the MC prediction (not detached
  # in this family) and the classifier's glance steps.
  for term in ("glance", "temporal", "policy_steps"):
    assert moved(term, model.glance)
  assert moved("random_focus", model.focus)
  assert not moved("spatial", model.focus)

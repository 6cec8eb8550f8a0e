"""Uni-AdaFocus under mixed float16 (docs/METHOD.md V2-11.4): which parts
compute in half precision, as the official autocast has them, and one
training step of each family.

  * ActivityNet family, the semi-AMP model (``models/uni_adafocus_semiAMP.py``
    ``AdaFocus.forward``): only ``global_CNN.get_featmap`` and
    ``local_CNN.get_featvec`` under autocast, their outputs ``.float()``;
    policies, MC prediction, region sampling and ``PoolingClassifier`` in
    float32.
  * TSM family (``archs/uni_adafocus_tsm.py`` ``AdaFocus.forward`` under
    ``main.py``'s autocast): the whole forward in half precision but for the
    ``autocast(enabled=False)`` blocks: the policies on ``.float()``
    features, ``MCSampleFeature``, the frame selection and the cut of the
    glance maps for ``aux_fc``.

Here every head's logits are float32 too (``models/precision.py``).
"""
import contextlib

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.families import registry
from adafocus_tf.models import precision

MIXED = "mixed_float16"
VIDEOS = 2
# Training steps: dynamic loss scaling may skip a step whose float16
# gradients overflow (halving the scale), so two show it both ways.
STEPS = 2
CONFIGS = {"uni": helpers.tiny_uni_config,
           "uni_tsm": helpers.tiny_uni_tsm_config}


@contextlib.contextmanager
def _global_policy(name):
  saved = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(saved)


def _batch(cfg):
  """A batch of VIDEOS random videos with labels 0, 1, ..."""
  d, s = cfg.data, cfg.data.frame_size
  labels = tf.range(VIDEOS) % d.num_classes
  batch = {"seed": tf.constant([[i + 1, 0] for i in range(VIDEOS)], tf.int64),
           "label": labels, "multi_hot": tf.one_hot(labels, d.num_classes)}
  if cfg.model.variant == "uni_tsm":
    batch["glance_frames"] = tf.random.stateless_normal(
        [VIDEOS, d.glance_frames, s, s, 3], [1, 2])
    batch["focus_frames"] = tf.random.stateless_normal(
        [VIDEOS, d.focus_frames, s, s, 3], [3, 4])
  else:
    batch["frames"] = tf.random.stateless_normal(
        [VIDEOS, d.num_frames, s, s, 3], [1, 2])
  return batch


def _full_precision_parts(model):
  """The policies, the spatial auxiliary head and (ActivityNet family) the
  pooling classifier."""
  parts = [model.temporal_policy, model.spatial_policy, model.aux_head]
  if hasattr(model, "classifier"):
    parts.append(model.classifier)
  return parts


@pytest.fixture(scope="module", params=list(CONFIGS))
def mixed(request):
  """(family name, cfg, model built under mixed float16, batch)."""
  with _global_policy(MIXED):
    cfg = CONFIGS[request.param](mixed_precision=MIXED)
    model = registry.of(cfg).build_model(cfg)
    model.build_all()
  return request.param, cfg, model, _batch(cfg)


def test_policies_and_classifier_keep_float32_variables_and_compute(mixed):
  name, _, model, _ = mixed
  parts = _full_precision_parts(model)
  assert len(parts) == (4 if name == "uni" else 3)
  for part in parts:
    layers = [part] + [m for m in part.submodules
                       if isinstance(m, tf.keras.layers.Layer)]
    assert {l.compute_dtype for l in layers} == {"float32"}, part.name
    assert part.variables
    assert {v.dtype for v in part.variables} == {tf.float32}, part.name
  for net in (model.glance, model.focus):
    assert net.backbone.compute_dtype == "float16"
    assert {v.dtype for v in net.backbone.variables} == {tf.float32}
    assert net.head.compute_dtype == "float32"


def test_backbones_compute_in_float16_and_the_rest_in_float32(mixed):
  name, cfg, model, batch = mixed
  with _global_policy(MIXED):
    if name == "uni":
      frames = batch["frames"]
      # The backbones' own outputs are float16...
      raw_maps, raw_pooled = model.glance(frames[:, 0])
      assert raw_maps.dtype == raw_pooled.dtype == tf.float16
      # ...read in float32 by the semi-AMP model.
      maps, pooled = model.glance_features(frames)
      assert maps.dtype == pooled.dtype == tf.float32
      plan = model.policy_plan(maps, pooled)
      assert model.focus(model.patches(frames, plan)).dtype == tf.float16
      feats = model.focus_features(frames, plan)
      assert feats.dtype == tf.float32
      logits = model.head_logits(pooled, frames, plan)
      assert logits.dtype == tf.float32
      actions = model.frame_actions(maps)
    else:
      # The whole TSM forward in float16 but the policies' part.
      maps, pooled = model.glance_features(batch["glance_frames"])
      assert maps.dtype == pooled.dtype == tf.float16
      plan = model.policy_plan(maps, pooled)
      feats = model.focus_features(batch["focus_frames"], plan)
      assert feats.dtype == tf.float16
      logits = model.head_logits(pooled, batch["focus_frames"], plan)
      assert logits.dtype == tf.float32
      actions = model.video_actions(maps)
    weights = model.temporal_policy(pooled)
    aux = model.spatial_aux_logits(maps, actions)
  assert weights.dtype == actions.dtype == plan.dtype == aux.dtype == tf.float32
  np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, rtol=1e-6)
  assert np.all(np.isfinite(logits.numpy()))
  assert logits.shape[-1] == cfg.data.num_classes


def test_full_precision_builds_float32_layers_and_restores_the_policy():
  with _global_policy(MIXED):
    with precision.full_precision():
      dense = tf.keras.layers.Dense(2)
    half = tf.keras.layers.Dense(2)
    assert tf.keras.mixed_precision.global_policy().name == MIXED
    x = tf.ones([1, 3], tf.float16)
    assert dense(x).dtype == tf.float32 and dense.kernel.dtype == tf.float32
    assert half(x).dtype == tf.float16
    cast = precision.to_full_precision((x, {"a": x}))
    assert cast[0].dtype == cast[1]["a"].dtype == tf.float32
  # Without a mixed policy nothing changes (float64 models stay float64).
  with _global_policy("float64"):
    with precision.full_precision():
      assert tf.keras.layers.Dense(2).compute_dtype == "float64"
    x = tf.ones([1], tf.float64)
    assert precision.to_full_precision(x) is x


@pytest.mark.training
@pytest.mark.parametrize("family_name", list(CONFIGS))
def test_one_mixed_float16_step_scales_the_loss_and_gives_finite_terms(
    family_name):
  """The stage's own step (``EndToEndTask.replica_step``), loss scaling
  from the config, as ``main_semiAMP.py`` / ``main.py``'s GradScaler."""
  with _global_policy(MIXED):
    cfg = CONFIGS[family_name](mixed_precision=MIXED)
    family = registry.of(cfg)
    task = family.stage_plan()[1](cfg, 1)
    task.build()
    opt = task.optimizer
    assert isinstance(opt.optimizer,
                      tf.keras.mixed_precision.LossScaleOptimizer)
    scale = float(opt.optimizer.loss_scale.numpy())
    assert scale > 1.0
    assert float(opt.scale_loss(tf.constant(2.0)).numpy()) == 2.0 * scale
    batch = _batch(cfg)
    before = [v.numpy() for v in opt.variables_to_train]
    for _ in range(STEPS):
      out, details = task.replica_step(batch, VIDEOS, with_terms=True)
      assert out["loss"].dtype == tf.float32
      assert np.isfinite(out["loss"].numpy())
      terms = {k: float(v.numpy()) for k, v in details["terms"].items()}
      assert terms and all(np.isfinite(list(terms.values()))), terms
  after = [v.numpy() for v in opt.variables_to_train]
  assert all(np.all(np.isfinite(a)) for a in after)
  moved = any(not np.array_equal(b, a) for b, a in zip(before, after))
  skipped = float(opt.optimizer.loss_scale.numpy()) < scale
  # Each step either updated the weights or halved the scale (skipped).
  assert moved or skipped
  policy = {v.ref() for v in task.model.temporal_policy.variables
            + task.model.spatial_policy.variables}
  assert all(v.dtype == tf.float32 for v in opt.variables_to_train
             if v.ref() in policy)

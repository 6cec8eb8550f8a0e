"""Uni-AdaFocus-TSM's training loss and variable groups (docs/METHOD.md
V2-11.3, V2-11.4).

The official TSM training step runs the glance once and two branches on
the same selected candidates: one uniformly random position per video
(the region's side P) and the spatial policy's region. Its loss is

    [CE(prediction) x 2 branches + CE(mean glance aux logits) x 2
     + CE(mean focus aux logits) x 2 branches + CE(temporal MC) x 2
     + CE(spatial aux) x 2] / 2 + norm_ratio x mean((s - 1)^2),

the terms shared by both branches being the same tensor twice. Here:
``glance``, ``temporal``, ``spatial`` once, ``size`` x ``uni.norm_ratio``
(+ ``kl`` x ``uni.kl_ratio`` when set), and ``<branch>_prediction``,
``<branch>_focus`` for ``random`` and ``policy`` at 1/2 each.

Random draws come from the video seeds, or from the batch (the keys of
``families/uni/loss.py``; ``patch_choice.RANDOM_POSITIONS`` is then one
position per video, [B, 1, 2]).
"""
import tensorflow as tf

from adafocus_tf.families.uni import loss as uni_loss
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.training import step_loss

# The two branches, in the official order.
BRANCHES = ("random", "policy")


def random_actions(model, batch):
  """The random branch's action [B, 4] per video: a uniform position, the
  size whose side is P (the official ``action_1``)."""
  b = tf.shape(batch["seed"])[0]
  return uni_loss.random_branch_actions(model, batch,
                                        tf.zeros([b, 1], tf.int32))[:, 0]


def regions_and_plans(model, batch, maps, weights, bn):
  """The spatial policy's part of a step: (its auxiliary logits [B, C], the
  actions they came from [B, 4] (for the size regulariser), the plans
  (random branch, policy branch), each [B, K, 5]).

  Args:
    model: a ``single_region.SingleRegionUni`` network.
    batch: the pipeline batch (``seed``; optionally the injected draws).
    maps: [B, G, h, w, C] glance maps.
    weights: [B, G] the temporal weights.
    bn: batch-norm mode of the policy.
  """
  # The official step runs the spatial policy twice (its batch-norm
  # averages move twice): for the auxiliary prediction and the size
  # regulariser, then for the focus region.
  aux_actions = model.video_actions(maps, training=bn)
  aux = model.spatial_aux_logits(maps, aux_actions)
  actions = model.video_actions(maps, training=bn)
  frame_draws = batch.get(uni_loss.FRAME_DRAWS)
  if frame_draws is None:
    frame_draws = frame_selection.quantile_draws(
        uni_loss.stream_seeds(batch["seed"], uni_loss.FRAME_STREAM),
        model.num_focus)
  return aux, aux_actions, tuple(
      model.plan_of(weights, a, frame_draws)
      for a in (random_actions(model, batch), actions))


def branch_loss(model, terms, weights_of, glance_head, focus, seeds,
                targets) -> step_loss.StepLoss:
  """The step's loss: ``terms`` plus each branch's prediction and focus
  terms (each weighted 0.5: the official sum over branches, halved).

  Args:
    model: a ``single_region.SingleRegionUni`` network with
      ``focus_heads``.
    terms: {name: per-video loss} of the shared terms (changed in place).
    weights_of: {name: weight} of the terms not weighted 1 (changed too).
    glance_head: [B, C] the prediction's glance summand.
    focus: (random branch, policy branch) focus outputs, what
      ``model.focus_heads`` reads.
    seeds: [B, 2] the videos' seeds.
    targets: [B, C] target distributions.
  """
  branch_seeds = (uni_loss.stream_seeds(seeds, uni_loss.RANDOM_BRANCH_STREAM),
                  seeds)
  logits = None
  for i, name in enumerate(BRANCHES):
    focus_head, focus_frames = model.focus_heads(focus[i], branch_seeds[i],
                                                 training=True)
    logits = glance_head + focus_head
    terms[f"{name}_prediction"] = classifier_lib.soft_cross_entropy(logits,
                                                                    targets)
    terms[f"{name}_focus"] = classifier_lib.soft_cross_entropy(focus_frames,
                                                               targets)
    weights_of[f"{name}_prediction"] = weights_of[f"{name}_focus"] = 0.5
  # ``logits``: the policy branch's, the last.
  return step_loss.of_terms(terms, tf.nn.softmax(tf.cast(logits, tf.float32)),
                            weights_of)


def two_branch_loss(recognizer, batch, targets, glance_pass,
                    focus_pass) -> step_loss.StepLoss:
  """The step shared by the single-region families (TSM, X3D; module doc):
  one glance pass, the temporal terms, the spatial policy's plans, both
  branches' focus outputs, then ``branch_loss``.

  Args:
    recognizer: the stage's recognizer (``model``, ``cfg``).
    batch: the pipeline batch (``glance_frames``, ``focus_frames``: the
      candidates, ``seed``; the draws' keys of ``families/uni/loss.py``
      optionally).
    targets: [B, C] target distributions.
    glance_pass: ``(model, maps, pooled, seeds)`` -> (the prediction's
      glance summand [B, C], the features the temporal policy reads, the
      per-frame glance logits [B, G, C]) of the family's glance heads.
    focus_pass: ``(model, candidates, plans, bn)`` -> the focus outputs
      [2, B, ...] of both branches (random first), what
      ``model.focus_heads`` reads.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's.
  """
  model, seeds = recognizer.model, batch["seed"]
  bn = recognizer.cfg.model.train_batchnorm
  maps, pooled = model.glance_features(batch["glance_frames"], training=bn)
  glance_head, features, frame_logits = glance_pass(model, maps, pooled,
                                                    seeds)
  weights, ce_temporal, kl = uni_loss.temporal_terms(
      model, batch, features, frame_logits, targets, bn, detach=True)
  aux, aux_actions, plans = regions_and_plans(model, batch, maps, weights,
                                              bn)
  focus = focus_pass(model, batch["focus_frames"], plans, bn)
  terms = {"glance": classifier_lib.soft_cross_entropy(
      tf.reduce_mean(frame_logits, axis=1), targets)}
  weights_of = {}
  uni_loss.shared_terms(terms, weights_of, model, ce_temporal, kl, aux,
                        aux_actions, targets)
  return branch_loss(model, terms, weights_of, glance_head, focus, seeds,
                     targets)


def _glance_pass(model, maps, pooled, seeds):
  """The TSM glance heads (``two_branch_loss``'s ``glance_pass``): the
  temporal policy and its Monte-Carlo prediction read the dropped features
  and the per-frame aux logits (both stopped there)."""
  del maps  # The TSM heads read the pooled per-frame features only.
  dropped = model.glance_dropout(pooled, seeds, training=True)
  glance_head, glance_aux = model.glance_heads(dropped)
  return glance_head, dropped, glance_aux


def _focus_pass(model, candidates, plans, bn):
  """Both branches' patches in one batch of the focus net (its batch
  statistics over both), the random branch's first, as the official
  (``two_branch_loss``'s ``focus_pass``)."""
  b = tf.shape(candidates)[0]
  patches = tf.concat([model.patches(candidates, p) for p in plans], 0)
  feats = model.focus(patches, training=bn)
  return tf.reshape(feats, [2, b, model.num_focus, feats.shape[-1]])


def end_to_end_loss(recognizer, batch, targets) -> step_loss.StepLoss:
  """Uni-AdaFocus-TSM's training loss of a batch (module doc).

  Args:
    recognizer: the stage's ``UniTSMRecognizer``.
    batch: the pipeline batch (``glance_frames``, ``focus_frames``: the
      candidates, ``seed``; the draws' keys optionally).
    targets: [B, C] target distributions.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's.
  """
  return two_branch_loss(recognizer, batch, targets, _glance_pass,
                         _focus_pass)


def variable_groups(model, scfg):
  """Variable groups and base rates (docs/METHOD.md V2-11.4): both policies
  at ``policy_lr``; the glance net with its two heads and the spatial
  auxiliary head at ``glance_lr``; the focus net with its two heads at
  ``backbone_lr``. No classifier of its own."""
  return {"policy": (model.temporal_policy.trainable_variables
                     + model.spatial_policy.trainable_variables,
                     scfg.policy_lr),
          "glance": (model.glance.trainable_variables
                     + model.glance_aux_head.trainable_variables
                     + model.aux_head.trainable_variables, scfg.glance_lr),
          "focus": (model.focus.trainable_variables
                    + model.focus_aux_head.trainable_variables,
                    scfg.backbone_lr)}

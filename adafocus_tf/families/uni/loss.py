"""Uni-AdaFocus's training loss and variable groups, ActivityNet family
(docs/METHOD.md V2-11.3, U-4).

Two branches share the glance pass, the temporal weights and the selected
frames: the policies' regions and uniformly random positions (regions of
side P). Each branch gives CE(every step's logits) and CE(the focus head
on every patch), weighing 1/2; once for both: CE(the glance head on every
glance frame), CE(the temporal policy's Monte-Carlo prediction),
CE(the spatial policy's auxiliary prediction), and the size regulariser
mean((s - 1)^2) x ``uni.norm_ratio`` (+ KL(w || uniform) x
``uni.kl_ratio`` when set).

Random draws come from the video seeds, or from the batch for parity
tests (the keys below).
"""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models.uni import deformable_regions
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import temporal_objective
from adafocus_tf.policy import patch_choice
from adafocus_tf.training import step_loss

# Batch keys that give the step's draws instead of the seeds.
GLANCE_DRAWS = "uni_glance_draws"     # int [B, G]: the frame in each group
FRAME_DRAWS = "uni_frame_draws"       # [B, K]: the selection's u_i
MC_REMOVED = "uni_mc_removed"         # [B, S, T1, G]: Monte-Carlo removals
# The random branch's positions, one per candidate [B, N, 2].
RANDOM_POSITIONS = patch_choice.RANDOM_POSITIONS
# Added to a video's seed for each draw, so that they are independent.
_GLANCE_STREAM, FRAME_STREAM, _MC_STREAM, _POSITION_STREAM = 11, 12, 13, 14
RANDOM_BRANCH_STREAM = 5


def stream_seeds(seeds, stream: int):
  """Per-video seeds [B, 2] of one draw (``*_STREAM``), independent of the
  others'."""
  return seeds + tf.constant([stream, 0], seeds.dtype)


def random_branch_actions(model, batch, indices):
  """The random branch's actions [B, K, 4] at the selected candidates:
  uniform positions, the size whose side is P."""
  positions = batch.get(RANDOM_POSITIONS)
  if positions is None:
    positions = tf.map_fn(
        lambda s: tf.random.stateless_uniform([model.num_candidates, 2], s),
        stream_seeds(batch["seed"], _POSITION_STREAM),
        fn_output_signature=tf.float32)
  chosen = tf.gather(tf.cast(positions, model.spatial_policy.out_dtype),
                     indices, batch_dims=1)
  size = deformable_regions.size_of_side(model.patch_size, model.min_region,
                                         model.max_region)
  return tf.concat([chosen, tf.fill(tf.shape(chosen),
                                   tf.cast(size, chosen.dtype))], -1)


def temporal_terms(model, batch, pooled, glance_logits, targets, bn,
                   detach: bool = False):
  """(weights [B, G], the Monte-Carlo CE [B], the KL term [B] or None).

  Args:
    model: a Uni-AdaFocus model (``temporal_policy``).
    batch: the pipeline batch (``seed``; optionally ``MC_REMOVED``).
    pooled: [B, G, C] pooled glance features.
    glance_logits: [B, G, C] the glance head's logits.
    targets: [B, C] target distributions.
    bn: batch-norm mode of the policy.
    detach: the policy and the prediction read stopped glance features and
      logits (the TSM family).
  """
  if detach:
    pooled, glance_logits = (tf.stop_gradient(pooled),
                             tf.stop_gradient(glance_logits))
  weights = model.temporal_policy(pooled, training=bn)
  removed = batch.get(MC_REMOVED)
  if removed is None:
    removed = temporal_objective.removal_masks(
        weights, stream_seeds(batch["seed"], _MC_STREAM), model.mc_draws,
        model.num_glance // 3)
  mc = temporal_objective.mc_logits(glance_logits, weights, removed)
  ce = classifier_lib.soft_cross_entropy(mc, targets)
  kl = None
  if model.kl_ratio:
    k = float(model.num_focus)
    kl = tf.reduce_sum(weights * (tf.math.log(weights) + tf.math.log(k)), -1)
  return weights, ce, kl


def size_regulariser(actions):
  """[B]: mean over a video's actions of (s - 1)^2 (the two sizes)."""
  sizes = actions[..., deformable_regions.SIZE]
  return tf.reduce_mean(tf.reshape(tf.square(sizes - 1.0),
                                   [tf.shape(sizes)[0], -1]), -1)


def shared_terms(terms, weights_of, model, ce_temporal, kl, aux, actions,
                 targets):
  """Adds the once-per-batch policy terms to ``terms`` / ``weights_of``."""
  terms["temporal"] = ce_temporal
  terms["spatial"] = classifier_lib.soft_cross_entropy(aux, targets)
  terms["size"] = size_regulariser(actions)
  weights_of["size"] = model.norm_ratio
  if kl is not None:
    terms["kl"] = kl
    weights_of["kl"] = model.kl_ratio


def end_to_end_loss(recognizer, batch, targets) -> step_loss.StepLoss:
  """Uni-AdaFocus's training loss of a batch (module doc).

  Args:
    recognizer: the stage's ``UniRecognizer``.
    batch: the pipeline batch (``frames``: the candidates; ``seed``; the
      draws' keys optionally).
    targets: [B, C] target distributions.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's last step.
  """
  model, frames, seeds = recognizer.model, batch["frames"], batch["seed"]
  bn = recognizer.cfg.model.train_batchnorm
  b = tf.shape(frames)[0]
  draws = batch.get(GLANCE_DRAWS)
  if draws is None:
    draws = frame_selection.group_draws(stream_seeds(seeds, _GLANCE_STREAM),
                                        model.num_candidates, model.num_glance)
  maps, pooled = model.glance_features(frames, training=bn, draws=draws)
  glance_logits = model.glance_head_logits(pooled, seeds, training=True)
  # The official model runs the spatial policy twice in training (its
  # batch-norm averages move twice): once for the focus regions...
  actions = model.frame_actions(maps, training=bn)
  weights, ce_temporal, kl = temporal_terms(model, batch, pooled,
                                            glance_logits, targets, bn)
  # ...and once for its auxiliary prediction.
  aux_actions = model.frame_actions(maps, training=bn)
  aux = model.spatial_aux_logits(maps, aux_actions)
  frame_draws = batch.get(FRAME_DRAWS)
  if frame_draws is None:
    frame_draws = frame_selection.quantile_draws(
        stream_seeds(seeds, FRAME_STREAM), model.num_focus)
  plan = model.plan_of(weights, actions, frame_draws)
  idx = focus_plan.indices(plan)
  random_plan = focus_plan.make(
      idx, model.regions(random_branch_actions(model, batch, idx)))
  # The focus net sees both branches' patches in one batch (its batch
  # statistics over both), as the official model runs it.
  patches = tf.concat([model.patches(frames, plan),
                       model.patches(frames, random_plan)], 0)
  feats = model.patch_features(patches, training=bn)
  feats = tf.reshape(feats, [2, b, model.num_focus, feats.shape[-1]])
  terms = {"glance": classifier_lib.per_step_loss(glance_logits, targets)}
  weights_of = {}
  shared_terms(terms, weights_of, model, ce_temporal, kl, aux, aux_actions,
               targets)
  logits = None
  branch_seeds = (seeds, stream_seeds(seeds, RANDOM_BRANCH_STREAM))
  for i, name in enumerate(("policy", "random")):
    steps = model.classifier(pooled, feats[i], branch_seeds[i], training=True,
                             batchnorm=bn)
    focus_logits = model.focus_head_logits(feats[i], branch_seeds[i],
                                           training=True)
    terms[f"{name}_steps"] = classifier_lib.per_step_loss(steps, targets)
    terms[f"{name}_focus"] = classifier_lib.per_step_loss(focus_logits,
                                                          targets)
    weights_of[f"{name}_steps"] = weights_of[f"{name}_focus"] = 0.5
    logits = steps[:, -1] if logits is None else logits
  return step_loss.of_terms(terms, tf.nn.softmax(tf.cast(logits, tf.float32)),
                            weights_of)


def variable_groups(model, scfg):
  """Variable groups and base rates (docs/METHOD.md V2-11.4): both policies at
  ``policy_lr``; the glance net, its head and the auxiliary head at
  ``glance_lr``; the focus net and its head at ``backbone_lr``; the
  classifier at ``classifier_lr``."""
  return {"policy": (model.temporal_policy.trainable_variables
                     + model.spatial_policy.trainable_variables,
                     scfg.policy_lr),
          "glance": (model.glance.trainable_variables
                     + model.aux_head.trainable_variables, scfg.glance_lr),
          "focus": (model.focus.trainable_variables, scfg.backbone_lr),
          "classifier": (model.classifier.trainable_variables,
                         scfg.classifier_lr)}

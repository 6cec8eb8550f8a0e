"""Uni-AdaFocus-X3D's training loss and variable groups (docs/METHOD.md
V2-11.3, V2-11.4; official ``main.py`` ``train`` and
``archs/uni_adafocus_X3D.py`` ``AdaFocus.forward`` in training mode).

As the TSM family's (``families/uni_tsm/loss.py``): one glance pass, two
branches on the same selected candidates (a uniformly random position of
side P per video, then the spatial policy's region), their patches in one
batch of the focus net, and

    [CE(prediction) x 2 branches + CE(mean per-frame glance logits) x 2
     + CE(mean per-frame focus logits) x 2 branches + CE(temporal MC) x 2
     + CE(spatial aux) x 2] / 2 + norm_ratio x mean((s - 1)^2).

Here: ``glance``, ``temporal``, ``spatial`` once, ``size`` x
``uni.norm_ratio`` (+ ``kl`` when set), and ``<branch>_prediction``,
``<branch>_focus`` for ``random`` and ``policy`` at 1/2 each. The
prediction is the glance X3D head's logits (on the stopped glance maps,
shared by both branches) plus the branch's focus X3D head's; the temporal
policy reads the stopped per-frame glance features, its Monte-Carlo
prediction the stopped per-frame glance logits.
"""
import tensorflow as tf

from adafocus_tf.families.uni_tsm import loss as tsm_loss
from adafocus_tf.training import step_loss


def _glance_pass(model, maps, pooled, seeds):
  """The X3D glance heads (``tsm_loss.two_branch_loss``'s ``glance_pass``):
  the prediction's summand reads the glance maps, the temporal policy the
  pooled per-frame features and their per-frame logits."""
  glance_head = model.glance_logits(maps, seeds, training=True)
  frame_logits = model.glance_frame_logits(pooled, seeds, training=True)
  return glance_head, pooled, frame_logits


def _focus_pass(model, candidates, plans, bn):
  """Both branches' clips in one batch of the focus net (its batch
  statistics over both), the random branch's first, as the official
  (``tsm_loss.two_branch_loss``'s ``focus_pass``)."""
  b = tf.shape(candidates)[0]
  focus_maps = model.focus_clip_features(
      tf.concat([model.focus_clip(candidates, p) for p in plans], 0),
      training=bn)
  return tf.reshape(focus_maps, tf.concat(
      [[2, b], tf.shape(focus_maps)[1:]], 0))


def end_to_end_loss(recognizer, batch, targets) -> step_loss.StepLoss:
  """Uni-AdaFocus-X3D's training loss of a batch (module doc).

  Args:
    recognizer: the stage's ``UniX3DRecognizer``.
    batch: the pipeline batch (``glance_frames``, ``focus_frames``: the
      candidates, ``seed``; the draws' keys of ``families/uni/loss.py``
      optionally).
    targets: [B, C] target distributions.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's.
  """
  return tsm_loss.two_branch_loss(recognizer, batch, targets, _glance_pass,
                                  _focus_pass)


def variable_groups(model, scfg):
  """Variable groups and base rates (docs/METHOD.md V2-11.4; the official
  ``get_optim_policies``): both policies at ``policy_lr``; X3D-S with its
  per-frame head and the spatial auxiliary head at ``glance_lr``; X3D-L
  with its per-frame head at ``backbone_lr``."""
  return {"policy": (model.temporal_policy.trainable_variables
                     + model.spatial_policy.trainable_variables,
                     scfg.policy_lr),
          "glance": (model.glance.trainable_variables
                     + model.glance_frame_head.trainable_variables
                     + model.aux_head.trainable_variables, scfg.glance_lr),
          "focus": (model.focus.trainable_variables
                    + model.focus_frame_head.trainable_variables,
                    scfg.backbone_lr)}

"""V2-TSM's training loss and variable groups (docs/METHOD.md V2-5, V2-6)."""
from adafocus_tf.families.v2 import loss as v2_loss
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.training import step_loss


def end_to_end_loss(recognizer, batch, targets) -> step_loss.StepLoss:
  """V2-TSM's training loss (docs/METHOD.md V2-6).

  The glance stream's heads run once: CE(mean glance ``aux_head``)
  (``glance_aux``) once; the policy's location and one uniformly random
  location per video each give CE(prediction: glance ``head`` + focus
  ``head`` means) (``<branch>_prediction``) + CE(mean focus ``aux_head``)
  (``<branch>_focus_aux``), each branch weighing 1/2: the official mean
  of two branch losses that both hold the glance term.

  Args:
    recognizer: the stage's ``V2TwoStreamRecognizer``.
    batch: the pipeline batch (``glance_frames``, ``focus_frames``,
      ``seed``; optionally ``patch_choice.RANDOM_POSITIONS``).
    targets: [B, C] target distributions.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's.
  """
  model = recognizer.model
  # model.train_batchnorm off: every batch norm on its running statistics
  # (replicas then compute exactly what one device does).
  bn = recognizer.cfg.model.train_batchnorm
  g = recognizer.glance(batch, training=bn)
  g_head, g_aux = model.glance_means(g.pooled, batch["seed"],
                                     training=True)
  shared = {"glance_aux": classifier_lib.soft_cross_entropy(g_aux,
                                                            targets)}

  def branch(offsets, seeds):
    f_head, f_aux = model.focus_means(batch["focus_frames"], offsets,
                                      seeds, training=True, batchnorm=bn)
    logits = model.combine(g_head, f_head)[:, 0]
    return ({"prediction": classifier_lib.soft_cross_entropy(logits,
                                                             targets),
             "focus_aux": classifier_lib.soft_cross_entropy(f_aux,
                                                            targets)},
            logits)
  # The official V2-TSM model runs the random location first.
  return v2_loss.mean_of_branches(model, batch, g, 1, bn, branch, shared,
                                 random_first=True)


def variable_groups(model, scfg):
  """Variable groups and base rates of V2-TSM's end-to-end stage
  (docs/METHOD.md V2-5): no classifier of its own, each net's two heads
  (``head`` inside the net, ``aux_head`` beside it) train with the net.

  Args:
    model: a ``TwoStreamAdaFocusV2``.
    scfg: the stage's config: ``policy_lr``, ``glance_lr`` (the glance net
      and its heads), ``backbone_lr`` (the focus net and its heads).

  Returns:
    dict group name -> (variables, base learning rate).
  """
  glance = (model.glance.trainable_variables
            + model.glance_aux_head.trainable_variables)
  focus = (model.focus.trainable_variables
           + model.focus_aux_head.trainable_variables)
  return {"policy": (model.policy.trainable_variables, scfg.policy_lr),
          "glance": (glance, scfg.glance_lr),
          "focus": (focus, scfg.backbone_lr)}

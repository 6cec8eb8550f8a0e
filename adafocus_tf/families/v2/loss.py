"""AdaFocusV2's training loss and variable groups (docs/METHOD.md V2-4,
V2-5): the policy's patches and random ones, each branch's terms weighing
1/2 (``mean_of_branches``, shared with V2-TSM)."""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import patches
from adafocus_tf.policy import patch_choice
from adafocus_tf.training import step_loss

# Added to a video's seed for the V2 random branch's dropout masks, so that
# they are drawn independently of the policy branch's.
_RANDOM_BRANCH_STREAM = 5


def mean_of_branches(model, batch, glance, num_positions: int,
                     training: bool, branch_terms, shared,
                     random_first: bool = False) -> step_loss.StepLoss:
  """V2's loss: the shared terms, and the mean over the policy's patches
  and random ones of each branch's terms.

  Args:
    model: a V2 model (``policy_offsets``, ``frame_size``, ``patch_size``).
    batch: the pipeline batch (``seed``; the random branch's positions
      [B, num_positions, 2] in [0, 1], chronological, under
      ``patch_choice.RANDOM_POSITIONS`` when given, else drawn from the
      seeds).
    glance: the batch's glance, run once for both branches.
    num_positions: random positions per video (one per frame, or 1).
    training: batch-norm mode of the policy.
    branch_terms: (offsets, seeds) -> ({term: per-video [B]}, the
      prediction's logits [B, C]) of one branch.
    shared: {term: per-video [B]} computed once for both branches.
    random_first: run the random branch first (V2-TSM's official order;
      the ActivityNet family's runs the policy's first). The order decides
      which branch's batch statistics the focus net's and the classifier's
      running averages take last.

  Returns:
    The ``StepLoss``: ``shared``'s terms, and ``policy_<term>`` and
    ``random_<term>`` weighing 1/2; its prediction is the policy branch's.
  """
  seeds = batch["seed"]
  policy = model.policy_offsets(glance.maps, training=training)
  positions = batch.get(patch_choice.RANDOM_POSITIONS)
  if positions is None:
    positions = patches.random_positions(
        patch_choice.random_patch_seeds(seeds), num_positions)
  random = patches.continuous_offsets(positions, model.frame_size,
                                      model.patch_size)
  random_seeds = seeds + tf.constant([_RANDOM_BRANCH_STREAM, 0], seeds.dtype)
  if random_first:
    random_terms, _ = branch_terms(random, random_seeds)
  policy_terms, logits = branch_terms(policy, seeds)
  if not random_first:
    random_terms, _ = branch_terms(random, random_seeds)
  terms = dict(shared)
  for name, branch in (("policy", policy_terms), ("random", random_terms)):
    terms.update({f"{name}_{k}": v for k, v in branch.items()})
  return step_loss.of_terms(
      terms, tf.nn.softmax(tf.cast(logits, tf.float32)),
      {k: 0.5 for k in terms if k not in shared})


def end_to_end_loss(recognizer, batch, targets) -> step_loss.StepLoss:
  """V2's training loss of a batch (docs/METHOD.md V2-4), every part training.

  The glance runs once, and its head's CE on every frame (``glance``)
  once; the policy's patches and uniformly random ones each give
  CE(every step's logits) (``<branch>_steps``) + CE(the focus head on
  every patch) (``<branch>_focus``), each branch weighing 1/2. That is
  the official mean of two branch losses that both hold the glance term.

  Args:
    recognizer: the stage's ``V2Recognizer``.
    batch: the pipeline batch (``frames``, ``seed``; optionally
      ``patch_choice.RANDOM_POSITIONS``, the random branch's draws).
    targets: [B, C] target distributions.

  Returns:
    The ``StepLoss``; its prediction is the policy branch's last step.
  """
  model, frames = recognizer.model, batch["frames"]
  # model.train_batchnorm off: every batch norm on its running statistics
  # (replicas then compute exactly what one device does).
  bn = recognizer.cfg.model.train_batchnorm
  g = recognizer.glance(batch, training=bn)
  shared = {"glance": classifier_lib.per_step_loss(
      model.glance_head_logits(g.pooled, batch["seed"], training=True),
      targets)}

  def branch(offsets, seeds):
    out = model.head_outputs(g.pooled, frames, offsets, seeds,
                             training=True, batchnorm=bn)
    # Per-frame heads: the same cross-entropy per frame.
    return ({"steps": model.classifier.loss(out.logits, targets),
             "focus": classifier_lib.per_step_loss(out.focus_logits,
                                                   targets)},
            out.logits[:, -1])
  return mean_of_branches(model, batch, g, recognizer.cfg.data.num_frames,
                          bn, branch, shared)


def variable_groups(model, scfg):
  """Variable groups and base rates of V2's end-to-end stage
  (docs/METHOD.md V2-5).

  Args:
    model: an ``AdaFocusV2``.
    scfg: the stage's config: ``policy_lr``, ``glance_lr`` (the glance net
      and its head), ``backbone_lr`` (the focus net and its head),
      ``classifier_lr``.

  Returns:
    dict group name -> (variables, base learning rate).
  """
  return {"policy": (model.policy.trainable_variables, scfg.policy_lr),
          "glance": (model.glance.trainable_variables, scfg.glance_lr),
          "focus": (model.focus.trainable_variables, scfg.backbone_lr),
          "classifier": (model.classifier.trainable_variables,
                         scfg.classifier_lr)}

"""The V1 one-stream family (docs/METHOD.md section 2), whole definition.

T frames, a patch per frame chosen by a recurrent policy trained with PPO
(stage 2), a recurrent (or per-frame) classifier that predicts after every
frame. Stages 0 (backbones), 1 (random patches), 2 (PPO), 3 (policy
patches).

  config section: ``ModelConfig`` fields; checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/adafocus.py`` ``AdaFocus``
  recognizer:     ``recognizer.py`` ``OneStreamRecognizer``
  stage plan:     ``training/tasks``: backbones, patches, PPO policy
  exit:           top probability after each frame
  cost:           ``profiling/flops.py`` actor MACs, once per frame
  converter:      the official AdaFocus (V1) ActivityNet/FCVID/Mini-Kinetics
                  files (``convert/fill.py``)
"""
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.config_checks import require
from adafocus_tf.families import stream_checks
from adafocus_tf.families.one_stream import ppo_scores
from adafocus_tf.families.one_stream import presets
from adafocus_tf.families.one_stream import recognizer
from adafocus_tf.models import adafocus
from adafocus_tf.profiling import flops
from adafocus_tf.training import tasks

NAME = "one_stream"


def v2_rates(*stages: int):
  """The glance and policy rates of ``stages``: only AdaFocusV2's end-to-end
  stage reads them; a supervised stage has one rate per net.

  Args:
    *stages: stage numbers.
  """
  return tuple(f"stage{s}.{name}" for s in stages
               for name in ("glance_lr", "policy_lr"))


class OneStreamFamily(model_family.ModelFamily):
  """V1: one frame stream, a patch per frame, a prediction per frame."""

  name = NAME
  method = "v1"
  title = "AdaFocus"
  classifiers = ("gru", "fc")
  # policy_mlp: V2-TSM's policy; shift_div: the TSM backbones of the
  # two-stream families.
  unused_fields = ("model.policy_mlp", "model.shift_div") + v2_rates(0, 1, 3)
  official_checkpoints = (("adafocus", "v1"),)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.one_stream(cfg, self.name)
    require(cfg.model.frame_order == "chronological", "model.frame_order",
            cfg.model.frame_order, "the coarse-to-fine order belongs to V2 "
            "(model.variant v2)")
    stream_checks.discrete_grid(cfg)

  def build_model(self, cfg):
    return adafocus.AdaFocus(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    return recognizer.OneStreamRecognizer(cfg, model, policy, policy_glance)

  def stage_plan(self):
    return {0: tasks.BackboneTask, 1: tasks.PatchTask,
            2: tasks.policy(ppo_scores.scores_along), 3: tasks.policy_patches}

  def stage0_glance_dropout(self, cfg):
    # The official stage 0 trains the glance net with torchvision's
    # MobileNetV2 head: Dropout(0.2) then the linear layer
    # (``Glancer.predict``; its ResNet-50 focus head has none).
    return cfg.model.head_dropout

  def policy_macs(self, cfg, map_shape):
    return flops.actor_policy_macs(cfg, map_shape)

  def classifier_cost(self, cfg, feature_dim, glance_head, focus_head):
    # One GRU step (or the per-frame layer) and the output layer per frame.
    m = cfg.model
    return (flops.step_classifier_macs(m.classifier, feature_dim,
                                       cfg.data.num_classes,
                                       m.classifier_hidden),
            cfg.data.num_frames)


FAMILY = registry.register(OneStreamFamily())

"""The AdaFocusV2 family (docs/METHOD.md V2-1 to V2-7), whole definition.

One frame stream; a deterministic recurrent position policy inside the
model places a patch per frame at real-valued offsets (bilinear sampling),
trained end to end with the rest in one stage; the ``frame_exit``
classifier (a per-frame MLP, a running max, a head per step); the
coarse-to-fine frame order.

  config section: ``ModelConfig`` fields; checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/adafocus_v2.py`` ``AdaFocusV2``
  recognizer:     ``recognizer.py`` ``V2Recognizer``
  stage plan:     ``training/tasks``: backbones, then end to end with
                  ``loss.py``'s loss and variable groups
  exit:           the step's top logit (docs/METHOD.md V2-7)
  cost:           ``profiling/flops.py`` recurrent position policy, per frame
  converter:      the official AdaFocusV2 files (``convert/v2.py``)
"""
from adafocus_tf import config as config_lib
from adafocus_tf.config_checks import require
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.v2 import loss
from adafocus_tf.families.v2 import presets
from adafocus_tf.families.v2 import recognizer
from adafocus_tf.models import adafocus_v2
from adafocus_tf.profiling import flops
from adafocus_tf.training import tasks

NAME = "v2"
# V1's patch policy (``policy/action_space.py``, ``policy/networks.py``):
# its kind, grid and spread; V2's position policies are deterministic.
V1_POLICY_FIELDS = ("model.policy", "model.num_actions", "model.policy_std")
# The stage-0 rates V2's end-to-end stage alone reads.
STAGE0_RATES = ("stage0.glance_lr", "stage0.policy_lr")


class V2Family(model_family.ModelFamily):
  """AdaFocusV2: its policy is part of the model, trained end to end."""

  name = NAME
  method = "v2"
  title = "AdaFocusV2"
  classifiers = ("frame_exit",)
  unused_fields = (V1_POLICY_FIELDS + ("model.policy_mlp", "model.shift_div")
                   + STAGE0_RATES)
  exit_criterion = model_family.MAX_LOGIT
  policy_in_model = True
  fractional_patches = True
  glance_head_trained = True
  official_checkpoints = (("adafocus_v2", "v2"),)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.one_stream(cfg, self.name)
    require(cfg.model.frame_order in config_lib.FRAME_ORDERS,
            "model.frame_order", cfg.model.frame_order,
            f"must be one of {config_lib.FRAME_ORDERS}")
    stream_checks.v2_policy(cfg)

  def build_model(self, cfg):
    return adafocus_v2.AdaFocusV2(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    del policy, policy_glance  # The model carries its policy.
    return recognizer.V2Recognizer(cfg, model)

  def stage_plan(self):
    return {0: tasks.BackboneTask,
            1: tasks.end_to_end(loss.end_to_end_loss, loss.variable_groups)}

  def policy_macs(self, cfg, map_shape):
    m = cfg.model
    return flops.recurrent_position_policy_macs(
        tuple(map_shape), m.policy_conv_channels, m.policy_hidden)

  def classifier_cost(self, cfg, feature_dim, glance_head, focus_head):
    # The shared MLP and one step head per frame.
    return (flops.frame_exit_macs(feature_dim, cfg.data.num_classes,
                                  cfg.model.classifier_hidden),
            cfg.data.num_frames)


FAMILY = registry.register(V2Family())

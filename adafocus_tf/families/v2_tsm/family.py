"""V2-TSM, AdaFocusV2's two-stream Something-Something family
(docs/METHOD.md V2-6), whole definition.

Two frame streams with TSM backbones, one real-valued patch per video from
a position policy (an MLP over the glance maps of all glance frames) inside
the model, trained end to end; prediction = mean glance head logits + mean
focus head logits (no classifier of its own).

  config section: ``ModelConfig`` fields; checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/v2_two_stream.py`` ``TwoStreamAdaFocusV2``
  recognizer:     ``recognizer.py`` ``V2TwoStreamRecognizer``
  stage plan:     ``training/tasks``: backbones, then end to end with
                  ``loss.py``'s loss and variable groups
  exit:           2 steps (glance, focus), top probability
  cost:           ``profiling/flops.py`` per-video position policy
  converter:      the official AdaFocusV2 Something-Something files
"""
from adafocus_tf.config_checks import require
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.two_stream import family as two_stream
from adafocus_tf.families.v2 import family as v2
from adafocus_tf.families.v2_tsm import loss
from adafocus_tf.families.v2_tsm import presets
from adafocus_tf.families.v2_tsm import recognizer
from adafocus_tf.models import v2_two_stream
from adafocus_tf.profiling import flops
from adafocus_tf.training import tasks

NAME = "v2_tsm"


class V2TwoStreamFamily(model_family.ModelFamily):
  """V2-TSM: two streams, one real-valued patch per video, end to end."""

  name = NAME
  method = "v2"
  title = "AdaFocusV2"
  classifiers = ("logit_mean",)
  # Its policy is an MLP (policy_mlp, no GRU); it has no classifier of its
  # own, only the nets' heads (their dropout is head_dropout).
  unused_fields = (v2.V1_POLICY_FIELDS + (
      "model.policy_hidden", "model.classifier_hidden", "model.dropout")
                   + v2.STAGE0_RATES)
  policy_in_model = True
  fractional_patches = True
  glance_head_trained = True
  official_checkpoints = (("adafocus_v2", "v2_tsm"),)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.two_stream(cfg, self.name)
    require(cfg.model.glance_backbone not in ("mobilenet_v2",
                                              "resnet50_keras"),
            "model.glance_backbone", cfg.model.glance_backbone,
            "V2-TSM needs a backbone that takes a temporal shift "
            "(mobilenet_v2_torch)")
    stream_checks.v2_policy(cfg)

  def frame_streams(self, cfg):
    return two_stream.two_streams(cfg)

  def build_model(self, cfg):
    return v2_two_stream.TwoStreamAdaFocusV2(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    del policy, policy_glance  # The model carries its policy.
    return recognizer.V2TwoStreamRecognizer(cfg, model)

  def stage_plan(self):
    return {0: tasks.BackboneTask,
            1: tasks.end_to_end(loss.end_to_end_loss, loss.variable_groups)}

  def policy_macs(self, cfg, map_shape):
    m = cfg.model
    return flops.video_position_policy_macs(
        tuple(map_shape), cfg.data.glance_frames, m.policy_conv_channels,
        tuple(m.policy_mlp))


FAMILY = registry.register(V2TwoStreamFamily())

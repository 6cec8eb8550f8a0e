"""Uni-AdaFocus, TSM family (docs/METHOD.md V2-11.4, V2-11.5), whole
definition.

Two frame streams as V2-TSM's: G glance frames for a TSM-MobileNetV2 and
N candidate frames of which a temporal policy picks K for a TSM-ResNet-50;
a spatial policy places one deformable region per video, cut from every
selected frame; both policies are inside the model and train end to end
through auxiliary predictions; prediction = mean glance head logits +
mean focus head logits (no classifier of its own); a video may stop after
the glance (2 exits).

  config section: ``ModelConfig``, ``data.glance_frames`` (G),
                  ``data.focus_frames`` (N candidates) and ``uni`` fields
                  (K = ``uni.focus_frames``); checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/uni/uni_tsm.py`` ``UniAdaFocusTSM``
  recognizer:     ``recognizer.py`` ``UniTSMRecognizer``
  stage plan:     ``training/tasks``: backbones, then end to end with
                  ``loss.py``'s loss and variable groups
  exit:           the step's top logit; after the glance, and at the end
  cost:           ``families/uni/cost.py`` (the policies), the
                  prediction's linear heads
"""
from adafocus_tf.config_checks import require
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.uni import cost
from adafocus_tf.families.uni import family as uni
from adafocus_tf.families.uni import single_region
from adafocus_tf.families.uni_tsm import loss
from adafocus_tf.families.uni_tsm import presets
from adafocus_tf.families.uni_tsm import recognizer
from adafocus_tf.families.v2 import family as v2
from adafocus_tf.models.uni import uni_tsm
from adafocus_tf.training import tasks

NAME = "uni_tsm"
# The V1 and V2 policies' settings, the pooling classifier's width and
# dropout and its rate (no classifier of its own: the heads train with
# their nets), the ActivityNet family's glance count: unread here.
_UNUSED = v2.V1_POLICY_FIELDS + (
    "model.policy_mlp", "model.policy_hidden", "model.policy_conv_channels",
    "model.policy_batchnorm", "model.classifier_hidden", "model.dropout",
    "stage1.classifier_lr", "uni.glance_frames")


class UniTSMFamily(single_region.SingleRegionFamily):
  """Uni-AdaFocus-TSM: where in time and space, two streams, two exits."""

  name = NAME
  method = "uni"
  title = "Uni-AdaFocus-TSM"
  classifiers = ("logit_mean",)
  unused_fields = _UNUSED + v2.STAGE0_RATES
  exit_criterion = model_family.MAX_LOGIT
  policy_in_model = True
  fractional_patches = True
  glance_head_trained = True
  sections = ("uni",)
  official_checkpoints = (("uni_adafocus", "uni_tsm"),)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.two_stream(cfg, self.name)
    d, m, u = cfg.data, cfg.model, cfg.uni
    require(not m.temporal_shift or m.glance_backbone not in (
        "mobilenet_v2", "resnet50_keras"), "model.glance_backbone",
            m.glance_backbone, "a temporal shift needs a backbone that takes "
            "one (mobilenet_v2_torch)")
    uni.check_frames(cfg, d.focus_frames, d.glance_frames, u.focus_frames,
                     "data.glance_frames", "data.focus_frames")
    require(d.glance_frames >= 3, "data.glance_frames", d.glance_frames,
            "must be at least 3: the temporal policy's Monte-Carlo "
            "objective averages over removing 0 to data.glance_frames // 3 "
            "- 1 glance frames")
    uni.check_regions(cfg)
    s0 = cfg.stage0
    require(not (m.temporal_shift and s0.epochs and "focus" in s0.backbones)
            or d.focus_frames % u.focus_frames == 0, "data.focus_frames",
            d.focus_frames, f"must be a multiple of uni.focus_frames "
            f"({u.focus_frames}) when stage 0 fine-tunes the TSM focus net "
            "on the candidates (its shift reads clips of uni.focus_frames "
            "frames); or set stage0.epochs=0")

  def build_model(self, cfg):
    return uni_tsm.UniAdaFocusTSM(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    del policy, policy_glance  # The model carries its policies.
    return recognizer.UniTSMRecognizer(cfg, model)

  def stage_plan(self):
    return {0: tasks.BackboneTask,
            1: tasks.end_to_end(loss.end_to_end_loss, loss.variable_groups)}

  def policy_macs(self, cfg, map_shape):
    g, u = cfg.data.glance_frames, cfg.uni
    return (cost.spatial_policy_macs(map_shape, g, u.spatial_hidden, g)
            + cost.temporal_policy_macs(map_shape[-1], g, u.temporal_hidden))

  def policy_runs(self, cfg):
    return 1

  def classifier_cost(self, cfg, feature_dim, glance_head, focus_head):
    # The prediction's heads: the glance head on G frames, the focus head
    # on K patches (the auxiliary heads only train; the glance-only row
    # counts its head as the glance's).
    del feature_dim
    return (cfg.data.glance_frames * glance_head
            + cfg.uni.focus_frames * focus_head), 1


FAMILY = registry.register(UniTSMFamily())

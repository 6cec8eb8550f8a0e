"""Uni-AdaFocus, ActivityNet family (docs/METHOD.md V2-11.1 to V2-11.7), whole
definition.

One stream of N candidate frames; the glance net reads G of them; a
temporal policy picks K for the focus net and a spatial policy a
deformable region in each, both inside the model and trained end to end
through auxiliary predictions; the pooling classifier predicts after every
glance and focus frame; a video may stop after the glance (17 exits).

  config section: ``ModelConfig`` and ``uni`` fields; checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/uni/uni_adafocus.py`` ``UniAdaFocus``
  recognizer:     ``recognizer.py`` ``UniRecognizer``
  stage plan:     ``training/tasks``: backbones, then end to end with
                  ``loss.py``'s loss and variable groups
  exit:           the step's top logit, exits after the glance and after
                  each focus frame
  cost:           ``cost.py``
  converter:      the official Uni-AdaFocus files of this family
                  (``convert/uni.py``)
"""
from adafocus_tf.config_checks import require
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.uni import cost as cost_lib
from adafocus_tf.families.uni import loss
from adafocus_tf.families.uni import presets
from adafocus_tf.families.uni import recognizer
from adafocus_tf.families.v2 import family as v2
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.models.uni import uni_adafocus
from adafocus_tf.profiling import flops
from adafocus_tf.training import tasks

NAME = "uni"
# Settings of the V1 and V2 policies and of V1's classifier, unread here.
_OTHER_POLICY_FIELDS = v2.V1_POLICY_FIELDS + (
    "model.policy_mlp", "model.policy_hidden", "model.policy_conv_channels",
    "model.policy_batchnorm", "model.frame_order", "model.shift_div",
    "model.temporal_shift", "model.patch_per_video")


def check_frames(cfg, candidates: int, glance: int, focus: int,
                 glance_field: str, candidates_field: str):
  """The candidate, glance and focus frame counts agree (named fields)."""
  require(focus >= 1, "uni.focus_frames", focus, "must be at least 1")
  require(focus <= candidates, "uni.focus_frames", focus,
          f"must be at most {candidates_field} ({candidates}): the focus "
          "frames are distinct candidates")
  require(glance >= 1, glance_field, glance, "must be at least 1")
  del cfg


def check_regions(cfg):
  u = cfg.uni
  require(0 < u.min_region <= u.max_region <= cfg.data.frame_size,
          "uni.min_region", (u.min_region, u.max_region),
          f"regions need 0 < uni.min_region <= uni.max_region <= "
          f"data.frame_size ({cfg.data.frame_size})")
  require(u.mc_draws >= 1, "uni.mc_draws", u.mc_draws, "must be at least 1")


class UniFamily(model_family.ModelFamily):
  """Uni-AdaFocus: where in time and space, and when to stop."""

  name = NAME
  method = "uni"
  title = "Uni-AdaFocus"
  classifiers = ("pooling",)
  unused_fields = _OTHER_POLICY_FIELDS + v2.STAGE0_RATES
  exit_criterion = model_family.MAX_LOGIT
  policy_in_model = True
  fractional_patches = True
  glance_head_trained = True
  official_checkpoints = (("uni_adafocus", "uni"),)
  sections = ("uni",)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.one_stream(cfg, self.name)
    d, u = cfg.data, cfg.uni
    check_frames(cfg, d.num_frames, u.glance_frames, u.focus_frames,
                 "uni.glance_frames", "data.num_frames")
    require(d.num_frames % u.glance_frames == 0, "uni.glance_frames",
            u.glance_frames,
            f"must divide data.num_frames ({d.num_frames}): the glance reads "
            "one frame per group of candidates")
    check_regions(cfg)

  def frames_read(self, cfg):
    return cfg.uni.glance_frames, cfg.uni.focus_frames

  def patch_steps(self, cfg):
    return cfg.uni.focus_frames

  def random_position_steps(self, cfg):
    # The official random branch draws a position per candidate frame and
    # reads it at the selected ones (``families/uni/loss.py``).
    return cfg.data.num_frames

  def build_model(self, cfg):
    return uni_adafocus.UniAdaFocus(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    del policy, policy_glance  # The model carries its policies.
    return recognizer.UniRecognizer(cfg, model)

  def stage_plan(self):
    return {0: tasks.BackboneTask,
            1: tasks.end_to_end(loss.end_to_end_loss, loss.variable_groups)}

  def policy_macs(self, cfg, map_shape):
    u = cfg.uni
    return (cost_lib.spatial_policy_macs(map_shape, u.glance_frames,
                                     u.spatial_hidden, 1)
            + cost_lib.temporal_policy_macs(map_shape[-1], u.glance_frames,
                                        u.temporal_hidden))

  def policy_runs(self, cfg):
    return 1

  def choice_gflops(self, cfg, cost, choice):
    if choice == recognizer_lib.GLANCE_ONLY:
      return cost_lib.glance_exit_macs(cfg, cost) / flops.G
    return super().choice_gflops(cfg, cost, choice)

  def classifier_cost(self, cfg, feature_dim, glance_head, focus_head):
    # The nets' own heads are auxiliary (not run at inference); the glance
    # head's MACs give the glance width (C outputs per input).
    del focus_head
    u, h = cfg.uni, cfg.model.classifier_hidden
    glance_dim = glance_head // cfg.data.num_classes
    g, f = cost_lib.classifier_parts(glance_dim, feature_dim - glance_dim, h,
                                 cfg.data.num_classes)
    return u.glance_frames * g + u.focus_frames * f, 1


FAMILY = registry.register(UniFamily())

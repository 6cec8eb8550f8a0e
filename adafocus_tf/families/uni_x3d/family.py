"""Uni-AdaFocus, X3D family (docs/METHOD.md V2-11.4, V2-11.5), whole
definition.

Two frame streams as the TSM family's: G glance frames for X3D-S (one
clip at ``model.glance_size``) and N candidate frames of which a temporal
policy picks K, cut at one deformable region per video, for X3D-L (one
clip of K patches); both policies train end to end through auxiliary
predictions; prediction = glance X3D head + focus X3D head logits; a
video may stop after the glance (2 exits).

  config section: ``ModelConfig`` (``x3d_<preset>`` backbones),
                  ``data.glance_frames`` (G), ``data.focus_frames`` (N
                  candidates) and ``uni`` fields (K =
                  ``uni.focus_frames``); checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/uni/uni_x3d.py`` ``UniAdaFocusX3D``
  recognizer:     ``recognizer.py`` ``UniX3DRecognizer``
  stage plan:     ``training/tasks``: end to end with ``loss.py``'s loss
                  and variable groups (no stage 0: the X3D nets start from
                  Kinetics-trained weights)
  exit:           the step's top logit; after the glance, and at the end
  cost:           ``cost.py`` (``video_macs``)
"""
from adafocus_tf.config_checks import require
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.uni import family as uni
from adafocus_tf.families.uni import single_region
from adafocus_tf.families.uni_tsm import family as uni_tsm
from adafocus_tf.families.uni_x3d import cost
from adafocus_tf.families.uni_x3d import loss
from adafocus_tf.families.uni_x3d import presets
from adafocus_tf.families.uni_x3d import recognizer
from adafocus_tf.models.uni import uni_x3d
from adafocus_tf.models.x3d import settings as x3d_settings
from adafocus_tf.training import tasks

NAME = "uni_x3d"
# The TSM family's unread fields, and the 2D backbones' settings.
_UNUSED = uni_tsm.UniTSMFamily.unused_fields + (
    "model.glance_width", "model.glance_resize", "model.shift_div")
# The temporal policy's Monte-Carlo objective removes up to G // 3 - 1
# glance frames.
_MIN_GLANCE = 3


class UniX3DFamily(single_region.SingleRegionFamily):
  """Uni-AdaFocus-X3D: where in time and space, X3D clip networks, two
  exits."""

  name = NAME
  method = "uni"
  title = "Uni-AdaFocus-X3D"
  classifiers = ("logit_mean",)
  unused_fields = _UNUSED
  exit_criterion = model_family.MAX_LOGIT
  policy_in_model = True
  fractional_patches = True
  glance_head_trained = True
  official_checkpoints = (("uni_adafocus", "uni_x3d"),)
  sections = ("uni",)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.two_stream(cfg, self.name)
    d, m, u = cfg.data, cfg.model, cfg.uni
    for field in ("glance_backbone", "focus_backbone"):
      require(getattr(m, field) in x3d_settings.BACKBONES, f"model.{field}",
              getattr(m, field), f"must be one of {x3d_settings.BACKBONES} "
              f"for the {self.name} model")
    require(not m.temporal_shift, "model.temporal_shift", m.temporal_shift,
            f"must be False for the {self.name} model (X3D convolves time)")
    uni.check_frames(cfg, d.focus_frames, d.glance_frames, u.focus_frames,
                     "data.glance_frames", "data.focus_frames")
    require(d.glance_frames >= _MIN_GLANCE, "data.glance_frames",
            d.glance_frames, "must be at least 3: the temporal policy's "
            "Monte-Carlo objective averages over removing 0 to "
            "data.glance_frames // 3 - 1 glance frames")
    uni.check_regions(cfg)

  def build_model(self, cfg):
    return uni_x3d.UniAdaFocusX3D(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    del policy, policy_glance  # The model carries its policies.
    return recognizer.UniX3DRecognizer(cfg, model)

  def stage_plan(self):
    return {1: tasks.end_to_end(loss.end_to_end_loss, loss.variable_groups)}

  def video_macs(self, cfg) -> dict:
    """The whole cost (``cost.video_macs``): the nets read clips, which
    ``profiling/flops.video_macs``'s per-frame parts cannot count."""
    return cost.video_macs(cfg)

  def policy_macs(self, cfg, map_shape):
    del map_shape  # The X3D glance map's, from the config.
    return cost.video_macs(cfg)["policy"]

  def policy_runs(self, cfg):
    return 1


FAMILY = registry.register(UniX3DFamily())

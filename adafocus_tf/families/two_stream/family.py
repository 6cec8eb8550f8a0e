"""The two-stream Something-Something family (docs/METHOD.md section 3),
whole definition.

Tg glance frames and Tf focus frames sampled separately, TSM backbones, one
patch per video chosen by a policy trained with PPO (stage 2) on the glance
maps of all glance frames stacked on channels, prediction = mean focus
logits + mean glance logits. Stages 0-3 as V1.

  config section: ``ModelConfig`` fields; checks in ``validate``
  presets:        ``presets.py``
  model:          ``models/two_stream.py`` ``TwoStreamAdaFocus``
  recognizer:     ``recognizer.py`` ``TwoStreamRecognizer``
  stage plan:     ``training/tasks``: backbones, patches, PPO policy
  exit:           2 steps: the glance (and policy), then the focus
  cost:           ``profiling/flops.py`` actor MACs, once per video
  converter:      the official AdaFocus Something-Something files
"""
from adafocus_tf.families import model_family
from adafocus_tf.families import registry
from adafocus_tf.families import stream_checks
from adafocus_tf.families.one_stream import family as one_stream
from adafocus_tf.families.two_stream import ppo_scores
from adafocus_tf.families.two_stream import presets
from adafocus_tf.families.two_stream import recognizer
from adafocus_tf.models import two_stream
from adafocus_tf.profiling import flops
from adafocus_tf.training import tasks

NAME = "two_stream"


def two_streams(cfg):
  """The input keys and frame counts of a two-stream family's clips."""
  d = cfg.data
  return {"glance_frames": d.glance_frames, "focus_frames": d.focus_frames}


class TwoStreamFamily(model_family.ModelFamily):
  """The Something-Something model: two frame streams, a patch per video."""

  name = NAME
  method = "v1"
  title = "AdaFocus"
  classifiers = ("logit_mean",)
  # The logit_mean classifier has no hidden layer; head_dropout is read by
  # the V2 models' heads and the one-stream stage-0 glance head only.
  unused_fields = (("model.classifier_hidden", "model.head_dropout",
                    "model.policy_mlp") + one_stream.v2_rates(0, 1, 3))
  glance_head_trained = True
  official_checkpoints = (("adafocus", "something"),)

  def presets(self):
    return presets.PRESETS

  def validate(self, cfg):
    stream_checks.two_stream(cfg, self.name)
    stream_checks.discrete_grid(cfg)

  def frame_streams(self, cfg):
    return two_streams(cfg)

  def build_model(self, cfg):
    return two_stream.TwoStreamAdaFocus(cfg)

  def build_recognizer(self, cfg, model, policy=None, policy_glance=None):
    return recognizer.TwoStreamRecognizer(cfg, model, policy, policy_glance)

  def stage_plan(self):
    return {0: tasks.BackboneTask, 1: tasks.PatchTask,
            2: tasks.policy(ppo_scores.scores_along), 3: tasks.policy_patches}

  def policy_macs(self, cfg, map_shape):
    return flops.actor_policy_macs(cfg, map_shape)


FAMILY = registry.register(TwoStreamFamily())

"""What every registered model family must provide, tested once for all.

One test per interface promise, parameterised over ``registry.names()``
(a family without a tiny config here fails ``test_every_family_is_tested``
instead of going untested): its config section and presets, its model and
recognizer (whole-clip outputs, the exit steps and their cost, step-by-step
inference equal to whole clips), and its stage plan.
"""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.evaluation import views as multi_view
from adafocus_tf.families import registry
from adafocus_tf.inference import loading
from adafocus_tf.inference import stepwise_recognizer
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import flops
from adafocus_tf.training import experiment
from adafocus_tf.training import tasks

# A tiny config of each built-in family, with a policy where the family
# has one (continuous for the two-stream model, as its presets).
TINY = {
    "one_stream": helpers.tiny_config,
    "two_stream": lambda: helpers.tiny_two_stream_config(
        model__policy="continuous"),
    "v2": helpers.tiny_v2_config,
    "v2_tsm": helpers.tiny_v2_tsm_config,
    "uni": helpers.tiny_uni_config,
    "uni_tsm": helpers.tiny_uni_tsm_config,
    "uni_x3d": helpers.tiny_uni_x3d_config,
}
FAMILIES = sorted(TINY)
VIDEOS = 6
PROB_ATOL = 1e-5


def test_every_family_is_tested():
  assert sorted(registry.names()) == FAMILIES


def _recognizer(name):
  cfg = TINY[name]()
  tf.keras.utils.set_random_seed(3)
  model = factory.build_model(cfg)
  model.build_all()
  family = registry.of(cfg)
  policy = (None if family.policy_in_model else
            greedy.GreedyPolicy.build(cfg, model.glance.map_shape))
  return cfg, loading.build(cfg, model, policy)


def _batch(cfg):
  s = cfg.data.frame_size
  batch = {key: tf.random.stateless_normal([VIDEOS, count, s, s, 3],
                                           [i + 1, 2])
           for i, (key, count) in enumerate(
               registry.of(cfg).frame_streams(cfg).items())}
  batch["seed"] = tf.constant([[i, 7] for i in range(VIDEOS)], tf.int64)
  return batch


@pytest.mark.parametrize("name", FAMILIES)
def test_config_section_and_presets(name):
  family = registry.get(name)
  cfg = TINY[name]()
  assert registry.of(cfg) is family and cfg.model.variant == name
  assert cfg.model.classifier in family.classifiers
  # Every unused field is a field, and changing it is refused.
  for dotted in family.unused():
    section, field = dotted.split(".")
    assert hasattr(getattr(cfg, section), field), dotted
  for dataset, make in family.presets().items():
    preset = make().validate()
    assert preset.model.variant == name, dataset
    assert config_lib.get_preset(dataset, family.method) == preset


@pytest.mark.parametrize("name", FAMILIES)
def test_whole_clip_outputs_and_exit_costs(name):
  cfg, rec = _recognizer(name)
  family = registry.of(cfg)
  assert tuple(rec.input_keys) == tuple(family.frame_streams(cfg))
  batch = _batch(cfg)
  out = rec(batch, rec.default_choice())
  c = cfg.data.num_classes
  k = patch_choice.patch_steps(cfg)
  assert out.logits.shape[0] == VIDEOS and out.logits.shape[-1] == c
  assert out.offsets.shape == (VIDEOS, k, rec.offset_dims)
  np.testing.assert_allclose(out.probs.numpy().sum(-1), 1.0, atol=1e-5)
  exit_probs = rec.exit_probs(out).numpy()
  assert exit_probs.shape == (VIDEOS, rec.num_exit_steps, c)
  # The last exit step is the whole prediction.
  np.testing.assert_allclose(exit_probs[:, -1], out.probs[:, -1],
                             atol=PROB_ATOL)
  # The exit steps add up to the video's cost of the patch choice.
  cost = flops.video_macs(cfg)
  for choice in (rec.default_choice(), "centre"):
    step_macs = rec.exit_step_macs(cost, choice)
    assert len(step_macs) == rec.num_exit_steps and min(step_macs) >= 0
    assert sum(step_macs) == pytest.approx(
        flops.choice_gflops(cost, choice) * flops.G)


@pytest.mark.parametrize("name", FAMILIES)
def test_step_by_step_equals_whole_clips(name):
  cfg, rec = _recognizer(name)
  assert isinstance(rec, stepwise_recognizer.StepwiseRecognizer)
  batch = _batch(cfg)
  out = rec(batch, rec.default_choice())
  exit_probs = rec.exit_probs(out).numpy()
  by_logit = exit_rule.criterion_of(cfg) == exit_rule.MAX_LOGIT
  state = rec.initial_state(VIDEOS)
  for e in range(rec.num_exit_steps):
    inputs = rec.step_inputs(batch, e)
    if by_logit:
      logits, _, state = rec.step_logits(inputs, state, e)
      probs = tf.nn.softmax(logits, -1)
    else:
      probs, _, state = rec.step(inputs, state, e)
    np.testing.assert_allclose(probs, exit_probs[:, e], atol=PROB_ATOL)
  # The runner with thresholds nobody reaches: every step, the whole clip's
  # prediction and patches, every video costing the whole video.
  runner = runner_lib.EarlyExitRunner(rec)
  never = runner.predict(batch, exit_rule.never(
      rec.num_exit_steps, exit_rule.criterion_of(cfg)))
  np.testing.assert_array_equal(never.exit_steps, rec.num_exit_steps - 1)
  np.testing.assert_allclose(never.probs, exit_probs[:, -1], atol=PROB_ATOL)
  np.testing.assert_allclose(never.offsets, out.offsets, atol=1e-4)
  np.testing.assert_allclose(never.macs, runner.step_macs.sum())


VIEWS = 3


@pytest.mark.parametrize("name", FAMILIES)
def test_early_exit_over_views_decides_on_their_mean_logits(name):
  """Early exit on three views of each video (``EarlyExitRunner.predict``'s
  ``views``): a family exiting on raw logits stops each video where the
  mean of its views' logits says, as the official multi-view early exit
  (Uni-AdaFocus-X3D's test_early_exit_unifocus_X3D_nViewEval.py,
  ``generate_logits`` then ``early_exit``) averages them before comparing,
  predicts from that mean and pays every view's steps; a family exiting on
  probabilities is refused by name."""
  cfg, rec = _recognizer(name)
  runner = runner_lib.EarlyExitRunner(rec)
  criterion = exit_rule.criterion_of(cfg)
  # Views of a video differ (their own random pixels).
  views = {k: tf.reshape(v, [VIDEOS // VIEWS, VIEWS] + v.shape[1:].as_list())
           for k, v in _batch(cfg).items() if k in rec.input_keys}
  if criterion != exit_rule.MAX_LOGIT:
    with pytest.raises(ValueError, match=f"the {name} model family exits on "
                       "probabilities: read one view"):
      runner.predict(views, exit_rule.never(rec.num_exit_steps, criterion),
                     VIEWS)
    return
  n = VIDEOS // VIEWS
  clips = multi_view.per_view_batch(views, rec.input_keys, VIEWS)
  clips["seed"] = tf.constant([[i, 7] for i in range(VIDEOS)], tf.int64)
  out = multi_view.video_outputs(rec, rec(clips, rec.default_choice()),
                                 VIEWS)
  exit_probs = rec.exit_probs(out).numpy()
  conf = exit_rule.step_confidences(rec, out).numpy()
  # The first video leaves at step 0, the other runs to the end.
  thresholds = exit_rule.never(rec.num_exit_steps, criterion)
  thresholds[0] = conf[:, 0].mean()
  want = exit_rule.exit_steps_from_confidences(conf, thresholds)
  if conf[0, 0] < conf[1, 0]:
    want = want[::-1]
    views = {k: v[::-1] for k, v in views.items()}
    exit_probs, conf = exit_probs[::-1], conf[::-1]
  np.testing.assert_array_equal(want, [0, rec.num_exit_steps - 1])
  got = runner.predict(views, thresholds, VIEWS)
  np.testing.assert_array_equal(got.exit_steps, want)
  np.testing.assert_allclose(got.probs, exit_probs[np.arange(n), want],
                             atol=PROB_ATOL)
  np.testing.assert_allclose(
      got.macs, VIEWS * np.cumsum(runner.step_macs)[want])
  np.testing.assert_array_equal(got.step_videos,
                                [2] + [1] * (rec.num_exit_steps - 1))


@pytest.mark.parametrize("name", FAMILIES)
def test_stage_plan_builds_its_tasks_and_refuses_the_rest(name):
  cfg = TINY[name]()
  family = registry.of(cfg)
  plan = family.stage_plan()
  for stage in range(config_lib.NUM_STAGES):
    if stage in plan:
      task = experiment.make_task(cfg, stage)
      assert isinstance(task, tasks.Task) and task.stage == stage
    else:
      with pytest.raises(ValueError, match=f"trains stages "
                         f"{family.stages_text()} only"):
        experiment.check_stage(cfg, stage)

"""Checks shared by the tests of the single-region Uni-AdaFocus families
(TSM, X3D): a tiny recognizer with a batch, a refused setting, the focus
plans' form, the exits step by step (the ActivityNet family's too), what
each loss term trains, and a one-epoch run on records."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf import config as config_lib
from adafocus_tf.families import registry
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import runner as runner_lib
from adafocus_tf.profiling import flops

# The loss terms of both families' end-to-end step.
LOSS_TERMS = {"glance", "temporal", "spatial", "size", "policy_prediction",
              "policy_focus", "random_prediction", "random_focus"}


def tiny_recognizer(cfg, video_seeds, frame_seeds, weight_seed=None):
  """A built recognizer of a tiny config and a batch of random frames.

  Args:
    cfg: a tiny two-stream config (``helpers.tiny_uni_tsm_config``...).
    video_seeds: the videos' seeds, one [2] pair per video.
    frame_seeds: the stateless seeds of the glance and the focus frames.
    weight_seed: seeds the initial weights (None: as they come).

  Returns:
    (the recognizer, its model built; the batch: ``glance_frames``,
    ``focus_frames`` and ``seed``).
  """
  family = registry.of(cfg)
  if weight_seed is not None:
    tf.keras.utils.set_random_seed(weight_seed)
  model = family.build_model(cfg)
  model.build_all()
  rec = family.build_recognizer(cfg, model)
  s, d, b = cfg.data.frame_size, cfg.data, len(video_seeds)
  batch = {"glance_frames": tf.random.stateless_normal(
      [b, d.glance_frames, s, s, 3], frame_seeds[0]),
           "focus_frames": tf.random.stateless_normal(
               [b, d.focus_frames, s, s, 3], frame_seeds[1]),
           "seed": tf.constant(video_seeds, tf.int64)}
  return rec, batch


def assert_setting_refused(cfg, field, value, message):
  """``cfg`` with ``field=value`` fails validation, naming the field.

  Args:
    cfg: a valid config (changed).
    field: the dotted field set.
    value: its bad value.
    message: a pattern of the error.
  """
  config_lib.override(cfg, field, value)
  with pytest.raises(ValueError, match=message) as e:
    cfg.validate()
  assert field in str(e.value)


def check_plan(cfg, plan, videos, choice):
  """A focus plan [B, K, 5] selects K increasing candidates and one region
  per video inside the frame, of side P unless the policy chose it.

  Args:
    cfg: the recognizer's config.
    plan: the plan (a tensor).
    videos: B.
    choice: the patch choice that made it.

  Returns:
    (the selected candidates [B, K], the regions [B, K, 4]), as numpy.
  """
  k, n, s = cfg.uni.focus_frames, cfg.data.focus_frames, cfg.data.frame_size
  assert plan.shape == (videos, k, 5)
  plan = plan.numpy()
  idx = np.round(plan[..., 0]).astype(int)
  assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0
  assert idx.max() < n
  regions = plan[..., 1:]
  # The same region in every selected frame of a video.
  np.testing.assert_array_equal(regions, np.repeat(regions[:, :1], k, 1))
  y, x, h, w = np.moveaxis(regions, -1, 0)
  assert np.all(y >= 0) and np.all(x >= 0)
  assert np.all(y + h <= s + 1e-4) and np.all(x + w <= s + 1e-4)
  if choice != "policy":
    np.testing.assert_allclose(h, cfg.model.patch_size)
    np.testing.assert_allclose(w, cfg.model.patch_size)
  return idx, regions


def exits_never_taken(rec, batch):
  """Runs a recognizer step by step with no early exit, which must give
  the whole clip's prediction and plan.

  Args:
    rec: a recognizer of a family with exit steps.
    batch: its batch.

  Returns:
    (the whole clip's exit probabilities [B, E, C], the
    ``EarlyExitRunner``, its prediction).
  """
  out = rec(batch)
  whole = rec.exit_probs(out).numpy()
  runner = runner_lib.EarlyExitRunner(rec)
  never = exit_rule.never(rec.num_exit_steps, exit_rule.MAX_LOGIT)
  pred = runner.predict(batch, never)
  np.testing.assert_allclose(pred.probs, whole[:, -1], atol=1e-5)
  # The plan the steps chose is the whole-clip one.
  np.testing.assert_allclose(pred.offsets, out.offsets.numpy(), atol=1e-4)
  return whole, runner, pred


def check_exits_step_by_step(cfg, rec, batch):
  """Run step by step, the two exits give the whole clip's probabilities
  and plan, their cost the video's, and exiting at once the first exit's.

  Args:
    cfg: the recognizer's config.
    rec: the recognizer.
    batch: its batch.

  Returns:
    (the ``EarlyExitRunner``, ``flops.video_macs(cfg)``, the prediction
    that exits at step 0).
  """
  assert rec.num_exit_steps == 2
  whole, runner, _ = exits_never_taken(rec, batch)
  cost = flops.video_macs(cfg)
  assert runner.step_macs.sum() == cost["per_video"]["total"]
  first = runner.predict(batch, np.full(rec.num_exit_steps, -1e9))
  videos = len(whole)
  assert first.exit_steps.tolist() == [0] * videos
  np.testing.assert_allclose(first.probs, whole[:, 0], atol=1e-5)
  return runner, cost, first


def term_checker(tape, terms):
  """``only(variables, what, *trained_by)``: asserts that of ``terms``
  exactly ``trained_by`` give ``variables`` a nonzero gradient.

  Args:
    tape: a persistent ``GradientTape`` that recorded ``terms``.
    terms: {name: scalar loss term}.

  Returns:
    The ``only`` function (``what`` names the variables in a failure).
  """
  def moved(term, variables):
    grads = tape.gradient(terms[term], variables)
    return any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
               for g in grads)

  def only(variables, what, *trained_by):
    for term in terms:
      assert moved(term, variables) == (term in trained_by), (what, term)

  return only


def check_one_epoch(tmp_path, make_config, family):
  """One epoch of the family's stage on tiny records trains and evaluates.

  Args:
    tmp_path: where the records and the run go.
    make_config: the tiny config of the family.
    family: the family's registered name.
  """
  from adafocus_tf.runs import run_dir  # pylint: disable=g-import-not-at-top
  cfg, run = helpers.train_tiny_v2_run(tmp_path, num_train=8, num_val=8,
                                       make_config=make_config)
  assert registry.of(cfg).name == family
  assert tf.io.gfile.exists(run_dir.done_path(run, 1))

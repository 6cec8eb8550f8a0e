"""Multi-view evaluation (``data.test_crops``, evaluation/views.py): each
video's prediction from the mean of its views' logits, its cost the
views' sum."""
import copy
import json
import os

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest

import helpers
from adafocus_tf.data import pipeline
from adafocus_tf.evaluation import evaluate
from adafocus_tf.evaluation import predictions
from adafocus_tf.evaluation import results_table
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.inference.early_exit import threshold_file
from adafocus_tf.profiling import flops
from adafocus_tf.runs import run_dir
from adafocus_tf.runs import trained_run

pytestmark = pytest.mark.training

VIEWS = 3
# A 26-pixel square of the 32-pixel frames (32 x 32 / 40) resized to 32:
# views 2 pixels apart (a room of 6, quarters of 1), so that they differ.
EVAL_RESIZE = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  cfg, path = helpers.copy_of_tiny_v2_run(tmp_path_factory.mktemp("views")
                                          / "run")
  # A copy: the process's trained runs share their config object.
  cfg = copy.deepcopy(cfg)
  cfg.data.test_crops, cfg.data.eval_resize = VIEWS, EVAL_RESIZE
  return trained_run.TrainedRun(path, cfg=cfg)


def test_the_prediction_is_the_mean_of_the_views_logits(run):
  cfg, rec = run.cfg, run.recognizer()
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  pred = predictions.predict_split(rec, split_dir, "centre", progress=False)
  # By hand: each view of each batch through the recognizer.
  logits, labels = [], []
  for batch in pipeline.make_dataset(cfg.data, split_dir, False,
                                     cfg.eval_batch_size, seed=cfg.seed,
                                     views=VIEWS):
    per_view = np.stack([
        rec({**batch, "frames": batch["frames"][:, v]}, "centre").logits
        for v in range(VIEWS)])
    # The views see different pixels, so averaging them means something.
    assert np.abs(per_view[1] - per_view[2]).max() > 1e-3
    logits.append(per_view.mean(0))
    labels.append(batch["label"].numpy())
  logits = np.concatenate(logits)
  np.testing.assert_allclose(pred["step_probs"], rec.step_probs(logits),
                             atol=1e-5)
  np.testing.assert_array_equal(pred["labels"], np.concatenate(labels))
  assert len(pred["labels"]) == 16


def test_rows_cost_every_view_and_the_oracle_reads_one(run):
  cfg, rec = run.cfg, run.recognizer()
  cost = flops.video_macs(cfg)
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  row, _ = evaluate.evaluate_split(run, split_dir, "policy", progress=False)
  assert row["views"] == VIEWS
  assert row["gflops_per_video"] == pytest.approx(
      VIEWS * rec.choice_gflops(cost, "policy"))
  assert predictions.views_read(cfg, "oracle") == 1
  assert predictions.views_read(cfg, "policy", training_transform=True) == 1
  results = results_table.results_table(run, progress=False)
  rows = results["rows"]
  assert rows["oracle"]["gflops_per_video"] == pytest.approx(
      rec.choice_gflops(cost, "oracle"))
  assert rows["random"]["gflops_per_video"] == pytest.approx(
      VIEWS * rec.choice_gflops(cost, "random"))
  assert results_table.format_table(results).splitlines()[-2].endswith(
      f"{VIEWS} views each (the oracle one)")


def test_test_crops_is_one_or_three():
  cfg = helpers.tiny_v2_config()
  cfg.data.test_crops = 2
  with pytest.raises(ValueError,
                     match=r"data.test_crops.*must be one of \(1, 3\)"):
    cfg.validate()


def _succeeds(script, args):
  """The stdout of a launch/ command that must succeed."""
  proc = helpers.start_launch(script, args)
  stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-3000:]
  return stdout


def test_evaluate_command_with_three_views(run, tmp_path):
  """``adafocus-evaluate --test_crops=3`` on a run whose config reads one
  view: its own entry, the views said; a bad value refused."""
  cfg, path = helpers.copy_of_tiny_v2_run(tmp_path / "run")
  assert cfg.data.test_crops == 1
  stdout = _succeeds("evaluate.py", [
      f"--run={path}", "--progress=false", "--patches=centre",
      "--test_crops=3"])
  assert "val/centre+3views" in stdout and "in 3 views each" in stdout
  metrics = json.loads(open(os.path.join(path, run_dir.METRICS)).read())
  row = metrics["evaluation"]["val/centre+3views"]
  assert row["views"] == 3
  assert row["gflops_per_video"] == pytest.approx(
      3 * run.recognizer().choice_gflops(flops.video_macs(cfg), "centre"))
  proc = helpers.start_launch("evaluate.py", [f"--run={path}",
                                              "--test_crops=2"])
  _, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 1
  assert "error: --test_crops=2: must be one of (1, 3)" in stderr


def test_early_exit_commands_with_three_views(tmp_path):
  """``adafocus-calibrate-exit --test_crops=3`` then ``adafocus-evaluate
  --early_exit --test_crops=3`` on a run whose config reads one view: the
  curve and the evaluation cost every view of the steps each video ran,
  the thresholds' file stays one view's, and the exits are those of the
  stored thresholds on the mean of the views' logits (docs/EARLY_EXIT.md,
  "Several views per video")."""
  cfg, path = helpers.copy_of_tiny_v2_run(tmp_path / "run")
  assert cfg.data.test_crops == 1
  stdout = _succeeds("calibrate_exit.py", [
      f"--run={path}", "--profile=geometric:0.5", "--test_crops=3",
      "--progress=false"])
  assert "Each evaluation video is read in 3 views" in stdout
  # What the commands read: the run's config, three views.
  cfg = copy.deepcopy(cfg)
  cfg.data.test_crops = VIEWS
  three = trained_run.TrainedRun(path, cfg=cfg)
  rec = three.recognizer()
  step_macs = rec.exit_step_macs(flops.video_macs(cfg), rec.default_choice())
  cum = np.cumsum(step_macs) / flops.G
  record = threshold_file.load(path)
  np.testing.assert_allclose(record["exit_step_macs"], step_macs)
  section = json.loads(open(os.path.join(path, run_dir.METRICS)).read())[
      "early_exit"]
  assert section["views"] == VIEWS
  assert section["full"]["gflops"] == pytest.approx(VIEWS * cum[-1])
  check = section["inference_check"]
  assert check["gflops_full"] == pytest.approx(VIEWS * cum[-1])
  np.testing.assert_allclose(check["video_gflops"],
                             VIEWS * cum[np.array(check["exit_steps"])])
  assert check["same_exit_step"] >= 0.9
  # In process, beside whole clips read in three views.
  split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
  row, pred = evaluate.evaluate_early_exit(three, split_dir, progress=False)
  assert row["views"] == VIEWS
  np.testing.assert_allclose(pred["gflops"], VIEWS * cum[pred["exit_steps"]])
  assert row["gflops_full"] == pytest.approx(VIEWS * cum[-1])
  whole = predictions.predict_split(rec, split_dir, rec.default_choice(),
                                    progress=False)
  want = exit_rule.exit_steps_from_confidences(whole["exit_confidences"],
                                               record["thresholds"])
  assert len(set(want.tolist())) > 1
  assert np.mean(want == pred["exit_steps"]) >= 0.9
  same = want == pred["exit_steps"]
  np.testing.assert_allclose(
      pred["probs"][same],
      exit_rule.exit_predictions(whole["exit_probs"], want)[same], atol=1e-5)
  _succeeds("evaluate.py", [f"--run={path}", "--early_exit", "--test_crops=3",
                            "--progress=false"])
  written = json.loads(open(os.path.join(path, run_dir.METRICS)).read())[
      "evaluation"]["val/policy+3views" + evaluate.EARLY_EXIT]
  assert written["views"] == VIEWS
  assert written["gflops_per_video"] == pytest.approx(
      row["gflops_per_video"])

"""A run killed during stage 3 (issue 23): tools use its last finished stage.

A tiny run trains stages 1 and 2 here, then a real launch/train.py process
training stage 3 is killed with SIGKILL after its first checkpoint. Without
``--allow_unfinished``, evaluate, predict and export use stage 2's weights
and say that stage 3 is unfinished; with it, they use stage 3's and record
that in what they write. Training refuses to start a stage after an
unfinished one.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import types

import adafocus_tf  # pylint: disable=unused-import
import pytest
import tensorflow as tf

import helpers
import video_fixtures
from adafocus_tf.inference import predictor as predict_lib
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.serving import export
from adafocus_tf.training import experiment

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
  """A run whose stage 3 was killed after its first checkpoint."""
  root = tmp_path_factory.mktemp("killed")
  cfg, run = helpers.train_tiny_run(root, (1, 2))
  stage2 = checkpoints.latest_stage_checkpoint(run, 2)
  # Many short epochs, a checkpoint every step: the kill lands mid-stage.
  proc = subprocess.Popen(
      [sys.executable, os.path.join(helpers.REPO, "launch", "train.py"),
       f"--resume={run}", "--stage=3", "--noprogress", "--noevaluate",
       "--checkpoint_every=1", "--override=stage3.epochs=50"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while (checkpoints.latest_stage_checkpoint(run, 3) is None
         and time.time() < deadline and proc.poll() is None):
    time.sleep(0.05)
  proc.kill()
  proc.wait()
  stage3 = checkpoints.latest_stage_checkpoint(run, 3)
  assert stage3 is not None, "stage 3 wrote no checkpoint before the kill"
  assert not run_dir.stage_done(run, 3)
  video = video_fixtures.write_video(str(root / "clip.mp4"), 20)
  return types.SimpleNamespace(cfg=cfg, run=run, stage2=stage2,
                               stage3=stage3, video=video)


def test_tools_use_the_last_finished_stage_unless_asked(killed):
  run = killed.run
  predict = helpers.start_launch(
      "predict.py", [f"--run={run}", "--json", "--backend=tf", killed.video])
  evaluate = helpers.start_launch(
      "evaluate.py", [f"--run={run}", "--progress=false", "--max_videos=8",
                      "--allow_unfinished"])
  (out, err), (_, eval_err) = (predict.communicate(timeout=600),
                               evaluate.communicate(timeout=600))
  assert predict.returncode == 0, err[-3000:]
  assert evaluate.returncode == 0, eval_err[-3000:]
  # predict: stage 2's weights, and a word about stage 3.
  result = json.loads(out)
  assert result["checkpoint"] == killed.stage2 and result["stage"] == 2
  assert "unfinished_stage" not in result
  assert f"stage 3 of {run} is unfinished" in err
  assert "using stage 2's final weights" in err
  # evaluate --allow_unfinished: stage 3's, recorded with how far it got.
  metrics = json.load(open(os.path.join(run, run_dir.METRICS)))
  (row,) = metrics["evaluation"].values()
  assert row["checkpoint"] == killed.stage3 and row["stage"] == 3
  step = checkpoints.step_of(killed.stage3)
  assert row["unfinished_stage"]["step"] == step >= 1
  assert "is unfinished: these are its weights" in eval_err or (
      "using it, as asked" in eval_err)

  lite = predict_lib.Predictor(run, backend="tf", allow_unfinished=True)
  assert lite.checkpoint == killed.stage3
  assert any("stage 3 is unfinished" in w for w in lite.warnings)
  _, meta = export.build_module(run)
  assert meta["checkpoint"] == killed.stage2
  assert "unfinished_stage" not in meta
  _, meta = export.build_module(run, allow_unfinished=True)
  assert meta["checkpoint"] == killed.stage3
  assert meta["unfinished_stage"]["stage"] == 3


def test_training_refuses_to_start_after_an_unfinished_stage(killed,
                                                             tmp_path):
  run = str(tmp_path / "run")
  shutil.copytree(killed.run, run)
  os.remove(run_dir.done_path(run, 2))
  shutil.rmtree(run_dir.stage_dir(run, 3))
  with pytest.raises(final_weights.UnfinishedStageError,
                     match=r"stage 2 of .* is unfinished .*so stage 3 cannot "
                           r"start from it"):
    experiment.run_stages(killed.cfg, run, [3], tf.distribute.get_strategy(),
                          progress=False)
  assert not os.path.exists(run_dir.stage_dir(run, 3))

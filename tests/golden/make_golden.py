"""Makes the golden runs tests/inference/test_golden.py checks (run by hand).

Run it once, with the code as it is BEFORE a change that must not move any
number (a restructuring), then commit what it wrote; the tests never run it.
Rerunning it after such a change would overwrite the numbers that the change
is meant to keep, and defeat the golden test.

  .venv/bin/python tests/golden/make_golden.py

It is written against the API of the code it pinned, commit b2769a2 (before
the recognizer of issue 13): run it from a checkout of that commit
(``git worktree add /tmp/golden b2769a2``). To pin a later state, port its
loading to that state's API first.

For each run of ``RUNS`` it generates a small split of the embedded
synthetic dataset (``adafocus_tf.data.synthetic``) in a temporary
directory, trains the run's stages on it, and writes under
``tests/golden/<name>/``:

  config.json, stage<k>/done.json   as the training wrote them (the config's
                                    data_dir names the deleted temporary
                                    directory; inference does not read it)
  stage2/checkpoints/               the policy's last checkpoint, as written
  stage3/checkpoints/               the final model: the model of the last
                                    checkpoint, without the optimizer's
                                    state (``copy_final_model``)
  inputs.npz                        the evaluation pipeline's frames of the
                                    first ``NUM_INPUTS`` held-out videos, as
                                    uint8 pixels before normalisation
                                    (``frames``, or ``glance_frames`` and
                                    ``focus_frames``), and their ``label``
  expected.npz                      ``test_golden.golden_outputs`` of the run
                                    on those inputs

The models are the ``synthetic`` preset with smaller heads and policy
(``SMALL``); its backbones make each checkpoint about 2 MB. Every stage
trains one epoch of 2 steps.
"""
import os
import shutil
import sys
import tempfile

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.data import pipeline
from adafocus_tf.data import synthetic
from adafocus_tf.data import synthetic_spec
from adafocus_tf.models import factory
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import final_weights
from adafocus_tf.runs import run_dir
from adafocus_tf.training import experiment

GOLDEN = os.path.dirname(os.path.abspath(__file__))
# The tests' modules: test_golden.golden_outputs computes the expected
# numbers, so that the numbers and the test come from one piece of code.
# tests/ holds the shared helpers, tests/inference/ the golden test.
sys.path[:0] = [os.path.dirname(GOLDEN),
                os.path.join(os.path.dirname(GOLDEN), "inference")]
import helpers  # pylint: disable=g-import-not-at-top,wrong-import-position
import test_golden  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_TRAIN = 16  # two steps of 8 videos per epoch
NUM_INPUTS = 4  # held-out videos whose outputs are pinned
SEED = synthetic_spec.DEFAULT_SEED
# Seeds the initial weights of each run, so that the script gives the same
# runs every time (if a run fails ``check_margins``, try another seed).
WEIGHTS_SEED = 0
# The smallest margin by which a patch choice may win (policy logits, or
# pixels of a position from the next whole pixel): far above float
# round-off, so that the test's exact comparison of patches is not fragile.
MIN_MARGIN = 1e-4

# The synthetic preset with fewer units and channels (the backbones are the
# preset's), one epoch per stage.
SMALL = {
    "model.classifier_hidden": 16,
    "model.policy_hidden": 16,
    "model.policy_conv_channels": 4,
    "stage0.batch_size": 8,
    "stage1.batch_size": 8,
    "stage2.batch_size": 8,
    "stage3.batch_size": 8,
    "stage0.epochs": 1,
    "stage1.epochs": 1,
    "stage2.epochs": 1,
    "stage3.epochs": 1,
    "eval_batch_size": NUM_INPUTS,
}

# name -> (stages trained, overrides of SMALL).
RUNS = {
    # V1: one frame stream, a patch per frame from the discrete policy, the
    # GRU classifier; stage 0 trains the glance head (glance-only output).
    "v1_discrete": ((0, 1, 2, 3), {}),
    # Something-Something's model: TSM backbones, separate glance and focus
    # frames, one patch per video from the continuous policy (with the
    # encoder's batch norm), logit-mean classifier.
    "two_stream_continuous": ((1, 2, 3), {
        "data.glance_frames": 4,
        "data.focus_frames": 6,
        "model.classifier": "logit_mean",
        "model.patch_per_video": True,
        "model.temporal_shift": True,
        "model.policy": "continuous",
        "model.policy_batchnorm": True,
    }),
}


def make_data(root: str) -> str:
  """Writes the train split and the held-out inputs' split under ``root``."""
  synthetic.write_split(os.path.join(root, "train"), "train", SEED,
                        NUM_TRAIN)
  synthetic.write_split(os.path.join(root, "val"), "val", SEED, NUM_INPUTS)
  return root


def make_config(data_dir: str, overrides: dict):
  """The synthetic preset on ``data_dir`` with ``SMALL`` and ``overrides``."""
  cfg = config_lib.get_preset("synthetic")
  cfg.data.data_dir = data_dir
  for key, value in {**SMALL, **overrides}.items():
    config_lib.override(cfg, key, value)
  return cfg


def input_pixels(cfg) -> dict:
  """The evaluation pipeline's first batch of held-out videos, uint8.

  Raises:
    ValueError: the pipeline's frames are not whole pixels (a resize that is
      not the identity), which uint8 could not hold exactly.
  """
  batch = next(iter(pipeline.make_dataset(
      cfg.data, pipeline.split_dir(cfg.data, cfg.data.eval_split), False,
      NUM_INPUTS, seed=cfg.seed)))
  mean = np.float32(cfg.data.mean) * 255
  std = np.float32(cfg.data.std) * 255
  out = {"label": batch["label"].numpy()}
  for key in test_golden.FRAME_KEYS:
    if key in batch:
      pixels = batch[key].numpy() * std + mean
      if np.abs(pixels - np.round(pixels)).max() > 1e-3:
        raise ValueError(f"{key} of {cfg.data.data_dir} are not whole pixels")
      out[key] = np.round(pixels).astype(np.uint8)
  return out


def copy_final_model(cfg, run: str, out: str, stage: int) -> None:
  """Writes the model of ``run``'s final stage to ``out``, nothing else.

  The final stage's checkpoint also holds the optimizer's momentum (as large
  as the trained part of the model), which using a run never reads:
  loading reads only the checkpoint's ``model`` (``checkpoints.restore_model``).

  Raises:
    ValueError: the written model differs from the run's.
  """
  ckpt = final_weights.resolve(run).model_checkpoint
  model = factory.build_model(cfg)
  model.build_all()
  checkpoints.restore_model(model, ckpt)
  step = int(ckpt.rsplit("-", 1)[1])
  tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model), run_dir.checkpoint_dir(out, stage),
      max_to_keep=1).save(checkpoint_number=step)
  want = helpers.checkpoint_tensors(ckpt)
  got = helpers.checkpoint_tensors(
      checkpoints.latest_stage_checkpoint(out, stage))
  if got.keys() != want.keys() or any(
      not np.array_equal(got[k], want[k]) for k in want):
    raise ValueError(f"the model written to {out} is not the one of {ckpt}")


def copy_run(cfg, run: str, out: str, stages) -> None:
  """Copies what using the trained run needs from ``run`` to ``out``.

  The policy's stage-2 checkpoint is copied as it is: loading the policy
  restores all of it (its optimizer, unlike the last stage's, is small).
  """
  shutil.copy(os.path.join(run, run_dir.CONFIG), out)
  for stage in stages:
    os.makedirs(run_dir.stage_dir(out, stage))
    shutil.copy(run_dir.done_path(run, stage), run_dir.done_path(out, stage))
  shutil.copytree(run_dir.checkpoint_dir(run, 2),
                  run_dir.checkpoint_dir(out, 2))
  copy_final_model(cfg, run, out, max(stages))


def check_margins(cfg, expected: dict) -> None:
  """Raises ValueError if a patch choice of ``expected`` is near a tie."""
  if "policy_logits" in expected:
    top = np.sort(expected["policy_logits"], -1)
    margin = (top[..., -1] - top[..., -2]).min()
  else:
    pixels = expected["positions"] * (cfg.data.frame_size -
                                      cfg.model.patch_size)
    margin = np.abs(pixels - np.round(pixels)).min()
  if margin < MIN_MARGIN:
    raise ValueError(f"a patch choice wins by only {margin:.2g} "
                     f"(< {MIN_MARGIN}): rerun to train other weights")


def make_run(name: str, stages, overrides: dict, tmp: str) -> None:
  """Trains one golden run and writes it with its inputs and outputs."""
  tf.keras.utils.set_random_seed(WEIGHTS_SEED)
  data_dir = make_data(os.path.join(tmp, name, "data"))
  cfg = make_config(data_dir, overrides)
  run = os.path.join(tmp, name, "run")
  experiment.run_stages(cfg, run, stages, tf.distribute.get_strategy(),
                        progress=False)
  out = os.path.join(GOLDEN, name)
  if os.path.exists(out):
    shutil.rmtree(out)
  os.makedirs(out)
  copy_run(cfg, run, out, stages)
  inputs = input_pixels(cfg)
  np.savez_compressed(os.path.join(out, test_golden.INPUTS), **inputs)
  expected = test_golden.golden_outputs(out, inputs)
  check_margins(cfg, expected)
  np.savez_compressed(os.path.join(out, test_golden.EXPECTED), **expected)
  for key, value in expected.items():
    print(name, key, value.shape, value.reshape(-1)[:6])


def main():
  if tuple(RUNS) != test_golden.RUNS:
    raise ValueError(f"RUNS {tuple(RUNS)} are not the runs test_golden "
                     f"checks, {test_golden.RUNS}")
  with tempfile.TemporaryDirectory() as tmp:
    for name, (stages, overrides) in RUNS.items():
      make_run(name, stages, overrides, tmp)


if __name__ == "__main__":
  main()

"""The Uni-AdaFocus presets' precision (docs/METHOD.md V2-11.4) and what
``adafocus-train`` makes of it on a host without a GPU, through the CLI's
own ``resolve_config``.

The official commands: FCVID and Mini-Kinetics run ``main_semiAMP.py`` (the
backbones under autocast, GradScaler), ActivityNet ``main.py`` (float32);
the TSM family's ``main.py`` trains every dataset under autocast with a
GradScaler.
"""
import json

import adafocus_tf  # pylint: disable=unused-import
from absl import flags
from absl.testing import flagsaver
import pytest

from adafocus_tf import config as config_lib
from adafocus_tf.cli import train
from adafocus_tf.runs import run_dir

FLAGS = flags.FLAGS
MIXED = "mixed_float16"
PAPER = {"actnet": "", "fcvid": MIXED, "minik": MIXED, "sthv1": MIXED,
         "sthv2": MIXED, "jester": MIXED}


@pytest.mark.parametrize("dataset, precision", list(PAPER.items()))
def test_presets_hold_the_official_precision(dataset, precision):
  assert config_lib.get_preset(dataset, "uni").mixed_precision == precision


def _resolve(monkeypatch, has_gpu, *args):
  """``train.resolve_config`` of ``adafocus-train --method=uni <args>`` on
  a host with or without a GPU."""
  monkeypatch.setattr(train, "host_has_gpu", lambda: has_gpu)
  parsed = FLAGS.is_parsed()
  with flagsaver.flagsaver():
    FLAGS(["adafocus-train", "--method=uni", *args])
    try:
      return train.resolve_config()
    finally:
      if not parsed:
        FLAGS.unparse_flags()


def _notes(capsys):
  return [l for l in capsys.readouterr().err.splitlines()
          if l.startswith("note: ")]


@pytest.mark.parametrize("dataset", ["fcvid", "jester"])
def test_a_preset_s_float16_trains_in_float32_without_a_gpu(
    dataset, monkeypatch, capsys, tmp_path):
  cfg = _resolve(monkeypatch, False, f"--dataset={dataset}")
  # The run's config.json (as the stages write it): the precision used.
  run_dir.write_config(str(tmp_path), cfg)
  written = json.loads((tmp_path / run_dir.CONFIG).read_text())
  assert written["mixed_precision"] == ""
  notes = _notes(capsys)
  assert len(notes) == 1
  assert f"the {dataset} preset trains in {MIXED}" in notes[0]
  assert "trains in float32" in notes[0]
  assert f"--mixed_precision={MIXED}" in notes[0]


def test_a_gpu_host_keeps_the_preset_s_float16(monkeypatch, capsys):
  cfg = _resolve(monkeypatch, True, "--dataset=minik")
  assert cfg.mixed_precision == MIXED and not _notes(capsys)


@pytest.mark.parametrize("given", [
    [f"--mixed_precision={MIXED}"],
    [f"--override=mixed_precision={MIXED}"],
    ["--config_file={file}"],
])
def test_a_given_precision_always_wins(given, monkeypatch, capsys, tmp_path):
  path = tmp_path / "precision.json"
  path.write_text(json.dumps({"mixed_precision": MIXED}))
  args = [a.format(file=path) for a in given]
  cfg = _resolve(monkeypatch, False, "--dataset=sthv2", *args)
  assert cfg.mixed_precision == MIXED and not _notes(capsys)


def test_float32_and_bfloat16_are_left_alone():
  for precision in ("", "mixed_bfloat16"):
    cfg = config_lib.get_preset("actnet", "uni")
    cfg.mixed_precision = precision
    assert train.host_precision(cfg, given=False, has_gpu=False) is None
    assert cfg.mixed_precision == precision
  # A resumed run's precision is the one its weights trained with.
  cfg = config_lib.get_preset("fcvid", "uni")
  assert train.host_precision(cfg, given=True, has_gpu=False) is None
  assert cfg.mixed_precision == MIXED

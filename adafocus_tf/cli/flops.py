"""Prints the cost of an AdaFocus config: MACs per part and GFLOPs per video.

  adafocus-flops --dataset=actnet --patch_size=128
  adafocus-flops --dataset=actnet --patch_size=96 --num_frames=8
  adafocus-flops --dataset=synthetic --override=model.policy_hidden=64
  adafocus-flops --dataset=sthv1 --patch_size=144   # 23.534 (23.5)
  adafocus-flops --method=v2 --dataset=actnet --patch_size=96   # 17.604 (17.6)
  adafocus-flops --method=v2 --dataset=actnet --patch_size=96 \
      --override=model.glance_backbone=resnet50 \
      --override=model.glance_size=96                      # 24.744 (24.8)
  adafocus-flops --method=v2 --dataset=sthv1 --patch_size=128  # 18.453 (18.5)

(``python launch/flops.py`` is the same command.)

The papers' "GFLOPs" are multiply-accumulates; the counts come from the
project's own networks for the config (docs/FLOPS.md gives the counting
rules and how they reproduce the published V1 and Something-Something
figures of docs/METHOD.md section 6, and the V2 figures of section V2-9).
"""
import json

from absl import app
from absl import flags

from adafocus_tf import config as config_lib
from adafocus_tf.cli import common
from adafocus_tf.families import registry
from adafocus_tf.profiling import flops

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__,
    shared=("dataset", "method", "patch_size", "num_frames", "override",
            "json"),
    defaults={"dataset": "actnet"})


def resolve_config() -> config_lib.ExperimentConfig:
  """The preset of ``--method`` with ``--patch_size``, ``--num_frames`` and
  overrides."""
  cfg = config_lib.get_preset(FLAGS.dataset, FLAGS.method)
  if FLAGS.patch_size is not None:
    config_lib.override(cfg, "model.patch_size", FLAGS.patch_size)
  if FLAGS.num_frames is not None:
    config_lib.override(cfg, "data.num_frames", FLAGS.num_frames)
  return config_lib.apply_overrides(cfg, FLAGS.override)


def _header(cfg: config_lib.ExperimentConfig, cost: dict) -> str:
  m, runs = cfg.model, cost["runs"]
  tsm = " (TSM)" if m.temporal_shift else ""
  glance = (f"glance {m.glance_backbone}{tsm} at {m.glance_size}, focus "
            f"{m.focus_backbone}{tsm} on {m.patch_size}x{m.patch_size} "
            "patches")
  if runs["glance"] == runs["focus"] == cost["num_frames"]:
    frames = f"T = {cost['num_frames']} frames"
  else:
    frames = (f"{runs['glance']} glance frames, {runs['focus']} focus "
              "frames")
  if m.patch_per_video:
    frames += ", one patch per video"
  title = registry.of(cfg).title
  return (f"{title} cost: {cfg.data.dataset}, {glance}, {frames} "
          "(GFLOPs = 1e9 MACs)")


def format_table(cfg: config_lib.ExperimentConfig, cost: dict) -> str:
  """The per-part table and the per-video totals of each evaluation row.

  Args:
    cfg: the config counted.
    cost: ``flops.video_macs(cfg)``.

  Returns:
    The table as text: per part, the MACs of one run, the runs per video
    (frames, policy steps, classifier steps) and the G MACs per video.
  """
  lines = [_header(cfg, cost),
           f"{'part':<12} {'MACs/run':>14} {'runs':>5} {'G/video':>9}"]
  for part in flops.PARTS:
    lines.append(f"{part:<12} {cost[part]:>14,d} {cost['runs'][part]:>5d} "
                 f"{cost['per_video'][part] / flops.G:>9.3f}")
  lines.append(f"{'total':<12} {'':>14} {'':>5} "
               f"{cost['per_video']['total'] / flops.G:>9.3f}")
  family = registry.of(cfg)
  lines.append("GFLOPs per video by patch choice: " + ", ".join(
      f"{c} {family.choice_gflops(cfg, cost, c):.3f}"
      for c in ("policy", "random", "glance_only")))
  lines.append("backbones only (glance + focus, no policy or classifier): "
               f"{cost['backbones_gflops_per_video']:.3f}")
  return "\n".join(lines)


def main(argv):
  del argv  # Unused.
  try:
    cfg = resolve_config()
  except ValueError as e:
    raise app.UsageError(str(e))
  cost = flops.video_macs(cfg)
  if FLAGS.json:
    print(json.dumps(cost, indent=2, sort_keys=True))
  else:
    print(format_table(cfg, cost))


def run() -> None:
  """The ``adafocus-flops`` console script (and ``launch/flops.py``)."""
  COMMAND.run(main)

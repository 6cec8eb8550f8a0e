"""Converts the reference PyTorch implementation's checkpoints into a run.

  adafocus-convert --checkpoint=128s3_checkpoint.pth.tar \\
      --dataset=actnet --patch_size=128 --out=$RUN
  adafocus-convert --glance_checkpoint=globalcnn.pth.tar \\
      --focus_checkpoint=localcnn.pth.tar --dataset=actnet --patch_size=128 \\
      --out=$RUN                                  # stage-0 backbones
  adafocus-convert --checkpoint=actnet_p128_mbv2.pth.tar --dataset=actnet \\
      --patch_size=128 --out=$RUN                 # AdaFocusV2 (V2-TSM too)
  adafocus-convert --checkpoint=uni_actnet.pth.tar --dataset=actnet \\
      --patch_size=128 --out=$RUN                 # Uni-AdaFocus (N = 48)
  adafocus-convert --checkpoint=uni_tsm_sthv1.pth.tar --dataset=sthv1 \\
      --patch_size=128 --out=$RUN                 # Uni-AdaFocus-TSM
  adafocus-evaluate --run=$RUN --data_dir=$WS/data/actnet

(``python launch/convert_checkpoint.py`` is the same command.)

The run directory gets the dataset preset's config (its V2 preset for an
AdaFocusV2 file) with the architecture the checkpoint's tensors imply, and
the weights in the stage checkpoint the loaders read (docs/CONVERT.md).
``--method=v1``, ``v2`` or ``uni`` makes sure the file is of that method. Every tensor must find its Keras variable
and every variable its tensor; otherwise nothing is written and the error
names both sides. Needs no PyTorch and no GPU.

Exit status: 0 converted; 1 not converted (the checkpoint is not one,
tensors are missing, left over or of the wrong shape, or a flag is bad),
with the reason on stderr.
"""
import sys

from absl import app
from absl import flags

from adafocus_tf import config as config_lib
from adafocus_tf.cli import common
from adafocus_tf.convert import errors
from adafocus_tf.convert import run_writer
from adafocus_tf.convert.torch_pickle import CheckpointFormatError

FLAGS = flags.FLAGS
COMMAND = common.Command(
    __name__,
    shared=("dataset", "method", "patch_size", "out", "data_dir", "seed",
            "override"),
    # Unset: the checkpoint's own method (an AdaFocusV2 file makes a V2
    # run); set, a file of the other method is refused.
    defaults={"method": None}, choices={"method": run_writer.METHODS})
flags.DEFINE_string("checkpoint", None, "A whole-model checkpoint: "
                    "AdaFocus V1 (.pth.tar of stage 1, 2 or 3: entries "
                    "glancer, focuser, fc[, policy]) or an official "
                    "AdaFocusV2 or V2-TSM one (state_dict of module.global_CNN"
                    ", module.policy_stn...), or an official Uni-AdaFocus one "
                    "(module.spatial_policy, module.temporal_policy...; the "
                    "candidate frames N are the preset's 48 unless "
                    "--override=data.num_frames=N), or an official "
                    "Uni-AdaFocus-TSM one (module.global_CNN.base_model with "
                    "those modules; K of N candidates are the preset's 12 of "
                    "36 unless --override=uni.focus_frames=K "
                    "--override=data.focus_frames=N).")
flags.DEFINE_string("glance_checkpoint", None, "A backbone file for the glance "
                    "net: the reference's stage-0 globalcnn.pth.tar, or a TSM "
                    "MobileNetV2 (Something-Something). Writes a stage-0 run.")
flags.DEFINE_string("focus_checkpoint", None, "A backbone file for the focus "
                    "net: the reference's stage-0 localcnn.pth.tar, or a TSM "
                    "ResNet-50. Writes a stage-0 run.")
flags.DEFINE_bool("ignore_policy", False, "Convert a checkpoint that has a "
                  "policy without it (the run then has no stage 2).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("dataset", "patch_size", "out"):
    if getattr(FLAGS, name) is None:
      raise app.UsageError(f"--{name} is required")
  if not FLAGS.checkpoint and not (FLAGS.glance_checkpoint
                                   or FLAGS.focus_checkpoint):
    raise app.UsageError("give --checkpoint, or --glance_checkpoint and/or "
                         "--focus_checkpoint")
  if FLAGS.checkpoint and (FLAGS.glance_checkpoint or FLAGS.focus_checkpoint):
    raise app.UsageError("--checkpoint (a whole model) excludes "
                         "--glance_checkpoint/--focus_checkpoint (backbones)")
  if FLAGS.dataset not in config_lib.datasets():
    raise app.UsageError(f"--dataset={FLAGS.dataset}: one of "
                         f"{config_lib.datasets()}")
  try:
    result = run_writer.convert(
        FLAGS.dataset, FLAGS.patch_size, FLAGS.out,
        checkpoint=FLAGS.checkpoint or "",
        glance_checkpoint=FLAGS.glance_checkpoint or "",
        focus_checkpoint=FLAGS.focus_checkpoint or "",
        data_dir=FLAGS.data_dir or "", seed=FLAGS.seed,
        overrides=FLAGS.override, ignore_policy=FLAGS.ignore_policy,
        method=FLAGS.method or run_writer.AUTO_METHOD, log=print)
  except (errors.ConversionError, CheckpointFormatError,
          FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    print("nothing was written", file=sys.stderr)
    return 1
  except (FileExistsError, ValueError) as e:
    raise app.UsageError(str(e))
  data = result["config"].data.data_dir
  print(f"next: python launch/evaluate.py --run={result['run']}"
        + ("" if data else " --data_dir=<prepared dataset>"))


def run() -> None:
  """The ``adafocus-convert`` console script (and
  ``launch/convert_checkpoint.py``)."""
  COMMAND.run(main)

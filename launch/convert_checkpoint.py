"""Converts the reference PyTorch implementation's checkpoints into a run.

  python launch/convert_checkpoint.py --checkpoint=128s3_checkpoint.pth.tar \\
      --dataset=actnet --patch_size=128 --out=$RUN
  python launch/convert_checkpoint.py --glance_checkpoint=globalcnn.pth.tar \\
      --focus_checkpoint=localcnn.pth.tar --dataset=actnet --patch_size=128 \\
      --out=$RUN                                  # stage-0 backbones
  python launch/evaluate.py --run=$RUN --data_dir=$WS/data/actnet

The run directory gets the dataset preset's config with the architecture
the checkpoint's tensors imply, and the weights in the stage checkpoint the
loaders read (docs/CONVERT.md). Every tensor must find its Keras variable
and every variable its tensor; otherwise nothing is written and the error
names both sides. Needs no PyTorch and no GPU.

Exit status: 0 converted; 1 not converted (the checkpoint is not one,
tensors are missing, left over or of the wrong shape, or a flag is bad),
with the reason on stderr.
"""
import os
import sys

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from adafocus_tf import config as config_lib
from adafocus_tf import io_utils
from adafocus_tf.convert import errors
from adafocus_tf.convert import run_writer
from adafocus_tf.convert.torch_pickle import CheckpointFormatError

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "A whole-model AdaFocus checkpoint "
                    "(.pth.tar of stage 1, 2 or 3: entries glancer, focuser, "
                    "fc[, policy]).")
flags.DEFINE_string("glance_checkpoint", None, "A backbone file for the glance "
                    "net: the reference's stage-0 globalcnn.pth.tar, or a TSM "
                    "MobileNetV2 (Something-Something). Writes a stage-0 run.")
flags.DEFINE_string("focus_checkpoint", None, "A backbone file for the focus "
                    "net: the reference's stage-0 localcnn.pth.tar, or a TSM "
                    "ResNet-50. Writes a stage-0 run.")
flags.DEFINE_string("dataset", None,
                    f"Config preset: one of {sorted(config_lib.PRESETS)}.")
flags.DEFINE_integer("patch_size", None, "Patch size P the checkpoint was "
                     "trained with (the weights do not record it).")
flags.DEFINE_string("out", None, "Run directory to create (local or s3://).")
flags.DEFINE_string("data_dir", None, "Prepared dataset recorded in the "
                    "run's config (evaluate.py can also take --data_dir).")
flags.DEFINE_integer("seed", None, "The run's seed (further training, random "
                     "patches).")
flags.DEFINE_multi_string("override", [], "Any config field, e.g. "
                          "--override=data.num_classes=101 (repeatable).")
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
  if FLAGS.dataset not in config_lib.PRESETS:
    raise app.UsageError(f"--dataset={FLAGS.dataset}: one of "
                         f"{sorted(config_lib.PRESETS)}")
  try:
    result = run_writer.convert(
        FLAGS.dataset, FLAGS.patch_size, FLAGS.out,
        checkpoint=FLAGS.checkpoint or "",
        glance_checkpoint=FLAGS.glance_checkpoint or "",
        focus_checkpoint=FLAGS.focus_checkpoint or "",
        data_dir=FLAGS.data_dir or "", seed=FLAGS.seed,
        overrides=FLAGS.override, ignore_policy=FLAGS.ignore_policy,
        log=print)
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


if __name__ == "__main__":
  # Every exit through io_utils: after S3 use a plain one aborts.
  io_utils.run_main(main)

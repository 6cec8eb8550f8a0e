"""Checks ``torch_reference_x3d.py``'s X3D against the unmodified official
modules (a manual check, not a test: it needs the official code).

  python tests/convert/check_official_x3d.py \\
      "<Uni-AdaFocus checkout>/Uni-AdaFocus-X3D with Experiments on Kinetics-400"

Run in the torch interpreter (tests/convert/conftest.py). It imports the
official ``archs/x3d_video_model_builder.py`` and the SlowFast modules it
builds from that folder, with stand-ins for the dependencies they import
but the X3D network does not use (fvcore's weight init, pytorchvideo's
batch norms, SlowFast's logging, attention and reversible MViT, the
TSM transforms) and for pytorchvideo's ``Swish`` (x * sigmoid(x)). It
builds the official ``X3D`` at a tiny width with the official stage
depths, gives it random weights and batch-norm statistics, loads its state
dict strictly into the re-creation, and prints the largest difference of
``get_featmap``'s three outputs in float64 (0.0 when last run: the same
266 keys, bit-identical outputs) and of ``forward``'s eval-mode output
against the softmax of ``get_featmap``'s logits.
"""
import importlib
import logging
import os
import sys
import types

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_reference_x3d as ref_x3d  # pylint: disable=g-import-not-at-top,wrong-import-position

CLASSES, FRAMES, SIZE = 5, 4, 64


class Swish(nn.Module):
  """pytorchvideo's Swish: x * sigmoid(x)."""

  def forward(self, x):
    return x * torch.sigmoid(x)


def _module(name, **attrs):
  m = types.ModuleType(name)
  m.__dict__.update(attrs)
  sys.modules[name] = m
  return m


def _stand_ins(folder):
  _module("pytorchvideo")
  _module("pytorchvideo.layers")
  _module("pytorchvideo.layers.swish", Swish=Swish)
  _module("pytorchvideo.layers.batch_norm", NaiveSyncBatchNorm1d=None,
          NaiveSyncBatchNorm3d=None)
  _module("fvcore")
  _module("fvcore.nn")
  _module("fvcore.nn.weight_init", c2_msra_fill=lambda m: None,
          c2_xavier_fill=lambda m: None)
  _module("torchvision")
  _module("fairscale")
  for package in ("slowfast", "slowfast/models", "slowfast/utils", "archs",
                  "ops"):
    _module(package.replace("/", ".")).__path__ = [
        os.path.join(folder, package)]
  _module("slowfast.utils.logging", get_logger=logging.getLogger)
  _module("slowfast.models.attention", MultiScaleBlock=None)
  _module("slowfast.models.reversible_mvit", ReversibleMViT=None)
  _module("ops.transforms")


def _config():
  """The fields ``X3D`` reads: the official defaults and X3D configs, at
  a tiny width (``DIM_C1`` 4, ``DIM_C5`` 16, ``DEPTH_FACTOR`` 1)."""
  n = types.SimpleNamespace
  return n(
      BN=n(NORM_TYPE="batchnorm"), DETECTION=n(ENABLE=False),
      X3D=n(DIM_C1=4, SCALE_RES2=False, WIDTH_FACTOR=2.0, DEPTH_FACTOR=1.0,
            BOTTLENECK_FACTOR=2.25, DIM_C5=16, CHANNELWISE_3x3x3=True,
            BN_LIN5=False),
      MODEL=n(ARCH="x3d", FC_INIT_STD=0.01, NUM_CLASSES=CLASSES,
              DROPCONNECT_RATE=0.0, DROPOUT_RATE=0.5, HEAD_ACT="softmax"),
      RESNET=n(DEPTH=50, NUM_GROUPS=1, WIDTH_PER_GROUP=64,
               ZERO_INIT_FINAL_BN=True, TRANS_FUNC="x3d_transform",
               STRIDE_1X1=False, SPATIAL_DILATIONS=[[1], [1], [1], [1]]),
      NONLOCAL=n(LOCATION=[[[]]] * 4, GROUP=[[1]] * 4,
                 POOL=[[[1, 2, 2], [1, 2, 2]]] * 4,
                 INSTANTIATION="dot_product"),
      DATA=n(INPUT_CHANNEL_NUM=[3], TRAIN_CROP_SIZE=SIZE, NUM_FRAMES=FRAMES))


def main(folder):
  _stand_ins(folder)
  builder = importlib.import_module("archs.x3d_video_model_builder")
  official = builder.X3D(_config()).double()
  ours = ref_x3d.X3D(CLASSES, FRAMES, SIZE, dim_c1=4, dim_c5=16,
                     depth_factor=1.0).double()
  clip = torch.randn(2, 3, FRAMES, SIZE, SIZE, dtype=torch.float64)
  # ``randomise`` walks modules and calls ``get_featmap``: the official
  # model has both.
  ref_x3d.randomise(official, clip, 3)
  state = official.state_dict()
  ours.load_state_dict(state, strict=True)
  ours.eval()
  with torch.no_grad():
    theirs, mine = official.get_featmap(clip), ours.get_featmap(clip)
    forward = official([clip])
  print(f"{len(state)} state-dict keys, loaded strictly")
  for name, a, b in zip(("logits", "maps", "frame features"), theirs, mine):
    print(f"{name}: max |official - re-creation| = "
          f"{float((a - b).abs().max()):.3g}")
  print("eval forward vs softmax(get_featmap logits): "
        f"{float((forward - torch.softmax(theirs[0], -1)).abs().max()):.3g}")


if __name__ == "__main__":
  main(sys.argv[1])

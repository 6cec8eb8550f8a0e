"""A PyTorch re-creation of the official Uni-AdaFocus-X3D training step.

Run in the torch interpreter, like ``torch_reference_x3d.py`` (whose
model, with the official module names, it trains):

  python tests/convert/torch_train_uni_x3d.py --spec=SPEC.json --out=DIR

It follows, in meaning, LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus-X3D with Experiments on Kinetics-400" (docs/METHOD.md
V2-11.3, V2-11.4):

  * ``archs/uni_adafocus_X3D.py``, ``AdaFocus.forward`` in training mode
    (``torch_reference_x3d.AdaFocusX3D.train_forward``): the glance X3D
    once (``get_featmap``: its head pools the detached map) and its
    per-frame ``global_CNN_head``; the temporal policy on the detached
    per-frame features, the Monte-Carlo logits on the detached per-frame
    logits; the spatial policy on the detached glance maps, first for the
    auxiliary prediction and the size term (``action_3``), then for the
    focus region (``action_2``: its batch norms' running statistics move
    twice); the frames selected from the detached temperature weights;
    the focus X3D once on both branches' patches, the random position's
    first (``action_1``, side P), its batch norms over both;
  * ``main.py``, ``train``: the same loss as the TSM family's ``train``
    (``torch_train_uni_tsm.official_losses``), ``zero_grad``,
    ``backward``, ``clip_grad_norm_`` of every parameter at ``--gd`` (20),
    ``step`` (the AMP scaler unscales first; ``autocast`` around the X3D
    nets acts on CUDA tensors only: no change on the CPU);
  * ``main.py``, ``adjust_learning_rate`` (``--lr_type cos``) and
    ``AdaFocus.get_optim_policies``: SGD with momentum, seven groups
    (temporal_policy, spatial_policy at ``--temporal_lr_ratio`` and
    ``--stn_lr_ratio``; global_CNN, global_CNN_head, aux_head at
    ``--global_lr_ratio``; local_CNN, local_CNN_head at 1), weight decay
    x 1.

Dropout is off (p = 0). The random draws are given and saved as
``torch_train_uni_tsm.py`` saves them (``frame_draws``,
``random_positions``, ``mc_removed``), and so are the weights before and
after (``<name>_before.pth.tar``, ``<name>_after.pth.tar``) and
``<name>.npz`` (the frames NHWC, labels, every loss term, each of our
groups' gradient norm before clipping, the total norm, the selected
frames and the actions).

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import torch

import torch_reference as ref
import torch_reference_uni as uni
import torch_reference_v2 as ref_v2
import torch_reference_x3d as ref_x3d
import torch_train_uni_step as uni_step
import torch_train_uni_tsm as train_tsm

# Our variable groups as official submodules.
GROUPS = {"policy": ("temporal_policy", "spatial_policy"),
          "glance": ("global_CNN", "global_CNN_head", "aux_head"),
          "focus": ("local_CNN", "local_CNN_head")}
# The README command's ratios.
RATIOS = {"temporal": 0.4, "spatial": 0.4, "glance": 0.5}


def lr_mults(ratios: Dict[str, float]) -> Dict[str, float]:
  """``get_optim_policies``' groups.

  Args:
    ratios: lr_mult of ``temporal``, ``spatial`` and ``glance``.

  Returns:
    {official submodule: its lr_mult}, in the official order.
  """
  return {"temporal_policy": ratios["temporal"],
          "spatial_policy": ratios["spatial"],
          "global_CNN": ratios["glance"], "global_CNN_head": ratios["glance"],
          "aux_head": ratios["glance"], "local_CNN": 1.0,
          "local_CNN_head": 1.0}


def case_uni_x3d_train_step(out: str, name: str, seed: int = 0,
                            batch: int = 2, mc_samples: int = 4,
                            lr: float = 0.005,
                            ratios: Optional[Dict[str, float]] = None,
                            epoch: int = 0, epochs: int = 50,
                            momentum: float = 0.9,
                            weight_decay: float = 5e-5,
                            norm_ratio: float = 0.5,
                            clip: float = train_tsm.CLIP,
                            dtype: str = "float32", classes: int = 5,
                            segments: int = 8, glance: int = 4,
                            focus: int = 4, frame_size: int = 224,
                            glance_size: int = 160, patch: int = 128,
                            spatial_hidden: int = 8,
                            temporal_hidden: int = 8, **factors) -> None:
  """One official training step of a random model (module doc).

  Args:
    out: output directory.
    name: file stem.
    seed: random seed.
    batch: B videos.
    mc_samples: S Monte-Carlo draws (``sample_times``, 128 officially).
    lr: the base learning rate (``--lr``).
    ratios: lr_mult of ``temporal``, ``spatial`` and ``glance`` (default
      ``RATIOS``).
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``--epochs``.
    momentum: SGD momentum.
    weight_decay: ``--wd``.
    norm_ratio: ``--norm_ratio``.
    clip: ``--gd``, the gradient norm ``clip_grad_norm_`` clips to.
    dtype: ``float32``, or ``float64`` (every parameter, buffer, input and
      draw in double; the weights and draws are float32 values all the
      same).
    classes: the classes.
    segments: N candidates.
    glance: G glance frames.
    focus: K focus frames.
    frame_size: S, the frames' side.
    glance_size: the glance clip's side.
    patch: P.
    spatial_hidden: the spatial policy's width.
    temporal_hidden: the temporal policy's width.
    **factors: ``torch_reference_x3d.X3D``'s (both nets).
  """
  model = ref_x3d.make_uni_model(seed, classes, segments, glance, focus,
                                 frame_size, glance_size, patch,
                                 spatial_hidden, temporal_hidden, factors,
                                 dropout=0.0)
  cast = torch.float64 if dtype == "float64" else torch.float32
  model.to(cast)
  uni.save_checkpoint(model, os.path.join(out, f"{name}_before.pth.tar"))
  rng = np.random.default_rng(seed + 20)
  s = frame_size
  candidates = ref_v2.random_frames(rng, (batch, segments, 3, s, s)).to(cast)
  glance_frames = ref_v2.random_frames(rng, (batch, glance, 3, s, s)).to(cast)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  draws = dict(frame_draws=uni_step.uniform32(rng, (batch, focus)),
               random_positions=uni_step.uniform32(rng, (batch, 2)).to(cast))
  mc_removed = uni.removed_drawer(seed, mc_samples, glance)

  optimizer = uni_step.official_sgd(
      model, lr_mults(dict(RATIOS, **(ratios or {}))), lr, epoch, epochs,
      momentum, weight_decay)
  res, terms, norms, total = uni_step.run_step(
      model, optimizer,
      lambda: model.train_forward(
          glance_frames.reshape(batch, -1, s, s), candidates,
          mc_removed=mc_removed, **draws),
      lambda outputs: train_tsm.official_losses(outputs, labels, norm_ratio),
      GROUPS, clip)
  uni.save_checkpoint(model, os.path.join(out, f"{name}_after.pth.tar"))
  train_tsm.save_two_branch_step(out, name, labels, GROUPS, norms, terms,
                                 total, res, draws, glance_frames,
                                 candidates)


CASES = {"uni_x3d_train_step": case_uni_x3d_train_step}


if __name__ == "__main__":
  ref.main(cases=CASES)

"""A PyTorch re-creation of the official Uni-AdaFocus-TSM training step.

Run in the torch interpreter, like ``torch_reference_uni_tsm.py`` (whose
model, with the official module names, it trains):

  python tests/convert/torch_train_uni_tsm.py --spec=SPEC.json --out=DIR

It follows, in meaning, LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus-TSM with Experiments on Sth-Sth V1&V2 and Jester"
(docs/METHOD.md V2-11.3, V2-11.4):

  * ``archs/uni_adafocus_tsm.py``, ``AdaFocus.forward`` in training mode
    (``torch_reference_uni_tsm.AdaFocus``): the glance ``TSN`` once; the
    temporal policy on the detached pooled features, the Monte-Carlo
    logits on the detached per-frame ``new_new_fc`` logits; the spatial
    policy on the detached glance maps, first for the auxiliary prediction
    and the size term (``action_3``), then for the focus region
    (``action_2``: its batch norms' running statistics move twice); the
    frames selected from the detached temperature weights; the focus
    ``TSN`` once on both branches' patches, the random position's first
    (``action_1``, side P), its batch norms over both;
  * ``main.py``, ``train``: ``loss = (loss_target + loss_global +
    loss_local + loss_temporal + loss_spatial) / 2 + loss_norm x
    norm_ratio``, each of the first five the sum of the two branches' mean
    cross-entropies (global, temporal and spatial: twice the same value);
    ``zero_grad``, ``backward``, ``clip_grad_norm_`` of every parameter at
    ``--gd`` (20), ``step`` (the AMP scaler unscales first: no change in
    float32 or float64 on the CPU);
  * ``main.py``, ``adjust_learning_rate`` (``--lr_type cos``) and
    ``AdaFocus.get_optim_policies``: SGD with momentum, five groups
    (temporal_policy, spatial_policy, global_CNN, aux_fc, local_CNN) at
    ``0.5 lr (1 + cos(pi epoch / epochs)) x lr_mult``, weight decay x 1
    (``--npb``: every batch norm trains).

Dropout is off (p = 0). Every random draw is given and saved so that
another implementation can replay the step: ``frame_draws`` [B, K]
(``torch.rand_like(threshold)``), ``random_positions`` [B, 2] (the first
two columns of ``torch.rand_like(action_2)``) and ``mc_removed`` [B, S,
T1, G] (``torch.multinomial`` draws from w, as 0/1 masks). Each case saves
``<name>_before.pth.tar``, ``<name>_after.pth.tar`` (the official layout)
and ``<name>.npz``: the frames (NHWC), labels, the draws, every loss term,
the gradient norm of each of our groups (``norms`` in the order
``norm_names``, before clipping), the total norm ``clip_grad_norm_``
returned, the selected frames and the actions.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

import torch_reference as ref
import torch_reference_uni as uni
import torch_reference_uni_tsm as uni_tsm
import torch_train_uni_step as uni_step

# Our variable groups as official submodules.
GROUPS = {"policy": ("temporal_policy", "spatial_policy"),
          "glance": ("global_CNN", "aux_fc"), "focus": ("local_CNN",)}
# The README commands' lr_mult.
RATIOS = {"temporal": 0.2, "spatial": 0.2, "glance": 0.5}
# ``--gd`` of every README command.
CLIP = 20.0


def lr_mults(ratios: Dict[str, float]) -> Dict[str, float]:
  """``get_optim_policies``' groups.

  Args:
    ratios: lr_mult of ``temporal``, ``spatial`` and ``glance``.

  Returns:
    {official submodule: its lr_mult}, in the official order.
  """
  return {"temporal_policy": ratios["temporal"],
          "spatial_policy": ratios["spatial"],
          "global_CNN": ratios["glance"], "aux_fc": ratios["glance"],
          "local_CNN": 1.0}


def official_losses(res, labels, norm_ratio: float):
  """``train``'s loss terms and loss from the forward's outputs.

  Returns:
    {term: scalar}: ``loss_target_1``, ``loss_target_2`` (the random and
    the policy branch's prediction), ``loss_local_1``, ``loss_local_2``
    (their focus ``new_new_fc`` means), ``loss_global``, ``loss_temporal``,
    ``loss_spatial`` (one branch's each), ``loss_norm`` (before
    ``norm_ratio``) and ``loss``.
  """
  ce = nn.CrossEntropyLoss()
  t = {}
  for i, branch in enumerate(res["branches"], 1):
    t[f"loss_target_{i}"] = ce(branch["logits"], labels)
    t[f"loss_local_{i}"] = ce(branch["focus_avg"], labels)
  t["loss_global"] = ce(res["glance_avg"], labels)
  t["loss_temporal"] = ce(res["temporal_logits"], labels)
  t["loss_spatial"] = ce(res["spatial_logits"], labels)
  sizes = res["spatial_actions"][:, 2:4]
  t["loss_norm"] = ((sizes - torch.ones_like(sizes)) ** 2).mean()
  t["loss"] = (uni_step.halved_loss(t, "loss_target")
               + t["loss_norm"] * norm_ratio)
  return t


def case_uni_tsm_train_step(out: str, name: str, seed: int = 0,
                            batch: int = 2, mc_samples: int = 4,
                            lr: float = 0.02,
                            ratios: Optional[Dict[str, float]] = None,
                            epoch: int = 0, epochs: int = 50,
                            momentum: float = 0.9,
                            weight_decay: float = 1e-3,
                            norm_ratio: float = 0.5, clip: float = CLIP,
                            dtype: str = "float32", **sizes) -> None:
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
      same, so that float32 files of them are exact).
    **sizes: ``torch_reference_uni_tsm.make_model``'s.
  """
  model = uni_tsm.make_model(seed, dropout=0.0, **sizes)
  cast = torch.float64 if dtype == "float64" else torch.float32
  model.to(cast)
  uni_tsm.save_checkpoint(model, os.path.join(out, f"{name}_before.pth.tar"))
  glance, candidates = uni_tsm.inputs(model, seed, batch, cast)
  rng = np.random.default_rng(seed + 1)
  labels = torch.from_numpy(rng.integers(0, model.aux_fc.out_features,
                                         batch))
  draws = dict(frame_draws=uni_step.uniform32(rng, (batch, model.focus)),
               random_positions=uni_step.uniform32(rng, (batch, 2)).to(cast))
  mc_removed = uni.removed_drawer(seed, mc_samples, model.glance)

  optimizer = uni_step.official_sgd(
      model, lr_mults(dict(RATIOS, **(ratios or {}))), lr, epoch, epochs,
      momentum, weight_decay)
  res, terms, norms, total = uni_step.run_step(
      model, optimizer,
      lambda: model(glance, candidates, mc_removed=mc_removed, **draws),
      lambda outputs: official_losses(outputs, labels, norm_ratio), GROUPS,
      clip)
  uni_tsm.save_checkpoint(model, os.path.join(out, f"{name}_after.pth.tar"))
  save_two_branch_step(out, name, labels, GROUPS, norms, terms, total, res,
                       draws, glance, candidates)


def save_two_branch_step(out: str, name: str, labels: torch.Tensor,
                         groups, norms, terms, total, res: dict,
                         draws: dict, glance: torch.Tensor,
                         candidates: torch.Tensor) -> None:
  """``<name>.npz`` of a single-region family's step (TSM, X3D): the
  ``uni_step.save_step`` arrays, the total norm, the draws, the frames,
  the selection and each branch's actions.

  Args:
    out: output directory.
    name: file stem.
    labels: [B].
    groups: our groups, in the order of ``norms``.
    norms: {group: gradient norm}.
    terms: {term: scalar}.
    total: the norm ``clip_grad_norm_`` returned.
    res: the forward's outputs (``branches``: random, then policy).
    draws: ``frame_draws`` and ``random_positions``.
    glance: [B, G, 3, S, S] glance frames.
    candidates: [B, N, 3, S, S].
  """
  random, policy = res["branches"]
  uni_step.save_step(
      out, name, labels, groups, norms, terms, total_norm=float(total),
      **uni.arrays(dict(
          draws, glance_frames=glance.float(),
          focus_frames=candidates.float(), mc_removed=res["mc_removed"],
          focus_indices=res["focus_indices"], weights=res["weights"],
          spatial_actions=res["spatial_actions"],
          policy_actions=policy["focus_actions"],
          random_actions=random["focus_actions"])))


CASES = {"uni_tsm_train_step": case_uni_tsm_train_step}


if __name__ == "__main__":
  ref.main(cases=CASES)

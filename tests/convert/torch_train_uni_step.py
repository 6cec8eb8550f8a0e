"""What the PyTorch re-creations of the official Uni-AdaFocus training
steps share (``torch_train_uni.py``, ``torch_train_uni_tsm.py``): the
official SGD at an epoch's cosine rate, the halved sum of the two
branches' terms, one step with its group norms, and the saved arrays.

Run in the torch interpreter; imports nothing of TensorFlow.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

import torch_train_v2


def official_sgd(model: nn.Module, mults: Dict[str, float], lr: float,
                 epoch: int, epochs: int, momentum: float,
                 weight_decay: float) -> torch.optim.SGD:
  """The official SGD: ``get_optim_policies``' groups at ``epoch``'s rate.

  Args:
    model: the official model.
    mults: {submodule: its lr_mult}, one group each, in order.
    lr: the base learning rate (``--lr``).
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``--epochs``.
    momentum: SGD momentum.
    weight_decay: the weight decay (x 1 in every group).

  Returns:
    The optimiser, each group at ``0.5 lr (1 + cos(pi epoch / epochs)) x
    lr_mult``.
  """
  rate = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
  groups = [{"params": list(getattr(model, name).parameters()), "name": name,
             "lr": rate * mult, "weight_decay": weight_decay * 1}
            for name, mult in mults.items()]
  return torch.optim.SGD(groups, lr, momentum=momentum,
                         weight_decay=weight_decay)


def uniform32(rng: np.random.Generator, shape) -> torch.Tensor:
  """Uniform draws of ``shape`` as float32 (the draws another
  implementation replays)."""
  return torch.from_numpy(rng.uniform(size=shape).astype(np.float32))


def halved_loss(t: Dict[str, torch.Tensor], prediction: str) -> torch.Tensor:
  """``train``'s ``(loss_<prediction> + loss_global + loss_local +
  loss_temporal + loss_spatial) / 2``, each the sum over both branches.

  Args:
    t: the terms: ``<prediction>_1``, ``<prediction>_2``, ``loss_local_1``,
      ``loss_local_2`` (per branch), ``loss_global``, ``loss_temporal``,
      ``loss_spatial`` (both branches share them: twice the same value).
    prediction: the prediction's term (``loss_cat``, ``loss_target``).

  Returns:
    The halved sum, added in the official order.
  """
  return ((t[f"{prediction}_1"] + t[f"{prediction}_2"])
          + (t["loss_global"] + t["loss_global"])
          + (t["loss_local_1"] + t["loss_local_2"])
          + (t["loss_temporal"] + t["loss_temporal"])
          + (t["loss_spatial"] + t["loss_spatial"])) / 2


def run_step(model: nn.Module, optimizer: torch.optim.SGD,
               forward: Callable[[], dict],
               losses: Callable[[dict], Dict[str, torch.Tensor]],
               groups: Dict[str, Sequence[str]],
               clip: Optional[float] = None):
  """``train``'s step: ``zero_grad``, the forward in training mode, the
  loss's ``backward``, (``clip_grad_norm_``), ``step``.

  Args:
    model: the official model.
    optimizer: its ``official_sgd``.
    forward: runs the model on the batch (its draws given).
    losses: the forward's outputs -> the terms, the loss as ``loss``.
    groups: our group -> its official submodules, for the norms.
    clip: ``--gd``, the gradient norm to clip to (None: no clipping).

  Returns:
    (the forward's outputs, the terms, each group's gradient norm before
    clipping, the total norm ``clip_grad_norm_`` returned or None).
  """
  model.train()
  optimizer.zero_grad()
  res = forward()
  terms = losses(res)
  terms["loss"].backward()
  norms = torch_train_v2.group_norms(model, groups)
  total = (None if clip is None
           else nn.utils.clip_grad_norm_(model.parameters(), clip))
  optimizer.step()
  return res, terms, norms, total


def save_step(out: str, name: str, labels: torch.Tensor,
              groups: Dict[str, Sequence[str]], norms: Dict[str, float],
              terms: Dict[str, torch.Tensor], **arrays) -> None:
  """Writes ``<name>.npz``: the labels, the group norms (``norms`` in the
  order ``norm_names``), every term as a float, and ``arrays``.

  Args:
    out: output directory.
    name: file stem.
    labels: [B] the labels.
    groups: our groups, in the order of ``norms``.
    norms: {group: gradient norm}.
    terms: {term: scalar}.
    **arrays: the other arrays (numpy, or floats).
  """
  np.savez(os.path.join(out, f"{name}.npz"),
           labels=labels.numpy(), norms=np.array([norms[k] for k in groups]),
           norm_names=np.array(list(groups)),
           **{k: float(v.detach()) for k, v in terms.items()}, **arrays)

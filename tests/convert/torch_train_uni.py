"""A PyTorch re-creation of the official Uni-AdaFocus training step.

Run in the torch interpreter, like ``torch_reference_uni.py`` (whose model,
with the official module names, it trains):

  python tests/convert/torch_train_uni.py --spec=SPEC.json --out=DIR

It follows, in meaning, LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus with Experiments on ActivityNet, FCVID and Mini-Kinetics"
(docs/METHOD.md V2-11.3, V2-11.4):

  * ``models/uni_adafocus.py``, ``AdaFocus.forward`` in training mode
    (``torch_reference_uni.AdaFocus``): glance frames one random candidate
    per group of N // G; the spatial policy called twice on the detached
    glance maps (``actions_1``, then ``action_3``: its batch norms' running
    statistics move twice); the temporal policy on the pooled glance
    features and the Monte-Carlo logits on the glance logits (neither
    detached); the spatial auxiliary logits from the detached glance map
    sampled at the non-detached ``action_3``; focus frames from the
    detached temperature weights; the focus net once on both branches'
    patches (the policy's actions and random positions at size P, both
    detached), its batch norms over both; the classifier once per branch;
  * ``main.py``, ``train``: ``loss = (loss_cat + loss_global + loss_local
    + loss_temporal + loss_spatial) / 2 + KL_ratio loss_KL + norm_ratio
    loss_norm``, each of the first five the sum of the two branches' mean
    cross-entropies (global, temporal and spatial: twice the same value);
    ``zero_grad``, ``backward``, ``step``;
  * ``main.py``, ``adjust_learning_rate`` (``--lr_type cos``) and
    ``AdaFocus.get_optim_policies``: SGD with momentum, eight groups
    (temporal_policy, spatial_policy, global_CNN, global_CNN_fc, aux_fc,
    local_CNN, local_CNN_fc, classifier) at ``0.5 lr (1 + cos(pi epoch /
    epochs)) x lr_mult``, weight decay x 1. Parameters without a gradient
    (the backbones' ImageNet heads) are skipped, as DDP leaves them.

Dropout is off (p = 0). Every random draw is given and saved so that
another implementation can replay the step: ``glance_draws`` [B, G] (the
candidate within each group, ``torch.randint``), ``frame_draws`` [B, K]
(``torch.rand_like(threshold)``), ``random_positions`` [B, N, 2] (the
first two columns of ``torch.rand_like(actions_1)``, one per candidate)
and ``mc_removed`` [B, S, T1, G] (``torch.multinomial`` draws from w, as
0/1 masks). Each case saves ``<name>_before.pth.tar``,
``<name>_after.pth.tar`` (the official layout) and ``<name>.npz``: the
frames (NHWC, float32), labels, the draws, every loss term
(``official_losses``), the gradient norm of each of our groups (``norms``
in the order ``norm_names``), the glance and focus indices, the weights w,
``spatial_actions`` (``action_3``) and each branch's actions and regions
(y, x, Ly, Lx) at the focus frames.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import torch_reference as ref
import torch_reference_uni as uni
import torch_reference_v2 as ref_v2
import torch_train_uni_step as uni_step

# Our variable groups as official submodules.
GROUPS = {"policy": ("temporal_policy", "spatial_policy"),
          "glance": ("global_CNN", "global_CNN_fc", "aux_fc"),
          "focus": ("local_CNN", "local_CNN_fc"),
          "classifier": ("classifier",)}
# opts.py's lr_mult defaults (every official command's).
RATIOS = {"temporal": 0.2, "spatial": 0.2, "glance": 0.5, "classifier": 20.0}


def lr_mults(ratios: Dict[str, float]) -> Dict[str, float]:
  """``get_optim_policies``' groups.

  Args:
    ratios: lr_mult of ``temporal``, ``spatial``, ``glance`` and
      ``classifier``.

  Returns:
    {official submodule: its lr_mult}, in the official order.
  """
  return {"temporal_policy": ratios["temporal"],
          "spatial_policy": ratios["spatial"],
          "global_CNN": ratios["glance"], "global_CNN_fc": ratios["glance"],
          "aux_fc": ratios["glance"], "local_CNN": 1.0, "local_CNN_fc": 1.0,
          "classifier": ratios["classifier"]}


def official_losses(res, labels, kl_ratio: float, norm_ratio: float):
  """``train``'s loss terms and loss from the forward's outputs.

  Returns:
    {term: scalar}: ``loss_cat_1``, ``loss_cat_2`` (step logits),
    ``loss_global`` (one branch's), ``loss_local_1``, ``loss_local_2``,
    ``loss_temporal``, ``loss_spatial`` (one branch's each),
    ``loss_kl`` (KL(w || uniform 1/K), before ``KL_ratio``),
    ``loss_norm`` (before ``norm_ratio``) and ``loss``.
  """
  ce = nn.CrossEntropyLoss()
  b, g, classes = res["glance_logits"].shape
  k = res["focus_indices"].shape[1]
  per = lambda n: labels.view(b, 1).expand(b, n).reshape(-1)  # pylint: disable=unnecessary-lambda-assignment
  t = {}
  for i, branch in enumerate(res["branches"], 1):
    t[f"loss_cat_{i}"] = ce(branch["logits"].reshape(-1, classes), per(g + k))
    t[f"loss_local_{i}"] = ce(branch["focus_logits"].reshape(-1, classes),
                              per(k))
  t["loss_global"] = ce(res["glance_logits"].reshape(-1, classes), per(g))
  t["loss_temporal"] = ce(res["temporal_logits"], labels)
  t["loss_spatial"] = ce(res["spatial_logits"], labels)
  w = res["weights"]
  t["loss_kl"] = F.kl_div(torch.full_like(w, 1.0 / k).log(), w,
                          reduction="batchmean")
  sizes = res["spatial_actions"].reshape(-1, 4)[:, 2:4]
  t["loss_norm"] = ((sizes - torch.ones_like(sizes)) ** 2).mean()
  t["loss"] = (uni_step.halved_loss(t, "loss_cat") + t["loss_kl"] * kl_ratio
               + t["loss_norm"] * norm_ratio)
  return t


def case_uni_train_step(out: str, name: str, seed: int = 0, batch: int = 2,
                        mc_samples: int = 4, lr: float = 0.002,
                        ratios: Optional[Dict[str, float]] = None,
                        epoch: int = 0, epochs: int = 50,
                        momentum: float = 0.9, weight_decay: float = 2e-4,
                        kl_ratio: float = 0.0, norm_ratio: float = 1.0,
                        dtype: str = "float32", **sizes) -> None:
  """One official training step of a random model (module doc).

  Args:
    out: output directory.
    name: file stem.
    seed: random seed.
    batch: B videos.
    mc_samples: S Monte-Carlo draws (``sample_times``, 128 officially).
    lr: the base learning rate (``--lr``).
    ratios: lr_mult of ``temporal``, ``spatial``, ``glance`` and
      ``classifier`` (default ``RATIOS``).
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``--epochs``.
    momentum: SGD momentum.
    weight_decay: ``--weight_decay``.
    kl_ratio: ``--KL_ratio``.
    norm_ratio: ``--norm_ratio``.
    dtype: ``float32``, or ``float64`` (every parameter, buffer, input and
      draw in double; the weights and draws are float32 values all the
      same, so that float32 files of them are exact).
    **sizes: ``torch_reference_uni.make_model``'s.
  """
  model = uni.make_model(seed, **sizes)
  for module in model.modules():
    if isinstance(module, nn.Dropout):
      module.p = 0.0
  cast = torch.float64 if dtype == "float64" else torch.float32
  model.to(cast)
  uni.save_checkpoint(model, os.path.join(out, f"{name}_before.pth.tar"))
  n, g, k = model.segments, model.glance, model.focus
  s, classes = model.frame_size, model.aux_fc.out_features
  rng = np.random.default_rng(seed)
  x = ref_v2.random_frames(rng, (batch, n, 3, s, s)).to(cast)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  draws = dict(glance_draws=torch.from_numpy(rng.integers(0, n // g,
                                                          (batch, g))),
               frame_draws=uni_step.uniform32(rng, (batch, k)),
               random_positions=uni_step.uniform32(rng, (batch, n, 2)).to(
                   cast))
  mc_removed = uni.removed_drawer(seed, mc_samples, g)

  optimizer = uni_step.official_sgd(
      model, lr_mults(dict(RATIOS, **(ratios or {}))), lr, epoch, epochs,
      momentum, weight_decay)
  res, terms, norms, _ = uni_step.run_step(
      model, optimizer, lambda: model(x, mc_removed=mc_removed, **draws),
      lambda outputs: official_losses(outputs, labels, kl_ratio, norm_ratio),
      GROUPS)
  uni.save_checkpoint(model, os.path.join(out, f"{name}_after.pth.tar"))
  policy, random = res["branches"]
  uni_step.save_step(
      out, name, labels, GROUPS, norms, terms, **uni.arrays(dict(
          draws, frames=x.float(), mc_removed=res["mc_removed"],
          glance_indices=res["glance_indices"],
          focus_indices=res["focus_indices"],
          frame_positions=res["frame_positions"],
          weights=res["weights"], spatial_actions=res["spatial_actions"],
          policy_actions=policy["focus_actions"],
          policy_regions=policy["regions"],
          random_actions=random["focus_actions"],
          random_regions=random["regions"])))


CASES = {"uni_train_step": case_uni_train_step}


if __name__ == "__main__":
  ref.main(cases=CASES)

"""A PyTorch re-creation of the official AdaFocusV2 training step.

Run in the torch interpreter, like ``torch_reference_v2.py`` (whose model,
with the official module names, it trains):

  python tests/convert/torch_train_v2.py --spec=SPEC.json --out=DIR

It follows, line for line in meaning, the official code of
LeapLabTHU/AdaFocusV2 @ e97987c, folder "Experiments on ActivityNet, FCVID
and Mini-Kinetics" (docs/METHOD.md V2-4, V2-5):

  * ``models/adafocus_v2.py``, ``AdaFocus.forward`` in training mode: the
    glance net once on every frame, its head once (``global_logits``); the
    policy on the *detached* glance maps (``actions_1``) and uniformly
    random actions (``actions_2 = torch.rand_like(actions_1)``: given here,
    recorded); for each in that order, patches (``get_patches_frame``),
    the focus net and its head, and the classifier on
    concat(glance pooled feature, focus feature);
  * ``PolicySTN.forward``: the encoder on all B * T maps at once (its batch
    norms over every frame), then the GRU from a zero state;
  * ``main_v2.py``, ``train``: the frames permuted to the model's reading
    order (``--sample``), the target the first label repeated per step,
    ``loss_1 = CE(step logits) + CE(glance logits) + CE(focus logits)``
    for the policy's actions, ``loss_2`` the same for the random ones,
    ``loss = (loss_1 + loss_2) / 2`` (``nn.CrossEntropyLoss``: means over
    B * T), ``zero_grad``, ``backward``, ``step``;
  * ``main_v2.py``, ``adjust_learning_rate`` (``--lr_type cos``) and
    ``AdaFocus.get_optim_policies``: SGD with momentum and weight decay,
    six parameter groups (policy_stn, global_CNN, global_CNN_fc,
    local_CNN, local_CNN_fc, classifier) with learning rate
    ``0.5 lr (1 + cos(pi epoch / epochs)) x lr_mult`` and weight decay
    ``weight_decay x decay_mult`` (decay_mult 1);
  * every batch norm in training mode (running statistics updated at each
    call: the focus net's and the classifier's twice a step, once per
    branch).

Dropout is switched off (p = 0) so that both sides compute the same thing.
Each case saves ``<name>_before.pth.tar`` and ``<name>_after.pth.tar`` in
the official checkpoint layout and ``<name>.npz``: the chronological frames
(NHWC), the labels, the reading order, the random actions (reading order),
every loss term, the loss, each of our variable groups' gradient norm
(policy; glance = global_CNN + global_CNN_fc; focus = local_CNN +
local_CNN_fc; classifier) and the policy's training-mode positions.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

import torch_reference as ref
import torch_reference_v2 as ref_v2

# Our variable groups (``training/end_to_end.v2_groups``) as official ones.
GROUPS = {"policy": ("policy_stn",),
          "glance": ("global_CNN", "global_CNN_fc"),
          "focus": ("local_CNN", "local_CNN_fc"),
          "classifier": ("classifier",)}


def official_forward(model: ref_v2.AdaFocusV2, frames, random_actions):
  """``AdaFocus.forward`` in training mode.

  Args:
    model: the model, in training mode.
    frames: [B, T, 3, S, S] in reading order.
    random_actions: [B, T, 2] in reading order, in [0, 1].

  Returns:
    ([(step logits [B*T, C], glance logits [B*T, C], focus logits
    [B*T, C]) for the policy's actions, then the random ones], the
    policy's actions [B, T, 2]).
  """
  b, t, _, s, _ = frames.shape
  flat = frames.reshape(b * t, 3, s, s)
  fmap, pooled = model.global_CNN.get_featmap(flat)
  glance_logits = model.global_CNN_fc(pooled)
  actions = model.policy_stn(fmap.detach().view(b, t, *fmap.shape[1:]))
  res = []
  for branch in (actions, random_actions):
    patches = ref_v2.sample_patches(flat, branch.reshape(b * t, 2),
                                    model.patch)
    local = model.local_CNN.get_featmap(patches).flatten(1)
    local_logits = model.local_CNN_fc(local)
    logits = model.classifier(torch.cat([pooled, local], -1).view(b, t, -1))
    res.append((logits.reshape(b * t, -1), glance_logits, local_logits))
  return res, actions


def optimizer_for(model: ref_v2.AdaFocusV2, lr: float, ratios: Dict[str, float],
                  epoch: int, epochs: int, momentum: float,
                  weight_decay: float) -> torch.optim.SGD:
  """The official SGD: ``get_optim_policies``' groups at ``epoch``'s rate."""
  rate = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
  mults = {"policy_stn": ratios["policy"], "global_CNN": ratios["glance"],
           "global_CNN_fc": ratios["glance"], "local_CNN": 1.0,
           "local_CNN_fc": 1.0, "classifier": ratios["classifier"]}
  groups = [{"params": getattr(model, name).parameters(), "name": name,
             "lr": rate * mult, "weight_decay": weight_decay}
            for name, mult in mults.items()]
  return torch.optim.SGD(groups, lr, momentum=momentum,
                         weight_decay=weight_decay)


def group_norms(model: nn.Module,
                groups: Optional[Dict[str, Sequence[str]]] = None
                ) -> Dict[str, float]:
  """Each of our variable groups' gradient norm, summed in double.

  Args:
    model: the model, after ``backward``.
    groups: our group -> the official submodules it holds (dotted names);
      default ``GROUPS``. A parameter without a gradient counts for nothing
      (as for PyTorch's SGD, which skips it).
  """
  norms = {}
  for ours, names in (groups or GROUPS).items():
    grads = [p.grad for name in names
             for p in model.get_submodule(name).parameters()
             if p.grad is not None]
    norms[ours] = float(torch.sqrt(sum((g.double() ** 2).sum()
                                       for g in grads)))
  return norms


def case_v2_train_step(out: str, name: str, seed: int = 0, batch: int = 2,
                       frames: int = 4, frame_size: int = 224,
                       patch: int = 128, classes: int = 5,
                       policy_hidden: int = 48, mlp_width: int = 96,
                       frame_order: Sequence[int] = (1, 0, 3, 2),
                       lr: float = 0.002, ratios: Dict[str, float] = None,
                       epoch: int = 0, epochs: int = 50,
                       momentum: float = 0.9, weight_decay: float = 1e-4,
                       dtype: str = "float32") -> None:
  """One official training step of a random V2 model (module doc).

  Args:
    out: output directory.
    name: file stem.
    seed: random seed.
    batch: B videos.
    frames: T.
    frame_size: S.
    patch: P.
    classes: C.
    policy_hidden: the policy's width.
    mlp_width: the classifier MLP's width.
    frame_order: the reading order of the chronological frames.
    lr: the base learning rate (``--lr``).
    ratios: lr_mult of ``policy``, ``glance`` and ``classifier``.
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``--epochs``.
    momentum: SGD momentum.
    weight_decay: weight decay.
    dtype: ``float32``, or ``float64`` (every parameter, buffer and input
      in double; the weights are float32 values all the same, so that a
      float32 checkpoint of them is exact).
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = ref_v2.AdaFocusV2(classes, frames, patch, frame_size,
                            policy_hidden, mlp_width)
  calib = ref_v2.random_frames(np.random.default_rng(seed + 10),
                               (4, frames, 3, frame_size, frame_size))
  ref_v2.calibrate_v2(model, calib, seed)
  for module in model.modules():
    if isinstance(module, nn.Dropout):
      module.p = 0.0
  if dtype == "float64":
    model.double()
  ref_v2.save_state_dict(model, os.path.join(out, f"{name}_before.pth.tar"))
  x = ref_v2.random_frames(rng, (batch, frames, 3, frame_size, frame_size))
  x = x.to(torch.float64 if dtype == "float64" else torch.float32)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  order = list(frame_order)
  actions_2 = torch.from_numpy(rng.uniform(size=(batch, frames, 2))).to(
      x.dtype)

  model.train()
  optimizer = optimizer_for(model, lr, ratios, epoch, epochs, momentum,
                            weight_decay)
  optimizer.zero_grad()
  (p1, p2), actions_1 = official_forward(model, x[:, order], actions_2)
  target_e = labels.view(batch, -1).expand(batch, frames).reshape(-1)
  criterion = nn.CrossEntropyLoss()
  terms = {}
  for branch, (logits, glance_logits, local_logits) in (("policy", p1),
                                                       ("random", p2)):
    terms["glance"] = criterion(glance_logits, target_e)
    terms[f"{branch}_steps"] = criterion(logits, target_e)
    terms[f"{branch}_focus"] = criterion(local_logits, target_e)
  loss_1 = (terms["policy_steps"] + terms["glance"]
            + terms["policy_focus"])
  loss_2 = (terms["random_steps"] + terms["glance"]
            + terms["random_focus"])
  loss = (loss_1 + loss_2) / 2
  loss.backward()
  norms = group_norms(model)
  optimizer.step()
  ref_v2.save_state_dict(model, os.path.join(out, f"{name}_after.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"),
           frames=ref._nchw_to_nhwc(x),  # pylint: disable=protected-access
           labels=labels.numpy(), order=np.asarray(order, np.int32),
           random_actions=actions_2.detach().numpy(),
           policy_actions=actions_1.detach().numpy(),
           loss=float(loss.detach()),
           norms=np.array([norms[k] for k in GROUPS]),
           norm_names=np.array(list(GROUPS)),
           **{f"term_{k}": float(v.detach()) for k, v in terms.items()})


# V2-TSM's groups (``main.py`` ``AdaFocus.get_optim_policies``: the policy,
# the glance TSN with both heads, the focus TSN with both heads).
TSM_GROUPS = {"policy": ("policy_stn",), "glance": ("global_CNN",),
              "focus": ("local_CNN",)}


def official_tsm_forward(model: ref_v2.TwoStreamV2, glance, focus,
                         random_action):
  """``AdaFocus.forward`` of V2-TSM in training mode ([V2S] ``main.py``,
  ``ops/models.py`` ``TSN.forward``).

  The glance TSN once: ``new_fc`` on the detached pooled features and
  ``new_new_fc`` on the features, each averaged over the glance frames
  (the "avg" consensus); then the random location (``action_1``) and the
  policy's on the detached, frame-stacked glance maps (``action_2``), in
  that order, each cut from every focus frame and through the focus TSN.

  Args:
    model: the model, in training mode.
    glance: [B, Tg, 3, S, S].
    focus: [B, Tf, 3, S, S].
    random_action: [B, 2] in [0, 1].

  Returns:
    ([(prediction [B, C], glance new_new_fc mean [B, C], focus new_new_fc
    mean [B, C]) for the random location, then the policy's], the
    policy's action [B, 2]).
  """
  b, tg, _, s, _ = glance.shape
  tf_ = focus.shape[1]
  fmap, pooled = model.global_CNN.base_model.get_featmap(glance.flatten(0, 1))
  global_logit = model.global_CNN.new_fc(pooled.detach()).view(
      b, tg, -1).mean(1)
  global_reg = model.global_CNN.new_new_fc(pooled).view(b, tg, -1).mean(1)
  maps = fmap.reshape(b, tg * fmap.shape[1], *fmap.shape[2:])
  frames = focus.reshape(b * tf_, 3, s, s)
  res, policy_action = [], None
  for i in range(2):
    action = random_action if i == 0 else model.policy_stn(maps.detach())
    if i == 1:
      policy_action = action
    patches = ref_v2.sample_patches(frames, action.repeat_interleave(tf_, 0),
                                    model.patch)
    feats = model.local_CNN.base_model.get_featmap(patches).flatten(1)
    local_logit = model.local_CNN.new_fc(feats.detach()).view(
        b, tf_, -1).mean(1)
    local_reg = model.local_CNN.new_new_fc(feats).view(b, tf_, -1).mean(1)
    res.append((global_logit + local_logit, global_reg, local_reg))
  return res, policy_action


def case_v2_tsm_train_step(out: str, name: str, seed: int = 0,
                           batch: int = 2, glance_frames: int = 2,
                           focus_frames: int = 3, frame_size: int = 224,
                           patch: int = 128, classes: int = 5,
                           policy_hidden: Sequence[int] = (40, 24),
                           lr: float = 0.01, ratios: Dict[str, float] = None,
                           epoch: int = 0, epochs: int = 50,
                           momentum: float = 0.9, weight_decay: float = 5e-4,
                           clip: float = 20.0, dtype: str = "float32"
                           ) -> None:
  """One official V2-TSM training step ([V2S] ``main.py`` ``train``).

  ``loss_1`` (the random location) and ``loss_2`` (the policy's), each
  CE(prediction) + CE(glance ``new_new_fc``) + CE(focus ``new_new_fc``),
  ``loss = (loss_1 + loss_2) / 2``; ``clip_grad_norm_`` of every parameter
  at ``clip``; SGD with the groups of ``get_optim_policies`` at the cosine
  rate of ``epoch``. Args as ``case_v2_train_step``, and ``clip``.
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = ref_v2.TwoStreamV2(classes, glance_frames, focus_frames, patch,
                             frame_size, tuple(policy_hidden))
  ref_v2.calibrate_v2_tsm(model, seed)
  if dtype == "float64":
    model.double()
  ref_v2.save_state_dict(model, os.path.join(out, f"{name}_before.pth.tar"))
  glance = ref_v2.random_frames(rng, (batch, glance_frames, 3, frame_size,
                                      frame_size))
  focus = ref_v2.random_frames(rng, (batch, focus_frames, 3, frame_size,
                                     frame_size))
  cast = torch.float64 if dtype == "float64" else torch.float32
  glance, focus = glance.to(cast), focus.to(cast)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  action_1 = torch.from_numpy(rng.uniform(size=(batch, 2))).to(cast)

  model.train()
  rate = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
  mults = {"policy_stn": ratios["policy"], "global_CNN": ratios["glance"],
           "local_CNN": 1.0}
  optimizer = torch.optim.SGD(
      [{"params": getattr(model, k).parameters(), "lr": rate * m,
        "weight_decay": weight_decay} for k, m in mults.items()],
      lr, momentum=momentum, weight_decay=weight_decay)
  optimizer.zero_grad()
  (p1, p2), action_2 = official_tsm_forward(model, glance, focus, action_1)
  criterion = nn.CrossEntropyLoss()
  terms = {}
  for branch, (output, glance_reg, focus_reg) in (("random", p1),
                                                  ("policy", p2)):
    terms["glance_aux"] = criterion(glance_reg, labels)
    terms[f"{branch}_prediction"] = criterion(output, labels)
    terms[f"{branch}_focus_aux"] = criterion(focus_reg, labels)
  loss_1 = (terms["random_prediction"] + terms["glance_aux"]
            + terms["random_focus_aux"])
  loss_2 = (terms["policy_prediction"] + terms["glance_aux"]
            + terms["policy_focus_aux"])
  loss = (loss_1 + loss_2) / 2
  loss.backward()
  norms = group_norms(model, TSM_GROUPS)
  nn.utils.clip_grad_norm_(model.parameters(), clip)
  optimizer.step()
  ref_v2.save_state_dict(model, os.path.join(out, f"{name}_after.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"),
           glance_frames=ref._nchw_to_nhwc(glance),  # pylint: disable=protected-access
           focus_frames=ref._nchw_to_nhwc(focus),  # pylint: disable=protected-access
           labels=labels.numpy(),
           random_actions=action_1.detach().numpy(),
           policy_actions=action_2.detach().numpy(),
           loss=float(loss.detach()),
           norms=np.array([norms[k] for k in TSM_GROUPS]),
           norm_names=np.array(list(TSM_GROUPS)),
           **{f"term_{k}": float(v.detach()) for k, v in terms.items()})


CASES = {"v2_train_step": case_v2_train_step,
         "v2_tsm_train_step": case_v2_tsm_train_step}


if __name__ == "__main__":
  ref.main(cases=CASES)

"""PyTorch re-creations of the reference's modules, for the parity tests.

Needs PyTorch, which cannot live beside this project's TensorFlow stack
(docs/CONVERT.md), so the tests run this module in a separate interpreter:

  python tests/convert/torch_reference.py --spec=SPEC.json --out=DIR

For each case of the spec it builds the reference's modules with the
reference's module names (so ``state_dict()`` keys are the published
checkpoints'), gives them random weights and calibrated batch-norm
statistics, saves a checkpoint with the reference's key structure
(``DIR/<name>.pth.tar``, plus TSM-format backbone files for the
Something-Something case) and writes random inputs and the reference's
outputs to ``DIR/<name>.npz``. The modules follow the reference's code
(``models/gfv_net.py``, ``models/ppo.py``, ``models/resnet.py``,
``models/mobilenet.py`` of AdaFocus V1; ``mobilenet_v2_tsm.py``,
``ops/temporal_shift.py``, ``models/tsn.py`` of its Something-Something
code; torchvision's ResNet-50); they are written here, not imported.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

# -- backbones ----------------------------------------------------------------


class TemporalShift(nn.Module):
  """TSM's shift wrapper: the wrapped module is ``.net`` (a key level)."""

  def __init__(self, net, n_segment, n_div=8):
    super().__init__()
    self.net, self.n_segment, self.fold_div = net, n_segment, n_div

  def forward(self, x):
    nt, c, h, w = x.size()
    x = x.view(nt // self.n_segment, self.n_segment, c, h, w)
    fold = c // self.fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return self.net(out.view(nt, c, h, w))


class Bottleneck(nn.Module):
  """torchvision's ResNet-50 block (stride on the 3x3 convolution)."""

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class ResNet50(nn.Module):
  """torchvision's ResNet-50 (module names as in its state dict)."""

  def __init__(self, num_classes):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, (planes, blocks, stride) in enumerate(
        ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
      down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride,
                                     bias=False), nn.BatchNorm2d(planes * 4))
      layers = [Bottleneck(inplanes, planes, stride, down)]
      inplanes = planes * 4
      layers += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
      setattr(self, f"layer{i}", nn.Sequential(*layers))
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(2048, num_classes)

  def get_featmap(self, x):
    """The pooled feature [N, 2048, 1, 1] (the V1 reference's focus output)."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.avgpool(x)


def shift_resnet(net: ResNet50, frames: int, n_div: int = 8) -> None:
  """TSM "blockres": wraps every block's conv1 (``conv1.net``)."""
  for i in range(1, 5):
    for block in getattr(net, f"layer{i}"):
      block.conv1 = TemporalShift(block.conv1, frames, n_div)


def _conv_bn_relu6(inp, oup, k, s, groups=1):
  """torchvision 0.8's ConvBNReLU: a Sequential (conv, bn, relu6)."""
  return nn.Sequential(nn.Conv2d(inp, oup, k, s, (k - 1) // 2, groups=groups,
                                 bias=False),
                       nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
  """A MobileNetV2 block; ``flat`` picks tonylins' (TSM's) layout.

  torchvision nests ``conv`` as (ConvBNReLU, [ConvBNReLU,] conv, bn);
  tonylins' is flat (conv, bn, relu6, [conv, bn, relu6,] conv, bn).
  """

  def __init__(self, inp, oup, stride, expand, flat):
    super().__init__()
    hidden = int(round(inp * expand))
    self.use_res_connect = stride == 1 and inp == oup
    if flat:
      layers = []
      if expand != 1:
        layers += [nn.Conv2d(inp, hidden, 1, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
      layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden,
                           bias=False),
                 nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                 nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    else:
      layers = [_conv_bn_relu6(inp, hidden, 1, 1)] if expand != 1 else []
      layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                 nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    self.conv = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
  """MobileNetV2, width 1: torchvision 0.8's (V1) or tonylins' (TSM)."""

  def __init__(self, num_classes, flat=False):
    super().__init__()
    stem = (_conv_bn_relu6(3, 32, 3, 2) if not flat else nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
        nn.ReLU6(inplace=True)))
    features, inp = [stem], 32
    for t, c, n, s in _MBV2:
      for i in range(n):
        features.append(InvertedResidual(inp, c, s if i == 0 else 1, t, flat))
        inp = c
    features.append(_conv_bn_relu6(inp, 1280, 1, 1))
    self.features = nn.Sequential(*features)
    # V1: Sequential(Dropout, Linear) -> classifier.1; tonylins: a Linear.
    self.classifier = (nn.Linear(1280, num_classes) if flat else
                       nn.Sequential(nn.Dropout(0.2),
                                     nn.Linear(1280, num_classes)))

  def get_featmap(self, x):
    x = self.features(x)
    return x, x.mean([2, 3])


def shift_mobilenet(net: MobileNetV2, frames: int, n_div: int = 8) -> None:
  """TSM: shift before the first conv of expanded residual blocks."""
  for m in net.modules():
    if (isinstance(m, InvertedResidual) and len(m.conv) == 8
        and m.use_res_connect):
      m.conv[0] = TemporalShift(m.conv[0], frames, n_div)


# -- classifiers and policy -----------------------------------------------------


class RecurrentClassifier(nn.Module):
  """The V1 "gru" classifier: ``gru`` (batch first) and ``fc``."""

  def __init__(self, input_dim, hidden, num_classes):
    super().__init__()
    self.gru = nn.GRU(input_dim, hidden, batch_first=True)
    self.fc = nn.Linear(hidden, num_classes)
    self.hidden = hidden

  def forward(self, feature):
    b = feature.shape[0]
    out, _ = self.gru(feature, torch.zeros(1, b, self.hidden,
                                           dtype=feature.dtype))
    return self.fc(out)


class LinearClassifier(nn.Module):
  """The V1 "fc" classifier: a per-frame ``fc``."""

  def __init__(self, input_dim, num_classes):
    super().__init__()
    self.fc = nn.Linear(input_dim, num_classes)

  def forward(self, feature):
    return self.fc(feature)


class ActorCritic(nn.Module):
  """The PPO policy: ``state_encoder``, ``gru``, ``actor``, ``critic``."""

  def __init__(self, feature_dim, state_dim, action_dim, hidden, conv,
               with_bn=False):
    super().__init__()
    flat = int(state_dim * conv / feature_dim)
    if with_bn:
      self.state_encoder = nn.Sequential(
          nn.Conv2d(feature_dim, conv, 1, bias=False), nn.BatchNorm2d(conv),
          nn.ReLU(), nn.Flatten(), nn.Linear(flat, hidden),
          nn.BatchNorm1d(hidden), nn.ReLU())
    else:
      self.state_encoder = nn.Sequential(
          nn.Conv2d(feature_dim, conv, 1, bias=False), nn.ReLU(),
          nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
    self.gru = nn.GRU(hidden, hidden, batch_first=False)
    self.continuous = action_dim == 2
    self.actor = nn.Sequential(
        nn.Linear(hidden, action_dim),
        nn.Sigmoid() if self.continuous else nn.Softmax(dim=-1))
    self.critic = nn.Sequential(nn.Linear(hidden, 1))
    self.hidden = hidden

  def rollout(self, maps):
    """Actor outputs and values over T steps of maps [B, T, C, H, W]."""
    b, t = maps.shape[:2]
    h = torch.zeros(1, b, self.hidden, dtype=maps.dtype)
    outs, values = [], []
    for i in range(t):
      s = self.state_encoder(maps[:, i])
      out, h = self.gru(s.view(1, b, -1), h)
      outs.append(self.actor(out[0]))
      values.append(self.critic(out[0])[:, 0])
    return torch.stack(outs, 1), torch.stack(values, 1)


class PPOHolder(nn.Module):
  """The ``policy`` attribute of the focuser: ``policy`` and ``policy_old``."""

  def __init__(self, make):
    super().__init__()
    self.policy = make()
    self.policy_old = make()
    self.policy_old.load_state_dict(self.policy.state_dict())

  def sync(self):
    """policy_old = policy, in evaluation mode (as after a PPO update)."""
    self.policy_old.load_state_dict(self.policy.state_dict())
    self.policy_old.eval()


class Wrapper(nn.Module):
  """Glancer / Focuser: ``net`` and, for a focuser, maybe ``policy``."""

  def __init__(self, net, policy=None):
    super().__init__()
    self.net = net
    if policy is not None:
      self.policy = policy


class TSN(nn.Module):
  """The Something-Something focuser's ``net``: ``base_model`` only."""

  def __init__(self, base_model):
    super().__init__()
    self.base_model = base_model


# -- random weights -------------------------------------------------------------


def randomise(model: nn.Module, calibrate_input, seed: int) -> None:
  """Random weights and batch-norm statistics that keep activations sane.

  Batch-norm running statistics are set to the statistics of a forward pass
  in training mode on ``calibrate_input`` (momentum None: a plain average),
  then the affine parameters are perturbed, so every part of the layout is
  exercised without activations exploding through 50 layers. The scales
  (gamma) are drawn below 1 so that each block contracts a little: with
  larger ones the random network is chaotic and amplifies float32 rounding
  differences (summation order) by orders of magnitude, which would test
  the random weights rather than the conversion.
  """
  g = torch.Generator().manual_seed(seed)
  for m in model.modules():
    if isinstance(m, (nn.Conv2d, nn.Linear)):
      fan_in = m.weight[0].numel()
      m.weight.data = torch.randn(m.weight.shape, generator=g) * (
          1.5 / fan_in) ** 0.5
      if m.bias is not None:
        m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
      m.momentum = None
      m.reset_running_stats()
  if calibrate_input is not None:
    model.train()
    with torch.no_grad():
      calibrate_input(model)
  for m in model.modules():
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
      m.weight.data = 0.4 + 0.6 * torch.rand(m.weight.shape, generator=g)
      m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
      if calibrate_input is None:
        m.running_mean.data = torch.randn(m.running_mean.shape,
                                          generator=g) * 0.1
        m.running_var.data = 0.5 + torch.rand(m.running_var.shape,
                                              generator=g)
      m.num_batches_tracked.fill_(7)
      m.momentum = 0.1
  for m in model.modules():
    if isinstance(m, nn.GRU):
      for name, p in m.named_parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.2
  model.eval()


def _np(t) -> np.ndarray:
  return t.detach().cpu().numpy().astype(np.float32)


def _nchw_to_nhwc(x) -> np.ndarray:
  return np.moveaxis(_np(x), -3, -1)


def crop(frames, offsets, p):
  """frames [N, 3, S, S], offsets [N, 2] (y, x) -> patches [N, 3, P, P]."""
  return torch.stack([f[:, y:y + p, x:x + p]
                      for f, (y, x) in zip(frames, offsets.tolist())])


def _fake_optimizer_state(params) -> dict:
  """An SGD state dict with momentum buffers (training state to skip)."""
  return {"state": {i: {"momentum_buffer": torch.ones_like(p)}
                    for i, p in enumerate(params[:3])},
          "param_groups": [{"lr": 0.01, "momentum": 0.9,
                            "params": list(range(3))}]}


def v1_checkpoint(glancer: nn.Module, focuser: nn.Module, clf: nn.Module,
                  holder: Optional[PPOHolder] = None,
                  optimizer: Optional[dict] = None) -> dict:
  """The reference's V1 checkpoint: the dict ``main_dist.py`` saves.

  Args:
    glancer: the glancer (``Wrapper``).
    focuser: the focuser (``Wrapper``; its ``policy`` is ``holder``).
    clf: the classifier (the entry ``fc``).
    holder: the focuser's ``PPOHolder``, or None (random patches: the
      entry ``policy`` is None).
    optimizer: the optimizer's state dict; default a made-up SGD state
      (training state the converter skips).
  """
  fc_sd = clf.state_dict()
  return {
      "epoch": 3,
      "model_state_dict": {**{f"glancer.{k}": v for k, v in
                              glancer.state_dict().items()},
                           **{f"focuser.{k}": v for k, v in
                              focuser.state_dict().items()},
                           **{f"classifier.{k}": v for k, v in
                              fc_sd.items()}},
      "glancer": glancer.state_dict(),
      "focuser": focuser.state_dict(),
      "fc": fc_sd,
      "scaler": None,
      "policy": holder.policy.state_dict() if holder is not None else None,
      "acc": torch.tensor(71.5),
      "best_acc": np.float64(75.0),
      "optimizer": (optimizer if optimizer is not None else
                    _fake_optimizer_state(list(clf.parameters()))),
  }


def something_checkpoint(glancer: nn.Module, focuser: nn.Module,
                         head: nn.Module,
                         holder: Optional[PPOHolder] = None) -> dict:
  """The reference's Something-Something checkpoint: the dict its
  ``stage1.py`` saves, with the policy's ``policy`` entry (``stage2.py``,
  ``stage3.py``) when there is one.

  Args:
    glancer: the glancer (``Wrapper`` of the TSM MobileNetV2).
    focuser: the focuser (``Wrapper`` of a ``TSN``; its ``policy`` is
      ``holder``).
    head: the focus head, ``GFV.classifier`` (the entry ``fc``).
    holder: the focuser's ``PPOHolder``, or None (stage 1).
  """
  ckpt = {"epoch": 1, "glancer": glancer.state_dict(),
          "focuser": focuser.state_dict(), "fc": head.state_dict(),
          "acc": torch.tensor(47.0), "best_acc": torch.tensor(47.5),
          "optimizer": _fake_optimizer_state(list(head.parameters()))}
  if holder is not None:
    ckpt["policy"] = holder.policy.state_dict()
  ckpt["model_state_dict"] = {
      **{f"glancer.{k}": v for k, v in ckpt["glancer"].items()},
      **{f"focuser.{k}": v for k, v in ckpt["focuser"].items()},
      **{f"classifier.{k}": v for k, v in ckpt["fc"].items()}}
  return ckpt


# -- cases ----------------------------------------------------------------------


def case_v1(out: str, name: str, seed: int = 0, batch: int = 2,
            frames: int = 3, frame_size: int = 64, patch: int = 32,
            classes: int = 5, classifier: str = "gru", hidden: int = 24,
            policy: bool = True, num_actions: int = 49,
            policy_hidden: int = 20, policy_conv: int = 32) -> None:
  """The V1 model: MobileNetV2 glance, ResNet-50 focus, classifier, policy.

  Writes ``<name>.pth.tar`` (the reference's checkpoint dict) and
  ``<name>.npz`` (inputs and outputs, NHWC where spatial).
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  glancer = Wrapper(MobileNetV2(classes))
  randomise(glancer, lambda m: m.net.get_featmap(
      torch.randn(8, 3, frame_size, frame_size)), seed)
  map_side = -(-frame_size // 32)
  make_policy = lambda: ActorCritic(1280, 1280 * map_side ** 2, num_actions,  # pylint: disable=g-long-lambda
                                    policy_hidden, policy_conv)
  holder = PPOHolder(make_policy) if policy else None
  focuser = Wrapper(ResNet50(classes), holder)
  randomise(focuser.net, lambda m: m.get_featmap(
      torch.randn(8, 3, patch, patch)), seed + 1)
  if holder is not None:
    randomise(holder.policy, None, seed + 2)
    holder.sync()
  feat = 1280 + 2048
  clf = (RecurrentClassifier(feat, hidden, classes) if classifier == "gru"
         else LinearClassifier(feat, classes))
  randomise(clf, None, seed + 3)

  x = torch.from_numpy(rng.standard_normal(
      (batch, frames, 3, frame_size, frame_size)).astype(np.float32))
  offsets = rng.integers(0, frame_size - patch + 1, (batch, frames, 2))
  res: Dict[str, np.ndarray] = {"frames": _nchw_to_nhwc(x),
                                "offsets": offsets.astype(np.int32)}
  with torch.no_grad():
    flat = x.view(batch * frames, 3, frame_size, frame_size)
    fmap, pooled = glancer.net.get_featmap(flat)
    glance_logits = glancer.net.classifier(pooled)
    fmap = fmap.view(batch, frames, *fmap.shape[1:])
    pooled = pooled.view(batch, frames, -1)
    res.update(glance_map=_nchw_to_nhwc(fmap), glance_pooled=_np(pooled),
               glance_logits=_np(glance_logits.view(batch, frames, -1)))

    def focus_feats(offs):
      patches = crop(flat, torch.from_numpy(offs.reshape(-1, 2)), patch)
      return focuser.net.get_featmap(patches).view(batch, frames, -1)

    f = focus_feats(offsets)
    res["focus_features"] = _np(f)
    res["focus_logits"] = _np(focuser.net.fc(f))
    # The reference fuses glance first: torch.cat([global, local]).
    res["logits"] = _np(clf(torch.cat([pooled, f], -1)))
    if holder is not None:
      probs, values = holder.policy_old.rollout(fmap)
      res["policy_probs"], res["policy_values"] = _np(probs), _np(values)
      actions = probs.argmax(-1)
      g = int(round(num_actions ** 0.5))
      pos = torch.stack([actions // g, actions % g], -1).float() / (g - 1)
      greedy = torch.floor(pos * (frame_size - patch)).int().numpy()
      res["greedy_actions"] = actions.numpy().astype(np.int32)
      res["greedy_offsets"] = greedy.astype(np.int32)
      res["greedy_logits"] = _np(clf(torch.cat(
          [pooled, focus_feats(greedy)], -1)))
  torch.save(v1_checkpoint(glancer, focuser, clf, holder),
             os.path.join(out, f"{name}.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"), **res)


def case_something(out: str, name: str, seed: int = 0, batch: int = 2,
                   glance_frames: int = 4, focus_frames: int = 4,
                   frame_size: int = 64, patch: int = 32,
                   classes: int = 6, policy_hidden: int = 16) -> None:
  """The Something-Something model (TSM backbones, logit-mean prediction).

  With its continuous policy (batch norms in the encoder, 64 channels as
  the reference hard-codes), one step per video whose observation is the
  glance maps of all glance frames stacked on channels, frame-major
  (``view(b, t * c, h, w)``). Writes ``<name>.pth.tar`` (AdaFocus keys:
  Sequential focus net), the TSM backbone files
  ``<name>_tsm_mobilenet_v2.pth.tar`` and ``<name>_tsm_resnet50.pth.tar``
  (``module.base_model.*``, ``module.new_fc.*``) of the same weights, and
  ``<name>.npz``.
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  mbv2 = MobileNetV2(classes, flat=True)
  shift_mobilenet(mbv2, glance_frames)
  glancer = Wrapper(mbv2)
  randomise(glancer, lambda m: m.net.get_featmap(
      torch.randn(2 * glance_frames, 3, frame_size, frame_size)), seed)
  resnet = ResNet50(classes)
  shift_resnet(resnet, focus_frames)
  randomise(resnet, lambda m: m.get_featmap(
      torch.randn(2 * focus_frames, 3, patch, patch)), seed + 1)
  head = nn.Linear(2048, classes)   # GFV.classifier: the 'fc' entry
  randomise(head, None, seed + 2)
  tsm_resnet_sd = {f"module.base_model.{k}": v
                   for k, v in resnet.state_dict().items()
                   if not k.startswith("fc.")}
  tsm_resnet_sd.update({f"module.new_fc.{k}": v
                        for k, v in head.state_dict().items()})
  map_side = -(-frame_size // 32)
  feature_dim = 1280 * glance_frames
  holder = PPOHolder(lambda: ActorCritic(
      feature_dim, feature_dim * map_side ** 2, 2, policy_hidden, 64,
      with_bn=True))
  randomise(holder.policy, None, seed + 3)
  holder.sync()
  # What the reference does before saving: drop fc (children[:-1]).
  focuser = Wrapper(TSN(nn.Sequential(*list(resnet.children())[:-1])),
                    holder)

  gx = torch.from_numpy(rng.standard_normal(
      (batch, glance_frames, 3, frame_size, frame_size)).astype(np.float32))
  fx = torch.from_numpy(rng.standard_normal(
      (batch, focus_frames, 3, frame_size, frame_size)).astype(np.float32))
  offsets = rng.integers(0, frame_size - patch + 1, (batch, 1, 2))
  res = {"glance_frames": _nchw_to_nhwc(gx), "focus_frames": _nchw_to_nhwc(fx),
         "offsets": offsets.astype(np.int32)}
  with torch.no_grad():
    fmap, pooled = glancer.net.get_featmap(
        gx.view(-1, 3, frame_size, frame_size))
    glance_logits = glancer.net.classifier(pooled).view(batch,
                                                       glance_frames, -1)
    res.update(glance_map=_nchw_to_nhwc(fmap.view(batch, glance_frames,
                                                  *fmap.shape[1:])),
               glance_pooled=_np(pooled.view(batch, glance_frames, -1)),
               glance_logits=_np(glance_logits))

    def predict(offsets):
      offs = np.repeat(offsets, focus_frames, axis=1).reshape(-1, 2)
      patches = crop(fx.view(-1, 3, frame_size, frame_size),
                      torch.from_numpy(offs), patch)
      feats = focuser.net.base_model(patches).squeeze(-1).squeeze(-1)
      focus_logits = head(feats).view(batch, focus_frames, -1)
      return feats, focus_logits, focus_logits.mean(1) + glance_logits.mean(1)

    feats, focus_logits, logits = predict(offsets)
    res["focus_features"] = _np(feats.view(batch, focus_frames, -1))
    res["focus_logits"] = _np(focus_logits)
    res["logits"] = _np(logits)
    # The policy's one step: the glance frames' maps stacked on channels.
    stacked = fmap.view(batch, 1, -1, *fmap.shape[2:])
    mean, values = holder.policy_old.rollout(stacked)
    greedy = torch.floor(mean * (frame_size - patch)).int().numpy()
    res.update(policy_mean=_np(mean), policy_values=_np(values),
               greedy_offsets=greedy.astype(np.int32),
               greedy_logits=_np(predict(greedy)[2]))
  torch.save(something_checkpoint(glancer, focuser, head, holder),
             os.path.join(out, f"{name}.pth.tar"))
  tsm_mbv2 = {f"module.base_model.{k}": v for k, v in mbv2.state_dict().items()
              if not k.startswith("classifier.")}
  tsm_mbv2.update({f"module.new_fc.{k[len('classifier.'):]}": v
                   for k, v in mbv2.state_dict().items()
                   if k.startswith("classifier.")})
  for arch, sd in (("mobilenet_v2", tsm_mbv2), ("resnet50", tsm_resnet_sd)):
    torch.save({"epoch": 45, "arch": arch, "state_dict": sd,
                "best_prec1": 61.0},
               os.path.join(out, f"{name}_tsm_{arch}.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"), **res)


def case_parts(out: str, name: str, seed: int = 0, batch: int = 3,
               steps: int = 4, feat: int = 12, hidden: int = 8,
               classes: int = 5, map_chw=(16, 3, 3), conv: int = 4,
               policy_hidden: int = 8, num_actions: int = 9) -> None:
  """Tiny classifiers and policies (discrete; continuous with batch norm)."""
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  c, h, w = map_chw
  parts = {"gru": RecurrentClassifier(feat, hidden, classes),
           "linear": LinearClassifier(feat, classes),
           "policy_discrete": ActorCritic(c, c * h * w, num_actions,
                                          policy_hidden, conv),
           "policy_continuous": ActorCritic(c, c * h * w, 2, policy_hidden,
                                            conv, with_bn=True)}
  for i, m in enumerate(parts.values()):
    randomise(m, None, seed + i)
  x = torch.from_numpy(rng.standard_normal((batch, steps, feat)).astype(
      np.float32))
  maps = torch.from_numpy(rng.standard_normal((batch, steps, c, h, w)).astype(
      np.float32))
  res = {"features": _np(x), "maps": _nchw_to_nhwc(maps)}
  with torch.no_grad():
    res["gru_logits"] = _np(parts["gru"](x))
    res["linear_logits"] = _np(parts["linear"](x))
    for kind in ("discrete", "continuous"):
      a, v = parts[f"policy_{kind}"].rollout(maps)
      res[f"policy_{kind}_actor"], res[f"policy_{kind}_values"] = _np(a), _np(
          v)
  torch.save({k: m.state_dict() for k, m in parts.items()},
             os.path.join(out, f"{name}.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"), **res)


def case_reader(out: str, name: str, seed: int = 0) -> None:
  """Awkward tensors in both file formats, to test the numpy-only reader.

  Writes ``<name>_zip.pth.tar``, ``<name>_legacy.pth.tar`` and the
  expected arrays ``<name>.npz``, and checks here, with PyTorch, that
  ``checkpoint_file.read`` gives the same arrays with either reader.
  """
  g = torch.Generator().manual_seed(seed)
  base = torch.randn(6, 5, generator=g)
  tensors = {
      "float": torch.randn(3, 4, generator=g),
      "half": torch.randn(5, generator=g).half(),
      "bfloat16": torch.randn(4, generator=g).to(torch.bfloat16),
      "double": torch.randn(2, 2, generator=g).double(),
      "long": torch.arange(7),
      "bool": torch.tensor([True, False, True]),
      "uint8": torch.arange(5, dtype=torch.uint8),
      "transposed": base.t(),                 # non-contiguous view
      "slice": base[2:5, 1:4],                # offset into a shared storage
      "shared": base,
      "empty": torch.zeros(0, 3),
      "scalar": torch.tensor(3.5),
      "param": nn.Parameter(torch.randn(2, 3, generator=g)),
  }
  # No numpy scalar here: torch's weights-only load refuses them (the
  # V1 case's checkpoint has one, for the numpy reader).
  obj = {"state_dict": tensors, "epoch": 4, "name": "x",
         "nested": [tensors["float"], (1, 2.5)]}
  expected = {k: (v.detach().float() if v.dtype == torch.bfloat16 else
                  v.detach()).numpy() for k, v in tensors.items()}
  np.savez(os.path.join(out, f"{name}.npz"), **expected)
  paths = {"zip": os.path.join(out, f"{name}_zip.pth.tar"),
           "legacy": os.path.join(out, f"{name}_legacy.pth.tar")}
  torch.save(obj, paths["zip"])
  torch.save(obj, paths["legacy"], _use_new_zipfile_serialization=False)
  from adafocus_tf.convert import checkpoint_file  # pylint: disable=g-import-not-at-top
  report = {}
  for fmt, path in paths.items():
    for reader in ("torch", "numpy"):
      got = checkpoint_file.read(path, reader=reader)["state_dict"]
      same = all(np.array_equal(got[k], expected[k]) and
                 got[k].dtype == expected[k].dtype for k in expected)
      report[f"{fmt}/{reader}"] = bool(same)
  with open(os.path.join(out, f"{name}.json"), "w") as f:
    json.dump(report, f)


CASES = {"v1": case_v1, "something": case_something, "parts": case_parts,
         "reader": case_reader}


def run_spec(spec: List[dict], out: str, cases=None) -> None:
  """Runs every case of ``spec`` (dicts with ``case``, ``name``, params).

  Args:
    spec: the cases.
    out: output directory.
    cases: case name -> function (default ``CASES``).
  """
  os.makedirs(out, exist_ok=True)
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  for item in spec:
    item = dict(item)
    (cases or CASES)[item.pop("case")](out, **item)


def main(argv=None, cases=None) -> None:
  """The command line: ``--spec`` cases of ``cases`` (default ``CASES``)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--spec", required=True, help="JSON list of cases")
  parser.add_argument("--out", required=True, help="output directory")
  args = parser.parse_args(argv)
  with open(args.spec) as f:
    run_spec(json.load(f), args.out, cases)


if __name__ == "__main__":
  main()

"""PyTorch re-creations of the official AdaFocusV2 models, for parity tests.

Run in the torch interpreter, like ``torch_reference.py`` (whose backbones
and random initialisation it reuses):

  python tests/convert/torch_reference_v2.py --spec=SPEC.json --out=DIR

The modules carry the official module names (docs/METHOD.md section V2-8),
so ``state_dict()`` keys are the official checkpoints' once the
``DataParallel`` prefix ``module.`` is added; each case saves
``DIR/<name>.pth.tar`` in the official file layout and ``DIR/<name>.npz``
with the random inputs and the test-mode outputs (docs/METHOD.md sections
V2-2, V2-3, V2-6). Spatial arrays are NHWC. Batch norms get random running
statistics so that the policy's positions, and hence the patches, differ
from video to video and frame to frame. The modules are written from the
method's description, not copied.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import torch_reference as ref
from torch_reference import MobileNetV2, ResNet50

# Every official checkpoint is a DataParallel wrapper's state dict.
PREFIX = "module."
IMAGENET_CLASSES = 1000
# Standard deviations of the random frames' parts (``random_frames``).
NOISE = 0.1
STRUCTURE = 2.0
# Scales the policy's output layer: positions still spread over tens of
# pixels, and the float32 rounding of the glance maps, which the policy
# passes on to the positions in the same proportion, moves them less.
POLICY_GAIN = 0.5


def _head(inputs: int, classes: int) -> nn.Sequential:
  """Dropout then Linear: the Linear is index 1 (``<name>.1.weight``)."""
  return nn.Sequential(nn.Dropout(0.2), nn.Linear(inputs, classes))


def sample_patches(frames, positions, patch: int):
  """The official differentiable patch sampler (docs/METHOD.md V2-2).

  Args:
    frames: [N, 3, S, S] normalised frames.
    positions: [N, 2] actions (a_y, a_x) in [0, 1].
    patch: P.

  Returns:
    [N, 3, P, P] patches: affine_grid + grid_sample, align_corners=False,
    scale P/S, translation -1 + (2 x1 + P)/S with x1 = a (S - P).
  """
  n, _, s, _ = frames.shape
  corner = positions * (s - patch)                 # (y1, x1)
  theta = torch.zeros(n, 2, 3, dtype=frames.dtype)
  theta[:, 0, 0] = patch / s
  theta[:, 1, 1] = patch / s
  theta[:, 0, 2] = -1 + (2 * corner[:, 1] + patch) / s     # horizontal
  theta[:, 1, 2] = -1 + (2 * corner[:, 0] + patch) / s     # vertical
  grid = F.affine_grid(theta, [n, 3, patch, patch], align_corners=False)
  return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros",
                       align_corners=False)


class RecurrentPolicy(nn.Module):
  """``policy_stn``: encoder (conv, BN, tanh, flatten, linear, BN, tanh),
  ``gru``, ``fc`` (linear + sigmoid)."""

  def __init__(self, feature_dim: int, map_side: int, hidden: int,
               conv: int = 64):
    super().__init__()
    self.encoder = nn.Sequential(
        nn.Conv2d(feature_dim, conv, 1, bias=False), nn.BatchNorm2d(conv),
        nn.Tanh(), nn.Flatten(), nn.Linear(conv * map_side ** 2, hidden),
        nn.BatchNorm1d(hidden), nn.Tanh())
    self.gru = nn.GRU(hidden, hidden)
    self.fc = nn.Sequential(nn.Linear(hidden, 2), nn.Sigmoid())
    self.hidden = hidden

  def forward(self, maps):
    """Positions [B, T, 2] from glance maps [B, T, C, h, w], h0 = 0.

    The encoder runs on all B * T maps at once, as the official policy's
    does (its batch norms' training-mode statistics are over every frame
    of the batch), then the GRU over the T steps.
    """
    b, t = maps.shape[:2]
    features = self.encoder(maps.flatten(0, 1)).view(b, t, -1)
    state = torch.zeros(1, b, self.hidden, dtype=features.dtype)
    steps, _ = self.gru(features.transpose(0, 1), state)
    return self.fc(steps.transpose(0, 1).reshape(b * t, -1)).view(b, t, 2)


class MLP(nn.Module):
  """``classifier.mlp``: ``layers`` = Linear, BatchNorm1d, ReLU."""

  def __init__(self, inputs: int, width: int):
    super().__init__()
    self.layers = nn.Sequential(nn.Linear(inputs, width),
                                nn.BatchNorm1d(width), nn.ReLU())

  def forward(self, x):
    return self.layers(x)


class FrameExitClassifier(nn.Module):
  """``classifier``: per-frame ``mlp``, running max, ``classifiers.{t}.1``."""

  def __init__(self, inputs: int, width: int, classes: int, steps: int):
    super().__init__()
    self.mlp = MLP(inputs, width)
    self.classifiers = nn.ModuleList([_head(width, classes)
                                      for _ in range(steps)])

  def forward(self, features):
    """Step logits [B, T, C] from per-frame features [B, T, D]."""
    b, t = features.shape[:2]
    z = self.mlp(features.reshape(b * t, -1)).view(b, t, -1)
    running = z[:, 0]
    out = []
    for i in range(t):
      running = torch.maximum(running, z[:, i])
      out.append(self.classifiers[i](running))
    return torch.stack(out, 1)


class AdaFocusV2(nn.Module):
  """The V2 model of the ActivityNet family, official module names."""

  def __init__(self, classes: int, steps: int, patch: int, frame_size: int,
               policy_hidden: int, mlp_width: int, policy_conv: int = 64):
    super().__init__()
    self.global_CNN = MobileNetV2(IMAGENET_CLASSES, flat=True)  # pylint: disable=invalid-name
    self.global_CNN_fc = _head(1280, classes)  # pylint: disable=invalid-name
    self.local_CNN = ResNet50(IMAGENET_CLASSES)  # pylint: disable=invalid-name
    self.local_CNN_fc = _head(2048, classes)  # pylint: disable=invalid-name
    self.policy_stn = RecurrentPolicy(1280, -(-frame_size // 32),
                                      policy_hidden, policy_conv)
    self.classifier = FrameExitClassifier(1280 + 2048, mlp_width, classes,
                                          steps)
    self.patch = patch

  def forward(self, frames) -> Dict[str, torch.Tensor]:
    """Test mode on frames [B, T, 3, S, S] already in the model's order."""
    b, t, _, s, _ = frames.shape
    flat = frames.reshape(b * t, 3, s, s)
    fmap, pooled = self.global_CNN.get_featmap(flat)
    positions = self.policy_stn(fmap.view(b, t, *fmap.shape[1:]))
    patches = sample_patches(flat, positions.reshape(b * t, 2), self.patch)
    focus = self.local_CNN.get_featmap(patches).flatten(1)
    logits = self.classifier(torch.cat([pooled, focus], -1).view(b, t, -1))
    return {"glance_map": fmap.view(b, t, *fmap.shape[1:]),
            "glance_pooled": pooled.view(b, t, -1),
            "glance_logits": self.global_CNN_fc(pooled).view(b, t, -1),
            "positions": positions, "patches": patches.view(
                b, t, 3, self.patch, self.patch),
            "focus_features": focus.view(b, t, -1),
            "focus_logits": self.local_CNN_fc(focus).view(b, t, -1),
            "logits": logits}


def random_frames(rng, shape, noise: float = NOISE,
                  structure: float = STRUCTURE):
  """Random frames: smooth random patterns plus a little white noise.

  Each frame is a bilinearly upsampled random 4x4 grid (so that the
  policy sees different videos and frames and puts their patches in
  different places) plus white noise (so that bilinear sampling at
  fractional positions is exercised). The noise is kept small: on white
  noise a patch moved by a thousandth of a pixel changes by several
  thousandths, and the float32 rounding of the positions alone would then
  dominate the comparison of logits.

  Args:
    rng: numpy generator.
    shape: (B, T, 3, S, S).
    noise: the white noise's standard deviation.
    structure: the pattern's standard deviation.
  """
  white = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
  coarse = torch.from_numpy(rng.standard_normal(
      (shape[0] * shape[1], 3, 4, 4)).astype(np.float32))
  pattern = F.interpolate(coarse, size=shape[-2:], mode="bilinear",
                          align_corners=False)
  return noise * white + structure * pattern.view(shape)


def randomise_normalised(model: nn.Module, calibrate, seed: int) -> None:
  """Random weights, then batch-norm statistics of the random network.

  ``torch_reference.randomise`` draws the batch norms' scales after their
  statistics, which makes a deep network contract: a random MobileNetV2's
  maps are then nearly the same for every input, and a policy that tells
  them apart amplifies float32 rounding into its positions. Here every
  batch norm normalises what it actually sees (its running statistics are
  those of a training-mode pass on ``calibrate``'s input, after the
  scales are drawn), so the maps differ from input to input by about their
  own size.

  Args:
    model: the module.
    calibrate: runs ``model`` on typical inputs (in training mode).
    seed: random seed.
  """
  ref.randomise(model, None, seed)
  norms = [m for m in model.modules()
           if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
  for m in norms:
    m.momentum = None        # a plain average over the calibration pass
    m.reset_running_stats()
  model.train()
  with torch.no_grad():
    calibrate(model)
  for m in norms:
    m.momentum = 0.1
    m.num_batches_tracked.fill_(7)
  model.eval()


def _save_outputs(out: str, name: str, frames, res, extra=None) -> None:
  arrays = {"frames": ref._nchw_to_nhwc(frames)}  # pylint: disable=protected-access
  for key, value in res.items():
    spatial = value.dim() >= 4 and value.shape[-3] in (3, 1280, 2048)
    arrays[key] = (ref._nchw_to_nhwc(value) if spatial  # pylint: disable=protected-access
                   else ref._np(value))  # pylint: disable=protected-access
  arrays.update(extra or {})
  np.savez(os.path.join(out, f"{name}.npz"), **arrays)


def save_state_dict(model: nn.Module, path: str, **entries) -> None:
  """Saves ``model`` in the official checkpoint layout (``module.`` keys)."""
  torch.save(dict(entries, state_dict={PREFIX + k: v for k, v in
                                       model.state_dict().items()}), path)


def calibrate_v2(model: AdaFocusV2, calib, seed: int) -> None:
  """Random weights and calibrated batch-norm statistics for a V2 model.

  Args:
    model: the model.
    calib: [N, T, 3, S, S] calibration clips (``random_frames``).
    seed: random seed.
  """
  n, frames, _, frame_size, _ = calib.shape
  flat = calib.flatten(0, 1)
  centre = (frame_size - model.patch) // 2
  crops = flat[..., centre:centre + model.patch, centre:centre + model.patch]
  randomise_normalised(model.global_CNN, lambda m: m.get_featmap(flat), seed)
  randomise_normalised(model.local_CNN, lambda m: m.get_featmap(crops),
                       seed + 1)
  for i, part in enumerate((model.global_CNN_fc, model.local_CNN_fc)):
    ref.randomise(part, None, seed + 2 + i)
  # The policy and the classifier are calibrated on what they see.
  with torch.no_grad():
    fmap, pooled = model.global_CNN.get_featmap(flat)
    focus = model.local_CNN.get_featmap(crops).flatten(1)
  randomise_normalised(model.policy_stn, lambda m: m(
      fmap.view(n, frames, *fmap.shape[1:])), seed + 4)
  model.policy_stn.fc[0].weight.data *= POLICY_GAIN
  randomise_normalised(model.classifier, lambda m: m(
      torch.cat([pooled, focus], -1).view(n, frames, -1)), seed + 5)
  model.eval()


def case_v2(out: str, name: str, seed: int = 0, batch: int = 2,
            frames: int = 4, frame_size: int = 224, patch: int = 128,
            classes: int = 5, policy_hidden: int = 48, mlp_width: int = 96,
            frame_order: Optional[Sequence[int]] = None) -> None:
  """The V2 MobileNetV2/ResNet-50 model: ``<name>.pth.tar`` and ``.npz``.

  Args:
    out: output directory.
    name: file stem.
    seed: random seed.
    batch: videos.
    frames: T.
    frame_size: S.
    patch: P.
    classes: C.
    policy_hidden: H (``--stn_hidden_dim``; 2048 officially).
    mlp_width: the classifier MLP's width (4096 officially).
    frame_order: the order the model sees the chronological frames in
      (the official coarse-to-fine order for T = 16); None: chronological.
      The npz's ``frames`` are chronological; the outputs are in model
      order (step t is the t-th frame the model saw).
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = AdaFocusV2(classes, frames, patch, frame_size, policy_hidden,
                     mlp_width)
  calibrate_v2(model, random_frames(np.random.default_rng(seed + 10),
                                    (4, frames, 3, frame_size, frame_size)),
               seed)
  x = random_frames(rng, (batch, frames, 3, frame_size, frame_size))
  order = list(range(frames)) if frame_order is None else list(frame_order)
  with torch.no_grad():
    res = model(x[:, order])
  save_state_dict(model, os.path.join(out, f"{name}.pth.tar"))
  _save_outputs(out, name, x, res,
                {"order": np.asarray(order, np.int32),
                 "offsets": ref._np(res["positions"] * (frame_size - patch))})  # pylint: disable=protected-access


# -- V2-TSM (Something-Something, Jester) -----------------------------------


class TSN(nn.Module):
  """A V2-TSM net: ``base_model`` (its ImageNet head gone), ``new_fc`` on
  the detached pooled feature, ``new_new_fc`` on the feature itself."""

  def __init__(self, base_model, feature_dim: int, classes: int):
    super().__init__()
    self.base_model = base_model
    self.new_fc = nn.Linear(feature_dim, classes)
    self.new_new_fc = nn.Linear(feature_dim, classes)


class VideoPolicy(nn.Sequential):
  """``policy_stn`` of V2-TSM: indices 0, 1, 4, 5, 7, 8, 10 hold weights."""

  def __init__(self, channels: int, map_side: int, conv: int = 64,
               hidden: Sequence[int] = (1024, 512)):
    super().__init__(
        nn.Conv2d(channels, conv, 1, bias=False), nn.BatchNorm2d(conv),
        nn.Tanh(), nn.Flatten(),
        nn.Linear(conv * map_side ** 2, hidden[0]), nn.BatchNorm1d(hidden[0]),
        nn.Tanh(), nn.Linear(hidden[0], hidden[1]),
        nn.BatchNorm1d(hidden[1]), nn.Tanh(), nn.Linear(hidden[1], 2),
        nn.Sigmoid())


class TwoStreamV2(nn.Module):
  """V2-TSM: ``global_CNN``, ``local_CNN`` (TSNs), ``policy_stn``."""

  def __init__(self, classes, glance_frames, focus_frames, patch,
               frame_size, policy_hidden):
    super().__init__()
    mbv2 = MobileNetV2(IMAGENET_CLASSES, flat=True)
    ref.shift_mobilenet(mbv2, glance_frames)
    del mbv2.classifier      # TSM replaces it by a dropout: no weights
    resnet = ResNet50(IMAGENET_CLASSES)
    ref.shift_resnet(resnet, focus_frames)
    del resnet.fc
    self.global_CNN = TSN(mbv2, 1280, classes)  # pylint: disable=invalid-name
    self.local_CNN = TSN(resnet, 2048, classes)  # pylint: disable=invalid-name
    self.policy_stn = VideoPolicy(1280 * glance_frames,
                                  -(-frame_size // 32), hidden=policy_hidden)
    self.patch = patch
    self.glance_frames, self.focus_frames = glance_frames, focus_frames
    self.frame_size = frame_size

  def forward(self, glance, focus) -> Dict[str, torch.Tensor]:
    """Test mode: glance [B, Tg, 3, S, S], focus [B, Tf, 3, S, S]."""
    b, tg, _, s, _ = glance.shape
    tf_ = focus.shape[1]
    fmap, pooled = self.global_CNN.base_model.get_featmap(
        glance.reshape(b * tg, 3, s, s))
    positions = self.policy_stn(fmap.reshape(b, tg * fmap.shape[1],
                                             *fmap.shape[2:]))
    # One box per video, cut from every focus frame.
    frames = focus.reshape(b * tf_, 3, s, s)
    patches = sample_patches(frames, positions.repeat_interleave(tf_, 0),
                             self.patch)
    feats = self.local_CNN.base_model.get_featmap(patches).flatten(1)
    glance_logits = self.global_CNN.new_fc(pooled).view(b, tg, -1)
    focus_logits = self.local_CNN.new_fc(feats).view(b, tf_, -1)
    return {"glance_map": fmap.view(b, tg, *fmap.shape[1:]),
            "glance_pooled": pooled.view(b, tg, -1),
            "glance_logits": glance_logits,
            "glance_aux_logits": self.global_CNN.new_new_fc(pooled).view(
                b, tg, -1),
            "positions": positions,
            "patches": patches.view(b, tf_, 3, self.patch, self.patch),
            "focus_features": feats.view(b, tf_, -1),
            "focus_logits": focus_logits,
            "focus_aux_logits": self.local_CNN.new_new_fc(feats).view(
                b, tf_, -1),
            "logits": glance_logits.mean(1) + focus_logits.mean(1)}


def calibrate_v2_tsm(model: TwoStreamV2, seed: int) -> None:
  """Random weights and calibrated batch-norm statistics for V2-TSM.

  Args:
    model: the model (its frame counts, patch and frame sizes are read).
    seed: random seed.
  """
  glance_frames, focus_frames = model.glance_frames, model.focus_frames
  frame_size, patch = model.frame_size, model.patch
  calib_g = random_frames(np.random.default_rng(seed + 10),
                          (2, glance_frames, 3, frame_size, frame_size))
  calib_f = random_frames(np.random.default_rng(seed + 11),
                          (2, focus_frames, 3, patch, patch))
  randomise_normalised(model.global_CNN.base_model, lambda m: m.get_featmap(
      calib_g.flatten(0, 1)), seed)
  randomise_normalised(model.local_CNN.base_model, lambda m: m.get_featmap(
      calib_f.flatten(0, 1)), seed + 1)
  for i, part in enumerate((model.global_CNN.new_fc, model.global_CNN.new_new_fc,
                            model.local_CNN.new_fc, model.local_CNN.new_new_fc)):
    ref.randomise(part, None, seed + 2 + i)
  with torch.no_grad():
    fmap, _ = model.global_CNN.base_model.get_featmap(calib_g.flatten(0, 1))
  # Two calibration videos: batch norm in training mode needs more than one.
  randomise_normalised(model.policy_stn, lambda m: m(
      fmap.reshape(2, glance_frames * fmap.shape[1], *fmap.shape[2:])),
                       seed + 6)
  model.policy_stn[-2].weight.data *= POLICY_GAIN
  model.eval()


def case_v2_tsm(out: str, name: str, seed: int = 0, batch: int = 2,
                glance_frames: int = 2, focus_frames: int = 3,
                frame_size: int = 224, patch: int = 128, classes: int = 5,
                policy_hidden: Sequence[int] = (40, 24)) -> None:
  """The V2-TSM model: ``<name>.pth.tar`` (the official training
  checkpoint dict) and ``<name>.npz`` (``glance_frames``,
  ``focus_frames`` and the outputs)."""
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = TwoStreamV2(classes, glance_frames, focus_frames, patch,
                      frame_size, tuple(policy_hidden))
  calibrate_v2_tsm(model, seed)
  model.eval()
  glance = random_frames(rng, (batch, glance_frames, 3, frame_size,
                               frame_size))
  focus = random_frames(rng, (batch, focus_frames, 3, frame_size,
                              frame_size))
  with torch.no_grad():
    res = model(glance, focus)
  save_state_dict(model, os.path.join(out, f"{name}.pth.tar"), epoch=49,
                   arch="resnet50", best_prec1=torch.tensor(47.0),
                   optimizer=ref._fake_optimizer_state(  # pylint: disable=protected-access
                       list(model.policy_stn.parameters())))
  _save_outputs(out, name, glance, res, {
      "glance_frames": ref._nchw_to_nhwc(glance),  # pylint: disable=protected-access
      "focus_frames": ref._nchw_to_nhwc(focus),  # pylint: disable=protected-access
      "offsets": ref._np(res["positions"] * (frame_size - patch))})  # pylint: disable=protected-access


CASES = {"v2": case_v2, "v2_tsm": case_v2_tsm}


if __name__ == "__main__":
  ref.main(cases=CASES)

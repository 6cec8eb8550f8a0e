"""PyTorch re-creation of the official Uni-AdaFocus model, for parity tests.

Run in the torch interpreter, like ``torch_reference_v2.py`` (whose
backbones, random initialisation and file layout it reuses):

  python tests/convert/torch_reference_uni.py --spec=SPEC.json --out=DIR

Written anew from LeapLabTHU/Uni-AdaFocus @ 8846488, folder "Uni-AdaFocus
with Experiments on ActivityNet, FCVID and Mini-Kinetics" (docs/METHOD.md
V2-11), ``models/uni_adafocus.py``: ``get_patch_grid_scalexy`` ->
``regions``, ``deformable_patches``; ``policy_sample_indices`` and
``cal_x`` -> ``frame_quantiles``, ``policy_sample_indices`` (uniform draws
given); ``MCSampleFeature`` -> ``mc_sample_logits`` (multinomial draws
given as masks), ``draw_removed`` (draws them); ``SpatialPolicy``,
``TemporalPolicy``, ``MultiLayerPerceptron``, ``PoolingClassifier`` (and
``MaxPooling``), ``AdaFocus`` (``forward`` in both modes) -> the same
names. The backbones (``models/mobilenet_v2.py`` ``get_featmap``,
``models/resnet.py`` ``get_featvec``) are ``torch_reference.py``'s.

Module names are the official ones: ``state_dict()`` keys are the official
checkpoint's with the DistributedDataParallel prefix ``module.``. Case
``uni`` saves ``<name>.pth.tar`` (``epoch``, ``state_dict``,
``optimizer``, ``best_acc1``) and ``<name>.npz`` (random frames, test-mode
outputs); ``uni_primitives`` the three functions' inputs and outputs.
Spatial arrays are NHWC. The classifier's width (4096 officially) is a
parameter. Batch norms get random, calibrated running statistics, so the
policies' outputs differ from video to video and frame to frame.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

import torch_reference as ref
import torch_reference_v2 as ref_v2
from torch_reference import MobileNetV2, ResNet50

IMAGENET_CLASSES = 1000
GLANCE_DIM, FOCUS_DIM = 1280, 2048
# get_patch_grid_scalexy: a region's side runs from 96 to 224 pixels
# (for patch = input_patch), whatever the image it is cut from.
REGION_MIN, REGION_MAX = 96, 224
# The spatial policy's last convolution spans a 7 x 7 glance map (frames
# of 224); its auxiliary branch samples that map (``image_size=7``) with
# P // 32 samples a side.
MAP_SIDE, STRIDE = 7, 32
MC_DIVISOR = 3         # T1 = G // 3 Monte-Carlo removal rounds
# Scales the temporal policy's output layer after calibration, so that
# the weights (and the selected frames) differ clearly between videos.
TEMPORAL_GAIN = 3.0

# -- the official functions ---------------------------------------------------


def regions(actions, patch: int, image_size: int, input_patch: int):
  """The regions ``get_patch_grid_scalexy`` samples: [n, 4] (y, x, Ly, Lx).

  In the input's pixels, from actions [n, 4] (a_y, a_x, s_y, s_x): side
  L = patch (s (224 - 96) / input_patch + 96 / input_patch) (96 to 224
  when patch = input_patch), top-left a (image_size - L).
  """
  scale = (actions[:, 2:4] * (REGION_MAX - REGION_MIN) / input_patch
           + REGION_MIN / input_patch)
  side = patch * scale
  corner = actions[:, :2] * (image_size - side)
  return torch.cat([corner, side], 1)


def deformable_patches(frames, actions, patch: int, image_size: int,
                       input_patch: int):
  """``get_patch_grid_scalexy``: [n, C, patch, patch] from [n, C, S, S].

  An affine grid over each region (scale L / S, translation
  -1 + (x1 + x2) / S per axis) read by bilinear ``grid_sample`` with zero
  padding, align_corners=False: output cell j samples pixel
  x1 + L (j + 1/2) / patch - 1/2. The official theta is float32 whatever
  the input; here it takes the actions' dtype (float64 runs stay double).
  """
  y1, x1, ly, lx = regions(actions, patch, image_size, input_patch).unbind(1)
  zero = torch.zeros_like(y1)
  theta = torch.stack([
      torch.stack([lx / image_size, zero, -1 + (x1 + (x1 + lx)) / image_size],
                  1),
      torch.stack([zero, ly / image_size, -1 + (y1 + (y1 + ly)) / image_size],
                  1)], 1)
  grid = F.affine_grid(theta, [frames.shape[0], 3, patch, patch],
                       align_corners=False)
  return F.grid_sample(frames, grid, mode="bilinear",
                       padding_mode="zeros", align_corners=False)


def frame_quantiles(weights, focus: int, u=None):
  """Stratified inverse-CDF quantiles in [0, 1): [B, K].

  ``weights`` [B, G] is a piecewise-constant density over G equal bins;
  its CDF (a leading 0, the last value forced to 1) is inverted by linear
  interpolation (``cal_x``) at the levels (i + u_i) / K; u = 0.5 at test.
  The bin of a level is the one before the first CDF value >= the level.
  """
  b, glance = weights.shape
  cdf = torch.cat([weights.new_zeros(b, 1), weights.cumsum(1)], 1)
  cdf[:, -1] = 1.0
  levels = torch.arange(focus, dtype=weights.dtype).repeat(b, 1)
  levels = (levels + (0.5 if u is None else u.to(weights.dtype))) / focus
  reached = cdf.unsqueeze(2) >= levels.unsqueeze(1)           # [B, G+1, K]
  first = reached.to(torch.uint8).argmax(1).clamp(1, glance) - 1
  y_lo, y_hi = cdf.gather(1, first), cdf.gather(1, first + 1)
  x_lo, x_hi = first.to(weights.dtype) / glance, (first + 1).to(
      weights.dtype) / glance
  return (x_hi * (levels - y_lo) - x_lo * (levels - y_hi)) / (y_hi - y_lo)


def policy_sample_indices(weights, segments: int, glance: int, focus: int,
                          u=None):
  """Each video's K selected candidates (0..N-1), strictly increasing.

  ``weights`` [B, G] (detached); ``u`` [B, K] the uniform draws
  (``torch.rand_like(threshold)``), None at test (0.5). floor(quantile x
  N); an index not above its predecessor becomes the predecessor + 1; the
  i-th is capped at N - K + i. (The official function adds b x N.)
  """
  assert weights.shape[1] == glance
  index = torch.floor(frame_quantiles(weights, focus, u) * segments).long()
  for i in range(1, focus):
    index[:, i] = torch.maximum(index[:, i], index[:, i - 1] + 1)
  return torch.minimum(index, segments - focus + torch.arange(focus))


def mc_sample_logits(glance_logits, weights, removed):
  """``MCSampleFeature`` with its multinomial draws given: [B, C].

  ``glance_logits`` [B, G, C] and ``weights`` w [B, G] (neither detached);
  ``removed`` [B, S, T1, G] 0/1, row i of draw s removing i glance frames.
  The w-weighted mean of the remaining frames' logits, divided by the
  *detached* sum of their weights, averaged over rows, then draws.
  """
  kept = weights[:, None, None, :] * (1 - removed.to(weights.dtype))
  mean = torch.einsum("bstg,bgc->bstc", kept, glance_logits)
  mean = mean / kept.sum(-1, keepdim=True).detach()
  return mean.mean(2).mean(1)


def removed_drawer(seed: int, samples: int, glance: int):
  """The ``mc_removed`` argument of a forward: ``draw_removed`` of its
  weights w with a generator of its own, seeded ``seed + 20``.

  Args:
    seed: the case's seed.
    samples: S Monte-Carlo draws.
    glance: G glance frames (``G // MC_DIVISOR`` rounds).

  Returns:
    ``w -> [B, S, T1, G]`` masks.
  """
  generator = torch.Generator().manual_seed(seed + 20)
  return lambda w: draw_removed(w, samples, glance // MC_DIVISOR, generator)


def draw_removed(weights, samples: int, rounds: int,
                 generator: Optional[torch.Generator] = None):
  """The masks ``MCSampleFeature`` draws: [B, S, T1, G] (0/1, w's dtype).

  Row i of draw s: i frames drawn from w without replacement (each video's
  weights repeated S times, as ``repeat(1, S, 1).view(-1, G)`` does).
  """
  b, glance = weights.shape
  rows = weights.detach().repeat_interleave(samples, 0)
  removed = torch.zeros(b * samples, rounds, glance, dtype=weights.dtype)
  for i in range(1, rounds):
    picks = torch.multinomial(rows, i, replacement=False, generator=generator)
    removed[:, i].scatter_(1, picks, 1.0)
  return removed.view(b, samples, rounds, glance)


# -- the official modules -----------------------------------------------------


def spatial_encoder(channels: int, hidden: int, frames: int,
                    map_side: int) -> nn.Sequential:
  """A spatial policy's ``encoder``: 3D convolutions (indices 0, 1, 3, 4,
  6, 7, 9 hold weights), the last spanning ``frames`` maps of side
  ``map_side``, then 4 sigmoid outputs (a_y, a_x, s_y, s_x).

  Args:
    channels: the glance maps' channels.
    hidden: the policy's width.
    frames: the maps the last kernel spans (1: one action a frame).
    map_side: the glance maps' side.

  Returns:
    The ``nn.Sequential`` (its layers made in the official order, so that
    a seed gives the official initial weights).
  """
  layers = [nn.Conv3d(channels, hidden, 1, bias=False)]
  for _ in range(2):
    layers += [nn.BatchNorm3d(hidden), nn.ReLU(),
               nn.Conv3d(hidden, hidden, 3, padding=1, bias=False)]
  layers += [nn.BatchNorm3d(hidden), nn.ReLU(),
             nn.Conv3d(hidden, 4, (frames, map_side, map_side), bias=False),
             nn.Sigmoid()]
  return nn.Sequential(*layers)


class SpatialPolicy(nn.Module):
  """``spatial_policy``: 3D convolutions over the G glance maps (encoder
  indices 0, 1, 3, 4, 6, 7, 9 hold weights); 4 sigmoid outputs a frame."""

  def __init__(self, channels: int, hidden: int, glance: int):
    super().__init__()
    self.encoder = spatial_encoder(channels, hidden, 1, MAP_SIDE)
    self.glance = glance

  def forward(self, maps):
    """[B*G, C, 7, 7] glance maps -> [B*G, 4] (a_y, a_x, s_y, s_x)."""
    n, c, h, w = maps.shape
    volume = maps.reshape(n // self.glance, self.glance, c, h, w)
    out = self.encoder(volume.transpose(1, 2))         # [B, 4, G, 1, 1]
    return out.flatten(2).transpose(1, 2).reshape(n, 4)


class TemporalPolicy(nn.Module):
  """``temporal_policy``: convolutions along time (``Tconv`` 0, 1, 3, 4, 6
  hold weights), a softmax over the G glance frames."""

  def __init__(self, channels: int, hidden: int, glance: int,
               temperature: float = 1.0):
    super().__init__()
    time_conv = lambda i, o: nn.Conv2d(i, o, (3, 1), padding=(1, 0),  # pylint: disable=g-long-lambda
                                       bias=False)
    self.Tconv = nn.Sequential(  # pylint: disable=invalid-name
        time_conv(channels, hidden), nn.BatchNorm2d(hidden), nn.ReLU(),
        time_conv(hidden, hidden), nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, 1, 1, bias=False))
    self.glance, self.temperature = glance, temperature

  def forward(self, pooled):
    """[B*G, D] pooled glance features -> (w, w at the temperature) [B, G]."""
    seq = pooled.reshape(-1, self.glance, pooled.shape[-1]).transpose(1, 2)
    scores = self.Tconv(seq.unsqueeze(-1)).flatten(1)
    return scores.softmax(1), (scores / self.temperature).softmax(1)


class MultiLayerPerceptron(nn.Module):
  """``layers`` = Linear, BatchNorm1d, ReLU."""

  def __init__(self, inputs: int, width: int):
    super().__init__()
    self.layers = nn.Sequential(nn.Linear(inputs, width),
                                nn.BatchNorm1d(width), nn.ReLU())

  def forward(self, x):
    return self.layers(x)


def _running_max(new, running):
  """``MaxPooling``: the maximum of the two, ties to the new step."""
  return torch.stack([new, running], 1).max(1)[0]


class PoolingClassifier(nn.Module):
  """``classifier``: G glance steps, then K focus steps reading
  concat(focus running max, glance max over all G frames)."""

  def __init__(self, glance: int, focus: int, classes: int, width: int):
    super().__init__()
    self.global_mlp = MultiLayerPerceptron(GLANCE_DIM, width)
    self.local_mlp = MultiLayerPerceptron(FOCUS_DIM, width)
    # Officially Linear(4096, C) and Linear(8192, C), hard-coded.
    self.global_classifiers = nn.ModuleList(
        [ref_v2._head(width, classes) for _ in range(glance)])  # pylint: disable=protected-access
    self.local_classifiers = nn.ModuleList(
        [ref_v2._head(2 * width, classes) for _ in range(focus)])  # pylint: disable=protected-access

  def forward(self, glance_feats, focus_feats):
    """[B, G, 1280], [B, K, 2048] -> step logits [B, G+K, C]."""
    b, g = glance_feats.shape[:2]
    k = focus_feats.shape[1]
    z1 = self.global_mlp(glance_feats.reshape(b * g, -1)).view(b, g, -1)
    z2 = self.local_mlp(focus_feats.reshape(b * k, -1)).view(b, k, -1)
    steps, glance_max = [], z1[:, 0]
    for i, head in enumerate(self.global_classifiers):
      glance_max = glance_max if i == 0 else _running_max(z1[:, i], glance_max)
      steps.append(head(glance_max))
    focus_max = z2[:, 0]
    for i, head in enumerate(self.local_classifiers):
      focus_max = focus_max if i == 0 else _running_max(z2[:, i], focus_max)
      steps.append(head(torch.cat([focus_max, glance_max], 1)))
    return torch.stack(steps, 1)


class AdaFocus(nn.Module):
  """Uni-AdaFocus of the ActivityNet family, official module names."""

  def __init__(self, classes: int, segments: int, glance: int, focus: int,
               patch: int, mlp_width: int = 4096, spatial_hidden: int = 128,
               temporal_hidden: int = 64, temperature: float = 1.0,
               frame_size: int = 224):
    super().__init__()
    assert -(-frame_size // STRIDE) == MAP_SIDE, "the policy needs 7x7 maps"
    assert segments % glance == 0
    self.global_CNN = MobileNetV2(IMAGENET_CLASSES, flat=True)  # pylint: disable=invalid-name
    self.global_CNN_fc = ref_v2._head(GLANCE_DIM, classes)  # pylint: disable=invalid-name,protected-access
    self.aux_fc = nn.Linear(GLANCE_DIM, classes)
    self.local_CNN = ResNet50(IMAGENET_CLASSES)  # pylint: disable=invalid-name
    self.local_CNN_fc = ref_v2._head(FOCUS_DIM, classes)  # pylint: disable=invalid-name,protected-access
    self.spatial_policy = SpatialPolicy(GLANCE_DIM, spatial_hidden, glance)
    self.temporal_policy = TemporalPolicy(GLANCE_DIM, temporal_hidden, glance,
                                          temperature)
    self.classifier = PoolingClassifier(glance, focus, classes, mlp_width)
    self.segments, self.glance, self.focus = segments, glance, focus
    self.patch, self.frame_size = patch, frame_size

  def glance_indices(self, batch: int, draws=None):
    """[B, G]: candidate (times i + draw) in training, 1, 4, ... at test."""
    times = self.segments // self.glance
    if draws is None:
      return torch.arange(self.segments)[1::times].repeat(batch, 1)
    return draws + torch.arange(self.glance) * times

  def forward(self, frames, glance_draws=None, frame_draws=None,
              random_positions=None, mc_removed=None) -> Dict:
    """``AdaFocus.forward`` on candidates [B, N, 3, S, S].

    Training mode needs the draws: ``glance_draws`` [B, G] (ints below
    N // G), ``frame_draws`` [B, K] and ``random_positions`` [B, N, 2] (the
    random branch's positions, one per candidate). ``mc_removed`` is the
    masks of ``mc_sample_logits`` or a function of the detached weights
    that draws them; None skips the Monte-Carlo logits.

    Returns a dict of [B, ...] tensors and ``branches``: the policy's
    actions, then (training) the random ones, each a dict.
    """
    b, n, _, s, _ = frames.shape
    g, k, p = self.glance, self.focus, self.patch
    training = self.training
    flat = frames.reshape(b * n, 3, s, s)
    start = torch.arange(b).unsqueeze(1) * n
    g_idx = self.glance_indices(b, glance_draws if training else None)
    fmap, pooled = self.global_CNN.get_featmap(flat[(g_idx + start).view(-1)])
    glance_logits = self.global_CNN_fc(pooled)
    actions_1 = self.spatial_policy(fmap.detach())            # [B*G, 4]
    per_candidate = F.interpolate(actions_1.view(b, g, 4).transpose(1, 2), n,
                                  mode="linear", align_corners=False)
    per_candidate = per_candidate.transpose(1, 2)              # [B, N, 4]
    w, w_t = self.temporal_policy(pooled)
    res = dict(glance_indices=g_idx,
               glance_map=fmap.view(b, g, *fmap.shape[1:]),
               glance_pooled=pooled.view(b, g, -1),
               glance_logits=glance_logits.view(b, g, -1),
               glance_actions=actions_1.view(b, g, 4),
               candidate_actions=per_candidate, weights=w, weights_t=w_t)
    if mc_removed is not None:
      removed = mc_removed(w.detach()) if callable(mc_removed) else mc_removed
      res["mc_removed"] = removed
      res["temporal_logits"] = mc_sample_logits(res["glance_logits"], w,
                                                removed)
    action_3 = self.spatial_policy(fmap.detach())    # again (BN updated)
    aux = deformable_patches(fmap.detach(), action_3, p // STRIDE, MAP_SIDE, p)
    res["spatial_actions"] = action_3.view(b, g, 4)
    res["spatial_logits"] = self.aux_fc(
        aux.view(b, g, GLANCE_DIM, p // STRIDE, p // STRIDE).mean((1, 3, 4)))
    u = frame_draws if training else None
    res["frame_positions"] = frame_quantiles(w_t.detach(), k, u) * n
    f_idx = policy_sample_indices(w_t.detach(), n, g, k, u)
    res["focus_indices"] = f_idx
    branch_actions = [per_candidate]
    if training:
      fixed = (p - REGION_MIN) / (REGION_MAX - REGION_MIN)
      positions = random_positions.to(frames.dtype)
      branch_actions.append(torch.cat(
          [positions, torch.full_like(positions, fixed)], -1))
    chosen = [a[torch.arange(b).unsqueeze(1), f_idx] for a in branch_actions]
    images = flat[(f_idx + start).view(-1)].repeat(len(chosen), 1, 1, 1)
    boxes = torch.cat([a.reshape(b * k, 4) for a in chosen]).detach()
    patches = deformable_patches(images, boxes, p, s, p)
    feats = self.local_CNN.get_featmap(patches).flatten(1)  # get_featvec
    local_logits = self.local_CNN_fc(feats)
    res["branches"] = []
    for i, action in enumerate(chosen):
      part = slice(i * b * k, (i + 1) * b * k)
      focus_feats = feats[part].view(b, k, -1)
      res["branches"].append(dict(
          focus_actions=action,
          regions=regions(boxes[part], p, s, p).view(b, k, 4),
          patches=patches[part].view(b, k, 3, p, p),
          focus_features=focus_feats,
          focus_logits=local_logits[part].view(b, k, -1),
          logits=self.classifier(res["glance_pooled"], focus_feats)))
    return res


# -- random weights -------------------------------------------------------------


def randomise_any(model: nn.Module, calibrate, seed: int) -> None:
  """``torch_reference_v2.randomise_normalised`` for 1D/2D/3D layers.

  Random weights (as ``torch_reference.randomise`` draws them), batch-norm
  scales and shifts, then every batch norm's running statistics are those
  of a training-mode pass of ``calibrate`` (a plain average), momentum 0.1.
  """
  g = torch.Generator().manual_seed(seed)
  norms = []
  for m in model.modules():
    if isinstance(m, (_ConvNd, nn.Linear)):
      m.weight.data = torch.randn(m.weight.shape, generator=g) * (
          1.5 / m.weight[0].numel()) ** 0.5
      if m.bias is not None:
        m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
    if isinstance(m, _BatchNorm):
      m.weight.data = 0.4 + 0.6 * torch.rand(m.weight.shape, generator=g)
      m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
      m.momentum = None
      m.reset_running_stats()
      norms.append(m)
  model.train()
  with torch.no_grad():
    calibrate(model)
  for m in norms:
    m.momentum = 0.1
    m.num_batches_tracked.fill_(7)
  model.eval()


def calibrate_uni(model: AdaFocus, calib, seed: int) -> None:
  """Random weights, batch-norm statistics calibrated on ``calib``
  [n, N, 3, S, S]: its test-mode glance frames, centre crops of its first
  K candidates."""
  n = calib.shape[0]
  g, k, p, s = model.glance, model.focus, model.patch, model.frame_size
  glance = calib[:, model.glance_indices(1)[0]].flatten(0, 1)
  c = (s - p) // 2
  crops = calib[:, :k, :, c:c + p, c:c + p].flatten(0, 1)
  ref_v2.randomise_normalised(model.global_CNN,
                              lambda m: m.get_featmap(glance), seed)
  ref_v2.randomise_normalised(model.local_CNN,
                              lambda m: m.get_featmap(crops), seed + 1)
  for i, head in enumerate((model.global_CNN_fc, model.aux_fc,
                            model.local_CNN_fc)):
    ref.randomise(head, None, seed + 2 + i)
  with torch.no_grad():
    fmap, pooled = model.global_CNN.get_featmap(glance)
    focus = model.local_CNN.get_featmap(crops).flatten(1)
  randomise_any(model.spatial_policy, lambda m: m(fmap), seed + 5)
  randomise_any(model.temporal_policy, lambda m: m(pooled), seed + 6)
  model.temporal_policy.Tconv[-1].weight.data *= TEMPORAL_GAIN
  randomise_any(model.classifier, lambda m: m(
      pooled.view(n, g, -1), focus.view(n, k, -1)), seed + 7)
  model.eval()


def make_model(seed: int = 0, segments: int = 12, glance_segments: int = 4,
               focus_segments: int = 4, frame_size: int = 224,
               patch: int = 128, classes: int = 5, mlp_width: int = 64,
               spatial_hidden: int = 128, temporal_hidden: int = 64,
               temperature: float = 1.0) -> AdaFocus:
  """A random, calibrated model (test mode) of the spec's sizes."""
  torch.manual_seed(seed)
  model = AdaFocus(classes, segments, glance_segments, focus_segments, patch,
                   mlp_width, spatial_hidden, temporal_hidden, temperature,
                   frame_size)
  calibrate_uni(model, ref_v2.random_frames(
      np.random.default_rng(seed + 10),
      (4, segments, 3, frame_size, frame_size)), seed)
  return model


def save_checkpoint(model: nn.Module, path: str) -> None:
  """The official file: ``epoch``, ``state_dict`` (``module.``),
  ``optimizer`` (made up: training state a converter skips), ``best_acc1``."""
  ref_v2.save_state_dict(model, path, epoch=50, best_acc1=80.7,
                         optimizer=ref._fake_optimizer_state(  # pylint: disable=protected-access
                             list(model.temporal_policy.parameters())))


def arrays(tensors: Dict[str, torch.Tensor],
           nhwc=()) -> Dict[str, np.ndarray]:
  """numpy arrays: integers as int32, floats in their precision; as NHWC
  the keys ``nhwc`` and images (3, 1280 or 2048 channels before two equal
  sides)."""
  out = {}
  for key, t in tensors.items():
    a = t.detach().numpy()
    if not t.is_floating_point():
      a = a.astype(np.int32)
    elif key in nhwc or (t.dim() >= 4 and t.shape[-1] == t.shape[-2]
                         and t.shape[-3] in (3, GLANCE_DIM, FOCUS_DIM)):
      a = np.moveaxis(a, -3, -1)
    out[key] = a
  return out


# -- cases ----------------------------------------------------------------------


def case_uni(out: str, name: str, seed: int = 0, batch: int = 2,
             mc_samples: int = 4, dtype: str = "float32", **sizes) -> None:
  """The model in test mode: ``<name>.pth.tar`` and ``<name>.npz``.

  ``mc_samples``: S Monte-Carlo draws (128 officially) for
  ``temporal_logits`` (the masks, drawn from w, are ``mc_removed``);
  ``dtype``: ``float32``, or ``float64`` (parameters, buffers and frames
  in double, with the float32 run's values: the same seed gives the same
  weights and frames, the exact outputs); ``sizes``: ``make_model``'s.
  """
  model = make_model(seed, **sizes)
  cast = torch.float64 if dtype == "float64" else torch.float32
  model.to(cast)
  n, s = model.segments, model.frame_size
  x = ref_v2.random_frames(np.random.default_rng(seed),
                           (batch, n, 3, s, s)).to(cast)
  with torch.no_grad():
    res = model(x, mc_removed=removed_drawer(seed, mc_samples, model.glance))
  branch = res.pop("branches")[0]
  save_checkpoint(model, os.path.join(out, f"{name}.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"),
           **arrays(dict(res, frames=x, **branch)))


def _with_grads(fn, inputs, rng):
  """fn(*inputs), its inputs' gradients for a random cotangent, the
  cotangent."""
  inputs = [x.requires_grad_() for x in inputs]
  y = fn(*inputs)
  cot = torch.from_numpy(rng.standard_normal(y.shape).astype(np.float32))
  return y, torch.autograd.grad((y * cot).sum(), inputs), cot


def case_uni_primitives(out: str, name: str, seed: int = 0,
                        segments: int = 48, glance_segments: int = 16,
                        focus_segments: int = 16, patch: int = 128,
                        frame_size: int = 224, map_channels: int = 8,
                        mc_glance: int = 9, mc_samples: int = 4,
                        classes: int = 5) -> None:
  """The three functions on random inputs, in float32: ``<name>.npz``.

  ``psi_*``: ``policy_sample_indices`` (sizes ``psi_sizes`` = N, G, K) on
  weights that are random, uniform, peaked on the last frame (the cap
  acts) and on the first (the overlap fix acts), with draws ``psi_u`` (one
  row 0) and at test; ``psi_positions*`` are the quantiles x N. ``mc_*``:
  ``mc_sample_logits`` and the gradients (``mc_grad_*``) of its output
  dotted with ``mc_cotangent``. ``dp_*``: ``deformable_patches`` on frames
  (``dp_sizes`` = patch, image size, input patch), with regions smaller
  than P at corners (zero padding counts), exactly P, the whole frame and
  random ones; ``dpm_*``: on glance-sized maps (P // 32, 7, P), with
  gradients as for ``mc_*``.
  """
  rng = np.random.default_rng(seed)
  f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # pylint: disable=unnecessary-lambda-assignment
  n, g, k = segments, glance_segments, focus_segments
  logits = rng.standard_normal((6, g)) * [[1.5], [3], [0], [0], [1], [2]]
  logits[2, -1] = logits[3, 0] = 6.0
  w = torch.softmax(f32(logits), 1)
  u = f32(rng.uniform(size=(6, k)))
  u[0] = 0.0
  res = dict(psi_weights=w, psi_u=u, psi_sizes=torch.tensor([n, g, k]),
             psi_indices=policy_sample_indices(w, n, g, k, u),
             psi_positions=frame_quantiles(w, k, u) * n,
             psi_indices_test=policy_sample_indices(w, n, g, k),
             psi_positions_test=frame_quantiles(w, k) * n)
  mc_logits = f32(rng.standard_normal((3, mc_glance, classes)))
  mc_w = torch.softmax(f32(rng.standard_normal((3, mc_glance))), 1)
  removed = draw_removed(mc_w, mc_samples, mc_glance // MC_DIVISOR,
                         torch.Generator().manual_seed(seed))
  mc, grads, cot = _with_grads(lambda x, w_: mc_sample_logits(x, w_, removed),
                               [mc_logits, mc_w], rng)
  res.update(mc_glance_logits=mc_logits, mc_weights=mc_w, mc_removed=removed,
             mc_logits=mc, mc_cotangent=cot, mc_grad_glance_logits=grads[0],
             mc_grad_weights=grads[1])
  frames = ref_v2.random_frames(rng, (1, 8, 3, frame_size, frame_size))[0]
  actions = f32(np.concatenate([
      [[0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0.1, 0.05], [0.5, 0.5, 0.25, 0.25],
       [0.3, 0.7, 1, 1]], rng.uniform(size=(3, 4))]))
  res.update(dp_frames=frames, dp_actions=actions,
             dp_sizes=torch.tensor([patch, frame_size, patch]),
             dp_regions=regions(actions, patch, frame_size, patch),
             dp_patches=deformable_patches(frames, actions, patch, frame_size,
                                           patch))
  small = patch // STRIDE
  maps = f32(rng.standard_normal((6, map_channels, MAP_SIDE, MAP_SIDE)))
  map_actions = f32(np.concatenate([[[0, 0, 0, 0], [1, 1, 1, 1],
                                     [0, 1, 0.2, 0.6]],
                                    rng.uniform(size=(3, 4))]))
  sampled, grads, cot = _with_grads(lambda x, a: deformable_patches(
      x, a, small, MAP_SIDE, patch), [maps, map_actions], rng)
  res.update(dpm_maps=maps, dpm_actions=map_actions,
             dpm_sizes=torch.tensor([small, MAP_SIDE, patch]),
             dpm_regions=regions(map_actions, small, MAP_SIDE, patch),
             dpm_patches=sampled, dpm_cotangent=cot, dpm_grad_maps=grads[0],
             dpm_grad_actions=grads[1])
  np.savez(os.path.join(out, f"{name}.npz"), **arrays(res, nhwc=[
      key for key, v in res.items() if key.startswith("dp") and v.dim() == 4]))


CASES = {"uni": case_uni, "uni_primitives": case_uni_primitives}


if __name__ == "__main__":
  ref.main(cases=CASES)

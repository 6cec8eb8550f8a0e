"""PyTorch re-creation of the official X3D network, for the converter's
parity test.

Run in the torch interpreter, like ``torch_reference_uni.py``:

  python tests/convert/torch_reference_x3d.py --spec=SPEC.json --out=DIR

Written anew from LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus-X3D with Experiments on Kinetics-400" (docs/METHOD.md
V2-11.4): ``archs/x3d_video_model_builder.py`` ``X3D`` (its
``_construct_network`` and ``get_featmap``) with the SlowFast modules it
builds: ``slowfast/models/stem_helper.py`` ``VideoModelStem`` /
``X3DStem``, ``resnet_helper.py`` ``ResStage`` / ``ResBlock`` /
``X3DTransform``, ``operators.py`` ``SE``, ``head_helper.py`` ``X3DHead``,
``utils.py`` ``round_width``. Module names are the official ones, so
``state_dict()`` keys are those of SlowFast's ``x3d_*.pyth`` files.
(The official modules themselves import fvcore, pytorchvideo and the rest
of SlowFast, which the torch interpreter lacks; ``check_official_x3d.py``
compares this re-creation with them given a copy of the official code:
the same state-dict keys, bit-identical float64 outputs.)

Case ``x3d`` saves ``<name>.pth`` (the state dict) and ``<name>.npz``:
``clip`` [B, T, H, W, 3], and ``get_featmap``'s outputs in eval mode:
``logits`` [B, C], ``maps`` [B, T, h, w, F], ``frame_features`` [B, T, F].
Batch norms get random, calibrated running statistics.

Case ``uni_x3d`` re-creates ``archs/uni_adafocus_X3D.py`` ``AdaFocus``
(its modules under their official names, ``forward`` in test mode) with
that X3D as glance and focus net, ``torch_reference_uni.py``'s
``get_patch_grid_scalexy`` (``deformable_patches``),
``policy_sample_indices`` and ``TemporalPolicy``, and saves the official
file (``<name>.pth.tar``: ``state_dict`` with ``module.`` keys) and the
test-mode outputs (``<name>.npz``).

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import torch_reference as ref
import torch_reference_uni as ref_uni
import torch_reference_v2 as ref_v2

# The official constants (``X3D.__init__``, ``_TEMPORAL_KERNEL_BASIS``).
EXP_STAGE, STAGE_DIVISOR = 2.0, 8
BASE_DEPTHS = (1, 2, 5, 3)
STEM_T, BLOCK_T = 5, 3
SE_RATIO = 0.0625
BN_EPS, BN_MOMENTUM = 1e-5, 0.1


def round_width(width, multiplier, min_width=1, divisor=1):
  """``slowfast/models/utils.py`` ``round_width`` (and ``SE._round_width``
  with min_width = divisor = 8)."""
  if not multiplier:
    return width
  width *= multiplier
  min_width = min_width or divisor
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  if out < 0.9 * width:
    out += divisor
  return int(out)


def _bn(c):
  return nn.BatchNorm3d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class X3DStem(nn.Module):
  """``X3DStem``: conv_xy (1x3x3, stride 2), channel-wise conv (5x1x1),
  bn, relu."""

  def __init__(self, dim_in, dim_out):
    super().__init__()
    self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), (1, 2, 2),
                             (0, 1, 1), bias=False)
    self.conv = nn.Conv3d(dim_out, dim_out, (STEM_T, 1, 1), 1,
                          (STEM_T // 2, 0, 0), bias=False, groups=dim_out)
    self.bn = _bn(dim_out)
    self.relu = nn.ReLU(True)

  def forward(self, x):
    return self.relu(self.bn(self.conv(self.conv_xy(x))))


class VideoModelStem(nn.Module):
  def __init__(self, dim_in, dim_out):
    super().__init__()
    self.pathway0_stem = X3DStem(dim_in, dim_out)

  def forward(self, x):
    return [self.pathway0_stem(x[0])]


class SE(nn.Module):
  """``operators.py`` ``SE`` with ReLU: pool, fc1, relu, fc2, sigmoid."""

  def __init__(self, dim_in, ratio):
    super().__init__()
    self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
    dim_fc = round_width(dim_in, ratio, 8, 8)
    self.fc1 = nn.Conv3d(dim_in, dim_fc, 1, bias=True)
    self.fc1_act = nn.ReLU()
    self.fc2 = nn.Conv3d(dim_fc, dim_in, 1, bias=True)
    self.fc2_sig = nn.Sigmoid()

  def forward(self, x):
    x_in = x
    for module in self.children():
      x = module(x)
    return x_in * x


class Swish(nn.Module):
  def forward(self, x):
    return x * torch.sigmoid(x)


class X3DTransform(nn.Module):
  """a (1x1x1), a_bn, relu, b (3x3x3 channel-wise, spatial stride), b_bn,
  SE on even block indices, swish, c (1x1x1), c_bn; applied in
  registration order, as the official."""

  def __init__(self, dim_in, dim_out, temp_kernel, stride, dim_inner,
               block_idx):
    super().__init__()
    self.a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
    self.a_bn = _bn(dim_inner)
    self.a_relu = nn.ReLU(True)
    self.b = nn.Conv3d(dim_inner, dim_inner, (temp_kernel, 3, 3),
                       (1, stride, stride), (temp_kernel // 2, 1, 1),
                       groups=dim_inner, bias=False)
    self.b_bn = _bn(dim_inner)
    if (block_idx + 1) % 2:
      self.se = SE(dim_inner, SE_RATIO)
    self.b_relu = Swish()
    self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
    self.c_bn = _bn(dim_out)

  def forward(self, x):
    for block in self.children():
      x = block(x)
    return x


class ResBlock(nn.Module):
  def __init__(self, dim_in, dim_out, stride, dim_inner, block_idx):
    super().__init__()
    if dim_in != dim_out or stride != 1:
      self.branch1 = nn.Conv3d(dim_in, dim_out, 1, (1, stride, stride),
                               bias=False)
      self.branch1_bn = _bn(dim_out)
    self.branch2 = X3DTransform(dim_in, dim_out, BLOCK_T, stride, dim_inner,
                                block_idx)
    self.relu = nn.ReLU(True)

  def forward(self, x):
    f_x = self.branch2(x)
    if hasattr(self, "branch1"):
      x = self.branch1_bn(self.branch1(x)) + f_x
    else:
      x = x + f_x
    return self.relu(x)


class ResStage(nn.Module):
  def __init__(self, dim_in, dim_out, stride, depth, dim_inner):
    super().__init__()
    self.depth = depth
    for i in range(depth):
      self.add_module(f"pathway0_res{i}", ResBlock(
          dim_in if i == 0 else dim_out, dim_out, stride if i == 0 else 1,
          dim_inner, i))

  def forward(self, x):
    x = x[0]
    for i in range(self.depth):
      x = getattr(self, f"pathway0_res{i}")(x)
    return [x]


class X3DHead(nn.Module):
  def __init__(self, dim_in, dim_inner, dim_out, num_classes, pool_size,
               dropout):
    super().__init__()
    self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
    self.conv_5_bn = _bn(dim_inner)
    self.conv_5_relu = nn.ReLU(True)
    self.avg_pool = nn.AvgPool3d(pool_size, stride=1)
    self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
    self.lin_5_relu = nn.ReLU(True)
    self.dropout = nn.Dropout(dropout)
    self.projection = nn.Linear(dim_out, num_classes, bias=True)


class X3D(nn.Module):
  """``X3D`` of the given factors (the official ``cfg.X3D`` fields)."""

  def __init__(self, num_classes, frames, crop, width_factor=2.0,
               depth_factor=2.2, bottleneck_factor=2.25, dim_c1=12,
               dim_c5=2048, base_depths=BASE_DEPTHS, dropout=0.5):
    super().__init__()
    dims = [dim_c1]
    for _ in base_depths[1:]:
      dims.append(round_width(dims[-1], EXP_STAGE, divisor=STAGE_DIVISOR))
    dim_res1 = round_width(dim_c1, width_factor)
    self.s1 = VideoModelStem(3, dim_res1)
    dim_in = dim_res1
    for stage, (base, depth) in enumerate(zip(dims, base_depths)):
      dim_out = round_width(base, width_factor)
      dim_inner = int(bottleneck_factor * dim_out)
      n_rep = int(math.ceil(depth_factor * depth)) if depth_factor else depth
      self.add_module(f"s{stage + 2}", ResStage(dim_in, dim_out, 2, n_rep,
                                                dim_inner))
      dim_in = dim_out
    spat = int(math.ceil(crop / 32.0))
    self.head = X3DHead(dim_out, dim_inner, dim_c5, num_classes,
                        [frames, spat, spat], dropout)
    self.num_stages = len(base_depths)

  def get_featmap(self, x):
    """The official ``get_featmap``: (logits of the pooled, detached map;
    the map; its spatial mean [B, F, T])."""
    x = self.s1([x])
    for k in range(self.num_stages):
      x = getattr(self, f"s{k + 2}")(x)
    head = self.head
    x = head.conv_5_relu(head.conv_5_bn(head.conv_5(x[0])))
    x1 = head.lin_5_relu(head.lin_5(head.avg_pool(x.detach())))
    x1 = head.projection(head.dropout(x1.permute((0, 2, 3, 4, 1))))
    return x1.view(x1.shape[0], -1), x, x.mean([3, 4])


def randomise(model, clip, seed):
  """Random weights; batch-norm statistics calibrated on ``clip`` (a
  training-mode pass with momentum None), then random affine parameters
  (scales below 1, as ``torch_reference.randomise``)."""
  g = torch.Generator().manual_seed(seed)
  for m in model.modules():
    if isinstance(m, (nn.Conv3d, nn.Linear)):
      fan_in = m.weight[0].numel()
      m.weight.data = torch.randn(m.weight.shape, generator=g,
                                  dtype=m.weight.dtype) * (2.0 / fan_in) ** 0.5
      if m.bias is not None:
        m.bias.data = torch.randn(m.bias.shape, generator=g,
                                  dtype=m.bias.dtype) * 0.1
    if isinstance(m, nn.BatchNorm3d):
      m.momentum = None
      m.reset_running_stats()
  model.train()
  with torch.no_grad():
    model.get_featmap(clip)
  for m in model.modules():
    if isinstance(m, nn.BatchNorm3d):
      m.weight.data = 0.4 + 0.6 * torch.rand(m.weight.shape, generator=g,
                                             dtype=m.weight.dtype)
      m.bias.data = torch.randn(m.bias.shape, generator=g,
                                dtype=m.bias.dtype) * 0.1
      m.num_batches_tracked.fill_(7)
      m.momentum = BN_MOMENTUM
  model.eval()


def case_x3d(out: str, name: str, seed: int = 0, batch: int = 2,
             frames: int = 4, size: int = 64, num_classes: int = 5,
             dtype: str = "float32", **factors) -> None:
  """An X3D of ``factors`` (``X3D``'s arguments) with random weights."""
  torch.manual_seed(seed)
  tdtype = getattr(torch, dtype)
  model = X3D(num_classes, frames, size, **factors).to(tdtype)
  clip = torch.randn(batch, 3, frames, size, size, generator=torch.Generator(
  ).manual_seed(seed + 1), dtype=tdtype)
  randomise(model, clip, seed)
  with torch.no_grad():
    logits, maps, feats = model.get_featmap(clip)
  torch.save(model.state_dict(), os.path.join(out, f"{name}.pth"))
  as_np = lambda t: t.detach().numpy()
  np.savez(os.path.join(out, f"{name}.npz"),
           clip=np.moveaxis(as_np(clip), 1, -1),
           logits=as_np(logits), maps=np.moveaxis(as_np(maps), 1, -1),
           frame_features=np.moveaxis(as_np(feats), 1, -1))


# ``AdaFocus``'s constants: the glance map's side (``global_feat_map_size``,
# X3D at 160 pixels), the regions' smallest and largest side.
MAP_SIDE = 5
REGION_MIN, REGION_MAX = 96, 224


class SpatialPolicy(nn.Module):
  """``SpatialPolicy`` of ``uni_adafocus_X3D.py``: 3D convolutions over the
  G glance maps, the last one spanning all of them: one action a video."""

  def __init__(self, channels, hidden, glance):
    super().__init__()
    self.encoder = ref_uni.spatial_encoder(channels, hidden, glance, MAP_SIDE)
    self.glance, self.channels = glance, channels

  def forward(self, features):
    """[B, G*C, 5, 5] -> [B, 4]."""
    n, _, h, w = features.shape
    x = features.reshape(n, self.glance, self.channels, h, w)
    return self.encoder(x.permute(0, 2, 1, 3, 4)).reshape(n, 4)


def _frame_head(dim_in, hidden, classes, dropout):
  return nn.Sequential(nn.Linear(dim_in, hidden, bias=False), nn.ReLU(True),
                       nn.Dropout(dropout), nn.Linear(hidden, classes))


class AdaFocusX3D(nn.Module):
  """``AdaFocus`` of ``uni_adafocus_X3D.py`` at given sizes (test mode)."""

  def __init__(self, classes, segments, glance, focus, frame_size,
               glance_size, patch, spatial_hidden, temporal_hidden, factors,
               dropout=0.5):
    super().__init__()
    self.segments, self.glance, self.focus = segments, glance, focus
    self.frame_size, self.glance_size, self.patch = (frame_size, glance_size,
                                                     patch)
    self.global_CNN = X3D(classes, glance, glance_size, dropout=dropout,  # pylint: disable=invalid-name
                          **factors)
    dim = self.global_CNN.head.lin_5.in_channels
    hidden = self.global_CNN.head.projection.in_features
    self.dim = dim
    self.map_patch = round(MAP_SIDE * patch / frame_size)
    self.global_CNN_head = _frame_head(dim, hidden, classes, dropout)  # pylint: disable=invalid-name
    self.local_CNN = X3D(classes, focus, patch, dropout=dropout, **factors)  # pylint: disable=invalid-name
    self.local_CNN_head = _frame_head(dim, hidden, classes, dropout)  # pylint: disable=invalid-name
    self.aux_head = nn.Sequential(nn.Linear(dim, classes))
    self.spatial_policy = SpatialPolicy(dim, spatial_hidden, glance)
    self.temporal_policy = ref_uni.TemporalPolicy(dim, temporal_hidden,
                                                  glance)

  def glance_clip(self, images_glance):
    """[B, G*3, S, S] -> the glance clip [B, 3, G, g, g]."""
    x = F.interpolate(images_glance, (self.glance_size, self.glance_size),
                      mode="bilinear")
    g = self.glance_size
    return x.view(-1, self.glance, 3, g, g).permute(0, 2, 1, 3, 4)

  def glance_pass(self, images_glance):
    """The glance X3D and its per-frame head on [B, G*3, S, S]: (the X3D
    head's logits [B, C], the maps [B, G*F, 5, 5], the per-frame features
    [B*G, F], the per-frame logits [B, G, C])."""
    logit_g, maps_g, feat_g = self.global_CNN.get_featmap(
        self.glance_clip(images_glance))
    b = logit_g.shape[0]
    maps_g = maps_g.permute(0, 2, 1, 3, 4).reshape(
        b, self.glance * self.dim, MAP_SIDE, MAP_SIDE)
    feat_g = feat_g.permute(0, 2, 1).reshape(-1, self.dim)
    return (logit_g, maps_g, feat_g,
            self.global_CNN_head(feat_g).view(b, self.glance, -1))

  def spatial_aux(self, maps_g, action):
    """``aux_head`` on the action's region of the glance maps: [B, C]."""
    cut = ref_uni.deformable_patches(maps_g, action, self.map_patch,
                                     MAP_SIDE, self.patch)
    return self.aux_head(cut.view(-1, self.glance, self.dim, self.map_patch,
                                  self.map_patch).mean(dim=[1, 3, 4]))

  def focus_pass(self, images_input, indices, actions):
    """The focus X3D and its per-frame head on each action's patches of the
    selected candidates, all actions in one batch (its batch statistics
    over all): (X3D head logits [A, B, C], mean per-frame logits [A, B,
    C])."""
    b, s, k, p = indices.shape[0], self.frame_size, self.focus, self.patch
    frames = images_input.view(b, self.segments, 3, s, s)
    chosen = frames[torch.arange(b).unsqueeze(1), indices].reshape(
        b, k * 3, s, s)
    patches = torch.cat([ref_uni.deformable_patches(chosen, a, p, s, p)
                         for a in actions])
    clip = patches.view(-1, k, 3, p, p).permute(0, 2, 1, 3, 4)
    logit_l, _, feat_l = self.local_CNN.get_featmap(clip)
    feat_l = feat_l.permute(0, 2, 1).reshape(-1, self.dim)
    local = self.local_CNN_head(feat_l).view(len(actions), b, k, -1).mean(2)
    return logit_l.view(len(actions), b, -1), local

  def forward(self, images_glance, images_input):
    """Test mode: (prediction, glance-only logits, mean focus frame logits,
    spatial aux logits, action, the selected candidates [B, K])."""
    logit_g, maps_g, feat_g, frame_logits = self.glance_pass(images_glance)
    _, weights_t = self.temporal_policy(feat_g)
    aux = self.spatial_aux(maps_g, self.spatial_policy(maps_g))
    indices = ref_uni.policy_sample_indices(weights_t, self.segments,
                                            self.glance, self.focus)
    action = self.spatial_policy(maps_g)
    logit_l, local = self.focus_pass(images_input, indices, [action])
    return (logit_g + logit_l[0], frame_logits.mean(1), local[0], aux,
            action, indices)

  def train_forward(self, images_glance, images_input, frame_draws,
                    random_positions, mc_removed):
    """``forward`` in training mode, every random draw given.

    Args:
      images_glance: [B, G*3, S, S].
      images_input: [B, N, 3, S, S] the candidates.
      frame_draws: [B, K] (``torch.rand_like(threshold)`` of
        ``policy_sample_indices``).
      random_positions: [B, 2] (the first two columns of
        ``torch.rand_like(action_2)``).
      mc_removed: ``MCSampleFeature``'s removals [B, S, T1, G], or a
        function of the detached weights that draws them.

    Returns:
      A dict (the keys ``torch_train_uni_tsm.official_losses`` reads):
      ``glance_avg``, ``temporal_logits``, ``spatial_logits``,
      ``spatial_actions`` (``action_3``), ``weights``, ``mc_removed``,
      ``focus_indices`` and ``branches``: the random position's
      (``action_1``), then the policy's (``action_2``), each with
      ``logits``, ``focus_avg`` and ``focus_actions``.
    """
    logit_g, maps_g, feat_g, frame_logits = self.glance_pass(images_glance)
    maps = maps_g.detach()
    w, w_t = self.temporal_policy(feat_g.detach())
    removed = mc_removed(w.detach()) if callable(mc_removed) else mc_removed
    action_3 = self.spatial_policy(maps)
    res = dict(glance_avg=frame_logits.mean(1), weights=w,
               mc_removed=removed,
               temporal_logits=ref_uni.mc_sample_logits(
                   frame_logits.detach(), w, removed),
               spatial_actions=action_3,
               spatial_logits=self.spatial_aux(maps, action_3))
    indices = ref_uni.policy_sample_indices(w_t.detach(), self.segments,
                                            self.glance, self.focus,
                                            frame_draws)
    res["focus_indices"] = indices
    action_2 = self.spatial_policy(maps)        # again (BN updated)
    fixed = (self.patch - REGION_MIN) / (REGION_MAX - REGION_MIN)
    positions = random_positions.to(maps.dtype)
    action_1 = torch.cat([positions, torch.full_like(positions, fixed)], 1)
    actions = (action_1, action_2)
    logit_l, local = self.focus_pass(images_input, indices,
                                     [a.detach() for a in actions])
    res["branches"] = [dict(logits=logit_g + logit_l[i], focus_avg=local[i],
                            focus_actions=a) for i, a in enumerate(actions)]
    return res


def make_uni_model(seed, classes, segments, glance, focus, frame_size,
                   glance_size, patch, spatial_hidden, temporal_hidden,
                   factors, dropout=0.5):
  """A random, calibrated ``AdaFocusX3D`` (test mode; ``dropout`` its
  heads')."""
  torch.manual_seed(seed)
  model = AdaFocusX3D(classes, segments, glance, focus, frame_size,
                      glance_size, patch, spatial_hidden, temporal_hidden,
                      factors, dropout)
  rng = np.random.default_rng(seed + 10)
  calib = ref_v2.random_frames(rng, (4, segments, 3, frame_size,
                                     frame_size))
  glance_frames = calib[:, :glance].reshape(4, glance * 3, frame_size,
                                            frame_size)
  c = (frame_size - patch) // 2
  crops = calib[:, :focus, :, c:c + patch, c:c + patch].permute(0, 2, 1, 3, 4)
  randomise(model.global_CNN, model.glance_clip(glance_frames), seed)
  randomise(model.local_CNN, crops.contiguous(), seed + 1)
  for i, head in enumerate((model.global_CNN_head, model.local_CNN_head,
                            model.aux_head)):
    ref.randomise(head, None, seed + 2 + i)
  with torch.no_grad():
    _, maps, feats = model.global_CNN.get_featmap(
        model.glance_clip(glance_frames))
  maps = maps.permute(0, 2, 1, 3, 4).reshape(4, -1, MAP_SIDE, MAP_SIDE)
  feats = feats.permute(0, 2, 1).reshape(-1, model.dim)
  ref_uni.randomise_any(model.spatial_policy, lambda m: m(maps), seed + 5)
  ref_uni.randomise_any(model.temporal_policy, lambda m: m(feats), seed + 6)
  model.temporal_policy.Tconv[-1].weight.data *= ref_uni.TEMPORAL_GAIN
  model.eval()
  return model


def case_uni_x3d(out: str, name: str, seed: int = 0, batch: int = 2,
                 classes: int = 5, segments: int = 8, glance: int = 4,
                 focus: int = 4, frame_size: int = 224,
                 glance_size: int = 160, patch: int = 128,
                 spatial_hidden: int = 8, temporal_hidden: int = 8,
                 **factors) -> None:
  """A random Uni-AdaFocus-X3D model: its file and test-mode outputs."""
  model = make_uni_model(seed, classes, segments, glance, focus, frame_size,
                         glance_size, patch, spatial_hidden, temporal_hidden,
                         factors)
  rng = np.random.default_rng(seed + 20)
  frames = ref_v2.random_frames(rng, (batch, segments, 3, frame_size,
                                      frame_size))
  glance_frames = ref_v2.random_frames(rng, (batch, glance, 3, frame_size,
                                             frame_size))
  with torch.no_grad():
    outputs = model(glance_frames.reshape(batch, -1, frame_size, frame_size),
                    frames)
  ref_uni.save_checkpoint(model, os.path.join(out, f"{name}.pth.tar"))
  keys = ("prediction", "glance_only", "focus_frames", "spatial_aux",
          "action", "indices")
  arrays = {k: v.detach().numpy() for k, v in zip(keys, outputs)}
  arrays["regions"] = ref_uni.regions(outputs[4], patch, frame_size,
                                      patch).numpy()
  np.savez(os.path.join(out, f"{name}.npz"),
           frames=np.moveaxis(frames.numpy(), 2, -1),
           glance_frames=np.moveaxis(glance_frames.numpy(), 2, -1),
           **arrays)


CASES = {"x3d": case_x3d, "uni_x3d": case_uni_x3d}


if __name__ == "__main__":
  ref.main(cases=CASES)

"""PyTorch re-creation of the official Uni-AdaFocus-TSM model, for parity
tests.

Run in the torch interpreter, like ``torch_reference_uni.py`` (whose
functions, policies and random initialisation it reuses):

  python tests/convert/torch_reference_uni_tsm.py --spec=SPEC.json --out=DIR

Written anew from LeapLabTHU/Uni-AdaFocus @ 8846488, folder
"Uni-AdaFocus-TSM with Experiments on Sth-Sth V1&V2 and Jester"
(docs/METHOD.md V2-11.4, V2-11.8): ``archs/uni_adafocus_tsm.py``
(``SpatialPolicy``: its last convolution spans the G glance maps, one
action per video; ``TemporalPolicy``, ``get_patch_grid_scalexy``,
``policy_sample_indices``, ``MCSampleFeature`` as the ActivityNet
family's, ``torch_reference_uni.py``; ``AdaFocus.forward`` in both modes ->
``AdaFocus.forward``) and ``ops/models.py`` (``TSN``: the backbone's
ImageNet classifier replaced by a dropout, ``new_fc`` on the detached
feature, ``new_new_fc`` on the feature, each averaged over the TSN's
frames), ``ops/temporal_shift.py`` (``blockres`` shift of the ResNet-50,
shifted expanded residual blocks of ``archs/mobilenet_v2.py``), the
backbones of ``torch_reference.py``. The glance net's pooled feature is
``mean(3).mean(2)`` of its map, as tonylins' ``forward``.

Module names are the official ones: ``state_dict()`` keys are the official
checkpoint's with the ``module.`` prefix. Case ``uni_tsm`` saves
``<name>.pth.tar`` (``main.py``'s ``save_checkpoint``: ``epoch``, ``arch``,
``state_dict``, ``optimizer``, ``best_prec1``, ``scaler``) and
``<name>.npz`` (random glance frames and candidates, the test-mode outputs).
Spatial arrays are NHWC. Batch norms get random, calibrated running
statistics, so the selected frames and the region differ from video to
video.

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np
import torch
from torch import nn

import torch_reference as ref
import torch_reference_uni as uni
import torch_reference_v2 as ref_v2
from torch_reference import MobileNetV2, ResNet50

GLANCE_DIM, FOCUS_DIM = uni.GLANCE_DIM, uni.FOCUS_DIM
MAP_SIDE, STRIDE = uni.MAP_SIDE, uni.STRIDE
# The calibration's videos (batch norms in training mode need several).
CALIBRATION_VIDEOS = 2


class SpatialPolicy(nn.Module):
  """``spatial_policy`` of the TSM family: 3D convolutions over the G
  glance maps (encoder indices 0, 1, 3, 4, 6, 7, 9 hold weights), the last
  spanning all G of them: 4 sigmoid outputs a video."""

  def __init__(self, channels: int, hidden: int, glance: int):
    super().__init__()
    self.encoder = uni.spatial_encoder(channels, hidden, glance, MAP_SIDE)
    self.glance = glance

  def forward(self, maps):
    """[B, G*C, 7, 7] frame-stacked glance maps -> [B, 4]."""
    b, gc, h, w = maps.shape
    volume = maps.reshape(b, self.glance, gc // self.glance, h, w)
    return self.encoder(volume.transpose(1, 2)).reshape(b, 4)


def tsn(backbone: nn.Module, head: str, dim: int, classes: int,
        dropout: float) -> ref_v2.TSN:
  """``TSN``: ``base_model`` with its ImageNet head (``head``) a dropout,
  ``new_fc`` and ``new_new_fc``."""
  setattr(backbone, head, nn.Dropout(dropout))
  return ref_v2.TSN(backbone, dim, classes)


class AdaFocus(nn.Module):
  """Uni-AdaFocus-TSM, official module names (``archs/uni_adafocus_tsm.py``).
  """

  def __init__(self, classes: int, glance: int, focus: int, candidates: int,
               patch: int, spatial_hidden: int = 128,
               temporal_hidden: int = 64, frame_size: int = 224,
               dropout: float = 0.5):
    super().__init__()
    assert -(-frame_size // STRIDE) == MAP_SIDE, "the policy needs 7x7 maps"
    mbv2 = MobileNetV2(uni.IMAGENET_CLASSES, flat=True)
    ref.shift_mobilenet(mbv2, glance)
    resnet = ResNet50(uni.IMAGENET_CLASSES)
    ref.shift_resnet(resnet, focus)
    self.global_CNN = tsn(mbv2, "classifier", GLANCE_DIM, classes, dropout)  # pylint: disable=invalid-name
    self.local_CNN = tsn(resnet, "fc", FOCUS_DIM, classes, dropout)  # pylint: disable=invalid-name
    self.aux_fc = nn.Linear(GLANCE_DIM, classes)
    self.spatial_policy = SpatialPolicy(GLANCE_DIM, spatial_hidden, glance)
    self.temporal_policy = uni.TemporalPolicy(GLANCE_DIM, temporal_hidden,
                                              glance)
    self.glance, self.focus, self.candidates = glance, focus, candidates
    self.patch, self.frame_size = patch, frame_size

  def glance_net(self, frames):
    """``global_CNN(..., glance=True)`` on [B*G, 3, S, S]: the maps and the
    (dropped) pooled features."""
    base = self.global_CNN.base_model
    fmap = base.features(frames)
    return fmap, base.classifier(fmap.mean(3).mean(2))

  def focus_net(self, patches):
    """``local_CNN`` on [n, K*3, P, P]: (the dropped features [n*K, 2048],
    ``new_fc`` logits [n, K, C], ``new_new_fc`` logits [n, K, C])."""
    base, p = self.local_CNN.base_model, self.patch
    feats = base.fc(base.get_featmap(patches.reshape(-1, 3, p, p)).flatten(1))
    n = patches.shape[0]
    return (feats, self.local_CNN.new_fc(feats.detach()).view(n, self.focus,
                                                              -1),
            self.local_CNN.new_new_fc(feats).view(n, self.focus, -1))

  def forward(self, glance, candidates, frame_draws=None,
              random_positions=None, mc_removed=None) -> Dict:
    """``AdaFocus.forward`` on glance frames [B, G, 3, S, S] and candidates
    [B, N, 3, S, S].

    Training mode needs ``frame_draws`` [B, K] (``torch.rand_like(
    threshold)``) and ``random_positions`` [B, 2] (the first two columns of
    ``torch.rand_like(action_2)``). ``mc_removed`` is the masks of
    ``mc_sample_logits`` or a function of the detached weights that draws
    them.

    Returns a dict of [B, ...] tensors and ``branches``: the policy's
    region at test; the random one, then the policy's, in training.
    """
    b, g, _, s, _ = glance.shape
    k, p, training = self.focus, self.patch, self.training
    fmap, feat = self.glance_net(glance.flatten(0, 1))
    glance_logits = self.global_CNN.new_fc(feat.detach()).view(b, g, -1)
    glance_aux = self.global_CNN.new_new_fc(feat).view(b, g, -1)
    maps = fmap.reshape(b, g * fmap.shape[1], *fmap.shape[2:])
    w, w_t = self.temporal_policy(feat.detach())
    removed = mc_removed(w.detach()) if callable(mc_removed) else mc_removed
    action_3 = self.spatial_policy(maps.detach())
    grid = p // STRIDE
    aux = uni.deformable_patches(maps.detach(), action_3, grid, MAP_SIDE, p)
    res = dict(glance_map=fmap.view(b, g, *fmap.shape[1:]),
               glance_pooled=feat.view(b, g, -1), glance_logits=glance_logits,
               glance_aux_logits=glance_aux,
               glance_final=glance_logits.mean(1),
               glance_avg=glance_aux.mean(1), weights=w, weights_t=w_t,
               mc_removed=removed,
               temporal_logits=uni.mc_sample_logits(glance_aux.detach(), w,
                                                    removed),
               spatial_actions=action_3,
               spatial_logits=self.aux_fc(aux.view(
                   b, g, GLANCE_DIM, grid, grid).mean((1, 3, 4))))
    u = frame_draws if training else None
    f_idx = uni.policy_sample_indices(w_t.detach(), candidates.shape[1], g,
                                      k, u)
    res["focus_indices"] = f_idx
    images = candidates[torch.arange(b).unsqueeze(1), f_idx].reshape(
        b, k * 3, s, s)
    actions = [self.spatial_policy(maps.detach())]    # again (BN updated)
    if training:
      fixed = (p - uni.REGION_MIN) / (uni.REGION_MAX - uni.REGION_MIN)
      positions = random_positions.to(glance.dtype)
      actions.insert(0, torch.cat([positions, torch.full_like(positions,
                                                              fixed)], 1))
    patches = torch.cat([uni.deformable_patches(images, a.detach(), p, s, p)
                         for a in actions])
    feats, focus_logits, focus_aux = self.focus_net(patches)
    res["branches"] = []
    for i, action in enumerate(actions):
      part = slice(i * b, (i + 1) * b)
      res["branches"].append(dict(
          focus_actions=action, regions=uni.regions(action, p, s, p),
          patches=patches[part].view(b, k, 3, p, p),
          focus_features=feats.view(-1, k, FOCUS_DIM)[part],
          focus_logits=focus_logits[part],
          focus_avg=focus_aux[part].mean(1),
          logits=res["glance_final"] + focus_logits[part].mean(1)))
    return res


def calibrate(model: AdaFocus, seed: int) -> None:
  """Random weights, batch-norm statistics calibrated on random glance
  frames and P x P focus frames (``torch_reference_uni.calibrate_uni``)."""
  g, k, p, s = model.glance, model.focus, model.patch, model.frame_size
  n = CALIBRATION_VIDEOS
  glance = ref_v2.random_frames(np.random.default_rng(seed + 10),
                                (n, g, 3, s, s)).flatten(0, 1)
  crops = ref_v2.random_frames(np.random.default_rng(seed + 11),
                               (n, k, 3, p, p)).flatten(0, 1)
  ref_v2.randomise_normalised(model.global_CNN.base_model,
                              lambda m: m.get_featmap(glance), seed)
  ref_v2.randomise_normalised(model.local_CNN.base_model,
                              lambda m: m.get_featmap(crops), seed + 1)
  for i, head in enumerate((model.global_CNN.new_fc,
                            model.global_CNN.new_new_fc, model.aux_fc,
                            model.local_CNN.new_fc,
                            model.local_CNN.new_new_fc)):
    ref.randomise(head, None, seed + 2 + i)
  model.eval()
  with torch.no_grad():
    fmap, pooled = model.glance_net(glance)
  maps = fmap.reshape(n, g * GLANCE_DIM, *fmap.shape[2:])
  uni.randomise_any(model.spatial_policy, lambda m: m(maps), seed + 7)
  uni.randomise_any(model.temporal_policy, lambda m: m(pooled), seed + 8)
  model.temporal_policy.Tconv[-1].weight.data *= uni.TEMPORAL_GAIN
  model.eval()


def make_model(seed: int = 0, glance_segments: int = 3,
               focus_segments: int = 2, segments: int = 6,
               frame_size: int = 224, patch: int = 128, classes: int = 5,
               spatial_hidden: int = 128, temporal_hidden: int = 64,
               dropout: float = 0.5) -> AdaFocus:
  """A random, calibrated model (test mode) of the spec's sizes
  (``segments``: the candidates N)."""
  torch.manual_seed(seed)
  model = AdaFocus(classes, glance_segments, focus_segments, segments, patch,
                   spatial_hidden, temporal_hidden, frame_size, dropout)
  calibrate(model, seed)
  return model


def save_checkpoint(model: nn.Module, path: str) -> None:
  """The official file (``main.py``'s ``save_checkpoint``): ``epoch``,
  ``arch``, ``state_dict`` (``module.``), ``optimizer`` (made up: training
  state a converter skips), ``best_prec1``, ``scaler``."""
  ref_v2.save_state_dict(
      model, path, epoch=50, arch="resnet50", best_prec1=50.5,
      optimizer=ref._fake_optimizer_state(  # pylint: disable=protected-access
          list(model.temporal_policy.parameters())),
      scaler={"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
              "growth_interval": 2000, "_growth_tracker": 0})


def inputs(model: AdaFocus, seed: int, batch: int, dtype):
  """Random glance frames [B, G, 3, S, S] and candidates [B, N, ...]."""
  rng = np.random.default_rng(seed)
  s = model.frame_size
  glance = ref_v2.random_frames(rng, (batch, model.glance, 3, s, s))
  candidates = ref_v2.random_frames(rng, (batch, model.candidates, 3, s, s))
  return glance.to(dtype), candidates.to(dtype)


def case_uni_tsm(out: str, name: str, seed: int = 0, batch: int = 2,
                 mc_samples: int = 4, dtype: str = "float32",
                 **sizes) -> None:
  """The model in test mode: ``<name>.pth.tar`` and ``<name>.npz``.

  ``mc_samples``: S Monte-Carlo draws (128 officially) for
  ``temporal_logits``; ``dtype``: ``float32``, or ``float64`` (the same
  weights and frames in double, the exact outputs); ``sizes``:
  ``make_model``'s.
  """
  model = make_model(seed, **sizes)
  cast = torch.float64 if dtype == "float64" else torch.float32
  model.to(cast)
  glance, candidates = inputs(model, seed, batch, cast)
  with torch.no_grad():
    res = model(glance, candidates, mc_removed=uni.removed_drawer(
        seed, mc_samples, model.glance))
  branch = res.pop("branches")[0]
  save_checkpoint(model, os.path.join(out, f"{name}.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"), **uni.arrays(dict(
      res, glance_frames=glance, focus_frames=candidates, **branch)))


CASES = {"uni_tsm": case_uni_tsm}


if __name__ == "__main__":
  ref.main(cases=CASES)

"""The PyTorch re-creations of the reference V1 and V2 models, timed on
request.

Runs in the torch interpreter of the parity tests (tests/convert: torch
cannot live beside TensorFlow), driven over a pipe by
``benchmarks/inference.py --torch`` (V1) or ``benchmarks/v2_vs_official.py``
(V2), so that both implementations are timed in one run with their calls
alternating:

  python benchmarks/torch_worker.py --family=v1 --frames=16 \
      --frame_size=224 --patch_size=128 --num_classes=200 --threads=2
  python benchmarks/torch_worker.py --family=v2 --frames=16 \
      --frame_size=224 --patch_size=128 --num_classes=200 \
      --policy_hidden=2048 --hidden=4096 --policy_conv=64 \
      --save=official_v2.pth.tar

The model is built from ``tests/convert/torch_reference.py``'s modules (the
reference's module layout: torchvision-0.8 MobileNetV2 glance, ResNet-50
focus, GRU classifier, the PPO actor-critic) with its random weights and
calibrated batch norms, and run as the reference's stage-3 evaluation does:
the glance over every frame in one call, then frame by frame the policy's
greedy action (GRU state carried), the patch cut at it, the focus network
on the patch; the classifier GRU over the fused features and a softmax at
every step.

``--family=v2``: the official AdaFocusV2 model of the ActivityNet family as
``tests/convert/torch_reference_v2.py`` re-creates it (official module
names; MobileNetV2 glance, the recurrent policy's continuous positions,
the differentiable patch sampler, ResNet-50 focus, the frame-exit MLP
classifier), random weights with batch-norm statistics calibrated on random
clips, run as the official test mode does (every frame's glance in one
call, the policy over the clip, every patch in one focus call). With
``--save``, its state dict is written in the official checkpoint layout
first, so that ``adafocus-convert`` gives the TensorFlow side the same
weights.

Protocol: one JSON object per line on stdin, one answer per line on stdout.
  {"op": "predict", "batch": B}  -> {"seconds": s} one timed call (the
                                    first call of a batch size is a warm-up,
                                    run before the timed one)
  {"op": "peak", "size": n}      -> {"gmacs": g} n x n float32 matmul peak
  {"op": "quit"}
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests", "convert"))
import torch_reference as ref  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_reference_v2 as ref_v2  # pylint: disable=g-import-not-at-top,wrong-import-position


class ReferenceV1(torch.nn.Module):
  """Glance, policy, focus and classifier of the reference V1 model."""

  def __init__(self, args):
    super().__init__()
    s, p, c = args.frame_size, args.patch_size, args.num_classes
    self.frame_size, self.patch_size = s, p
    self.glancer = ref.MobileNetV2(c)
    ref.randomise(self.glancer, lambda m: m.get_featmap(
        torch.randn(4, 3, s, s)), 0)
    self.focuser = ref.ResNet50(c)
    ref.randomise(self.focuser, lambda m: m.get_featmap(
        torch.randn(4, 3, p, p)), 1)
    side = -(-s // 32)
    self.policy = ref.ActorCritic(1280, 1280 * side ** 2, args.num_actions,
                                  args.policy_hidden, args.policy_conv)
    ref.randomise(self.policy, None, 2)
    self.classifier = ref.RecurrentClassifier(1280 + 2048, args.hidden, c)
    ref.randomise(self.classifier, None, 3)
    self.grid = int(round(args.num_actions ** 0.5))

  @torch.no_grad()
  def forward(self, frames):
    """Step probabilities [B, T, C] of clips [B, T, 3, S, S]."""
    b, t = frames.shape[:2]
    s, p = self.frame_size, self.patch_size
    fmap, pooled = self.glancer.get_featmap(frames.reshape(b * t, 3, s, s))
    fmap = fmap.reshape(b, t, *fmap.shape[1:])
    pooled = pooled.reshape(b, t, -1)
    h = torch.zeros(1, b, self.policy.hidden)
    feats = []
    for i in range(t):
      state = self.policy.state_encoder(fmap[:, i])
      out, h = self.policy.gru(state.view(1, b, -1), h)
      action = self.policy.actor(out[0]).argmax(-1)
      pos = torch.stack([action // self.grid, action % self.grid], -1)
      offsets = torch.floor(pos.float() / (self.grid - 1) * (s - p)).int()
      patches = torch.stack([f[:, y:y + p, x:x + p] for f, (y, x) in
                             zip(frames[:, i], offsets.tolist())])
      feats.append(self.focuser.get_featmap(patches).flatten(1))
    fused = torch.cat([pooled, torch.stack(feats, 1)], -1)
    return torch.softmax(self.classifier(fused), -1)


class ReferenceV2(torch.nn.Module):
  """The official AdaFocusV2 model (test mode), step probabilities out."""

  def __init__(self, args):
    super().__init__()
    s, t = args.frame_size, args.frames
    self.net = ref_v2.AdaFocusV2(args.num_classes, t, args.patch_size, s,
                                 args.policy_hidden, args.hidden,
                                 args.policy_conv)
    ref_v2.calibrate_v2(self.net, ref_v2.random_frames(
        np.random.default_rng(0), (2, t, 3, s, s)), 0)

  @torch.no_grad()
  def forward(self, frames):
    return torch.softmax(self.net(frames)["logits"], -1)


MODELS = {"v1": ReferenceV1, "v2": ReferenceV2}


def matmul_peak(n, repeats=5):
  a, b = torch.randn(n, n), torch.randn(n, n)
  torch.mm(a, b)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    torch.mm(a, b)
    times.append(time.perf_counter() - start)
  return n ** 3 / statistics.median(times) / 1e9


def main():
  parser = argparse.ArgumentParser()
  for name, default in (("frames", 16), ("frame_size", 224),
                        ("patch_size", 128), ("num_classes", 200),
                        ("num_actions", 49), ("hidden", 1024),
                        ("policy_hidden", 1024), ("policy_conv", 32),
                        ("threads", 2)):
    parser.add_argument(f"--{name}", type=int, default=default)
  parser.add_argument("--family", choices=sorted(MODELS), default="v1")
  parser.add_argument("--save", default="", help="v2: write the model's "
                      "state dict here in the official checkpoint layout")
  args = parser.parse_args()
  if args.save and args.family != "v2":
    parser.error("--save writes the official V2 layout: --family=v2 only")
  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(1)
  model = MODELS[args.family](args).eval()
  if args.save:
    ref_v2.save_state_dict(model.net, args.save)
  inputs = {}
  print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
  for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "quit":
      break
    if req["op"] == "peak":
      print(json.dumps({"gmacs": matmul_peak(req["size"])}), flush=True)
      continue
    b = req["batch"]
    if b not in inputs:
      rng = np.random.default_rng(b)
      inputs[b] = torch.from_numpy(rng.standard_normal(
          (b, args.frames, 3, args.frame_size, args.frame_size),
          dtype=np.float32))
      model(inputs[b])  # warm-up
    start = time.perf_counter()
    model(inputs[b])
    print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
  main()

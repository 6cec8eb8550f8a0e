"""A PyTorch re-creation of the official AdaFocus (V1) training steps.

Run in the torch interpreter, like ``torch_reference.py`` (whose modules,
with the official module names, it trains):

  python tests/convert/torch_train_v1.py --spec=SPEC.json --out=DIR

It follows, line for line in meaning, the official code of
blackfeather-wang/AdaFocus @ 8c0f8d2, folder "Experiments on ActivityNet,
FCVID and Mini-Kinetics", for the supervised stages 0, 1 and 3 (its
``train_stage``):

  * ``main_dist.py``, ``main_worker``: the optimizer of each stage,
    ``torch.optim.SGD`` with ``lr=0``, ``momentum``, ``weight_decay`` and
    one parameter group per module: stage 0 ``glancer``, ``focuser``,
    ``classifier``; stage 1 ``focuser``, ``classifier``; stage 3
    ``classifier`` (``OPTIMIZER_GROUPS``);
  * ``basic_tools/utils.py``, ``adjust_learning_rate`` (``lr_type=cos``),
    once per epoch: ``0.5 lr (1 + cos(pi epoch / epochs))`` with
    ``backbone_lr`` for the glancer's and focuser's groups and ``fc_lr``
    for the classifier's, and ``weight_decay`` in every group;
  * ``main_dist.py``, ``train``: ``model.train()`` then ``GFV.train_mode``
    (``models/gfv_net.py``: stage 0 everything in training mode; stage 1
    the glancer in evaluation mode; stage 3 the glancer and the focuser,
    policy included, in evaluation mode); ``zero_grad``, the stage's
    forward and loss, ``backward``, ``step``:
      - stage 0 (``backbone_pred=True``): ``Glancer.predict`` (MobileNetV2's
        ``forward``: features, spatial mean, ``classifier`` = dropout and
        linear) or ``Focuser.predict`` (ResNet-50's ``forward``) on every
        whole frame, the per-frame logits averaged over the frames
        (``pred.mean(1)``), ``loss = CE(pred, target)``. Which backbone is
        ``pretrain_glancer``'s choice, one run each; the other's
        parameters get no gradient and SGD leaves them alone, so the two
        runs are taken here as one step on the sum of the two losses (the
        same update of each backbone);
      - stage 1 (``GFV.forward``'s last branch): the glancer on the frames
        under ``no_grad`` (``Glancer.forward``: the feature map and its
        spatial mean), the focuser on a random patch of every frame
        (``Focuser.forward`` with ``random``: ``PatchSampler.sample``,
        ``ResNet.get_featmap(pooled=True)``), the classifier
        (``RecurrentClassifier.forward``: a GRU from a zero state over
        concat(glance feature, focus feature), dropout, ``fc``);
        ``loss = CE(logits [B*T, C], target repeated T times)``;
      - stage 3 (``one_step=True``): the glancer under ``no_grad``, then
        frame by frame under ``no_grad`` the policy's most probable action
        (``PPO.select_action`` -> ``ActorCritic.act`` with
        ``training=False``: ``action_probs.max(1)[1]``, the GRU state
        carried from a zero state), its patch (``_get_standard_action``:
        the float32 grid point (row, col) / (g - 1); ``models/utils.py``,
        ``get_patch``: the top-left pixel ``floor(action * (S - P))`` in
        float32) and the focuser's feature; then the classifier on the
        whole sequence, the loss as in stage 1;
  * ``models/utils.py``, ``random_crop``: a random patch's top-left pixel,
    ``y = np.random.randint(0, S - P)`` then ``x`` likewise, for each frame
    in turn (batch-major): the last position, S - P, is never drawn.
    Drawn so here and recorded.

The two-stream (Something-Something) model's stage 1 follows the folder
"Experiments on Something-Something V1&V2":

  * ``stage1.py``, ``train``: ``model.train()``, the glancer in evaluation
    mode; ``GFV.forward`` (``models/gfv_net.py``): under ``no_grad`` the
    glancer on every glance frame (the TSM MobileNetV2's ``get_featmap``:
    the feature map and the logits of its ``classifier`` on the spatial
    mean), the focuser's random patch of each video (``Focuser.forward``
    with ``random``: ``rand_index = torch.rand(B, 2)``, ``get_patch`` on
    the video's frames stacked on channels: one top-left pixel
    ``floor(rand * (S - P))`` for all its focus frames; drawn and
    recorded), ``TSN.forward(no_reshape=True)`` (the TSM ResNet-50 without
    its ``fc``) on every patch, ``GFV.dropout``, ``GFV.classifier`` (the
    focus head), and the prediction = the mean focus logits + the mean
    glance logits (``ConsensusModule('avg')``); ``loss = CE(pred,
    target)``;
  * ``stage1.py``, ``main_worker``, and ``basic_tools/utils.py``,
    ``adjust_learning_rate``: SGD over ``TSN.get_optim_policies()`` (five
    groups of the focus net: first conv weight, first conv bias, other
    weights, other biases, batch norms) and ``GFV.classifier``, ``lr=0``;
    ``adjust_learning_rate`` then sets ``param_groups[0]`` to
    ``backbone_lr`` and ``param_groups[1]`` to ``fc_lr`` (written for V1's
    two groups; the comments say "Glancer" and "LSTM"), so in the official
    run only the focus net's first convolution trains and every other
    group, the classifier included, keeps rate 0. Re-created here as the
    code's comments, its stage-1 command (``backbone_lr=0.00001
    fc_lr=0.01``) and the paper intend (docs/METHOD.md section 3): the
    focus net at ``backbone_lr``, the classifier at ``fc_lr``, weight decay
    everywhere (``adjust_learning_rate`` sets it in every group, ignoring
    ``decay_mult``).

Its stage 3 follows the same folder:

  * ``stage3.py``, ``train``: ``model.train()`` then the glancer, the
    focuser, its policy's ``policy`` and ``policy_old`` in evaluation mode
    (so the focus net's batch norms use, and keep, their running
    statistics); ``zero_grad``; under ``no_grad`` ``GFV.glance`` (the
    glancer's feature maps and logits of every glance frame);
    ``GFV.action_stage3`` (``video_div=1``): ``Focuser.forward`` with
    ``training=False``: ``PPO_Continuous.select_action`` ->
    ``policy_old.act`` (``models/ppo_continuous.py``) on the glance maps of
    all glance frames stacked on channels (frame-major), from a zero GRU
    state: the action is the actor's mean (sigmoid outputs, no sampling),
    used as is (``ppo_continuous``: no grid), and ``get_patch`` on the
    video's frames stacked on channels: the top-left pixel
    ``floor(mean * (S - P))`` for all its focus frames; then
    ``TSN.forward(no_reshape=True)`` on every patch (with gradient, the net
    in evaluation mode), ``GFV.dropout``, ``GFV.classifier`` (the focus
    head), the prediction = the mean focus logits + the mean glance logits;
    ``loss = CE(pred, target)``, ``backward``, ``step``;
  * ``stage3.py``, ``main_worker``: the optimizer as stage 1's (the focus
    net's five groups and ``GFV.classifier``, ``lr=0``), with the same
    quirk of ``adjust_learning_rate``; re-created, as for stage 1, by the
    code's intent: the focus net at ``backbone_lr`` -- 0 in the official
    command ``train_stage3.sh`` (``backbone_lr=0.``), so it stays as it is
    (its gradient is computed but no step moves it; the progress line
    prints "Focuser BackBone LR: 0.00") -- and the classifier at ``fc_lr``.

Dropout is switched off (p = 0) so that both sides compute the same thing
(the ActivityNet family's ``GFV.dropout`` is never applied; the two-stream
one is the focus head's). The official default ``amp: true`` (float16
autocast and a gradient scaler) is not re-created: float32 or float64
throughout. Each case saves ``<name>_before.pth.tar`` and
``<name>_after.pth.tar`` in the official layout
(``torch_reference.v1_checkpoint``: a stage-1 or stage-0 file without a
policy, a stage-3 file with one; ``torch_reference.something_checkpoint``:
likewise, stage 3's with its continuous policy)
and ``<name>.npz``: the chronological frames (NHWC: ``frames``, or
``glance_frames`` and ``focus_frames``), the labels, the patch offsets
(stage 1: the random ones drawn; stage 3: the policy's), every loss term,
the loss and each of our variable groups' gradient norm (``GROUPS``,
``SOMETHING_GROUPS``).

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

import torch_reference as ref
import torch_reference_v2 as ref_v2
import torch_train_v2

# ``main_dist.py``, ``main_worker``: the modules each stage's SGD trains,
# one parameter group each, and the rate ``adjust_learning_rate`` gives it.
OPTIMIZER_GROUPS = {0: (("glancer", "backbone"), ("focuser", "backbone"),
                        ("classifier", "fc")),
                    1: (("focuser", "backbone"), ("classifier", "fc")),
                    3: (("classifier", "fc"),)}
# Our variable groups (``training/supervised.trainable_groups``) as official
# modules. Stage 1's focuser holds ``net.fc``, which no stage-1 loss
# reaches: no gradient, and PyTorch's SGD skips it (our focus group is the
# backbone without its head).
GROUPS = {0: {"glance": ("glancer.net",), "focus": ("focuser.net",)},
          1: {"focus": ("focuser.net",), "classifier": ("classifier",)},
          3: {"classifier": ("classifier",)}}
# The same for the two-stream model's stage 1 (the focus head is
# ``GFV.classifier``; the glance net and its head are frozen).
SOMETHING_GROUPS = {"focus": ("focuser.net",), "classifier": ("classifier",)}
GLANCE_CHANNELS, FOCUS_CHANNELS = 1280, 2048


class GFV(nn.Module):
  """``models/gfv_net.py``'s ``GFV``: ``glancer``, ``focuser``,
  ``classifier`` (the "gru" one), official module names.

  Args:
    classes: C.
    hidden: the classifier GRU's units.
    frame_size: S.
    patch: P.
    policy: the focuser holds a PPO policy (``random_patch`` false).
    num_actions: the policy's grid.
    policy_hidden: the policy's width.
    policy_conv: the policy encoder's convolution channels.
  """

  def __init__(self, classes: int, hidden: int, frame_size: int, patch: int,
               policy: bool, num_actions: int, policy_hidden: int,
               policy_conv: int):
    super().__init__()
    self.glancer = ref.Wrapper(ref.MobileNetV2(classes))
    map_side = -(-frame_size // 32)
    holder = ref.PPOHolder(lambda: ref.ActorCritic(
        GLANCE_CHANNELS, GLANCE_CHANNELS * map_side ** 2, num_actions,
        policy_hidden, policy_conv)) if policy else None
    self.focuser = ref.Wrapper(ref.ResNet50(classes), holder)
    self.classifier = ref.RecurrentClassifier(GLANCE_CHANNELS
                                              + FOCUS_CHANNELS, hidden,
                                              classes)
    self.frame_size, self.patch, self.num_actions = (frame_size, patch,
                                                     num_actions)

  @property
  def holder(self):
    """The focuser's ``PPOHolder`` (``Focuser.policy``), or None."""
    return getattr(self.focuser, "policy", None)


def calibrate_v1(model: GFV, calib, seed: int) -> None:
  """Random weights and calibrated batch-norm statistics for a V1 model.

  Args:
    model: the model.
    calib: [N, T, 3, S, S] calibration clips (``random_frames``).
    seed: random seed.
  """
  flat = calib.flatten(0, 1)
  centre = (model.frame_size - model.patch) // 2
  crops = flat[..., centre:centre + model.patch, centre:centre + model.patch]
  ref_v2.randomise_normalised(model.glancer.net,
                              lambda m: m.get_featmap(flat), seed)
  ref_v2.randomise_normalised(model.focuser.net,
                              lambda m: m.get_featmap(crops), seed + 1)
  if model.holder is not None:
    ref.randomise(model.holder.policy, None, seed + 2)
    model.holder.sync()
  ref.randomise(model.classifier, None, seed + 3)
  model.eval()


def train_mode(model: GFV, stage: int) -> None:
  """``main_dist.py``'s ``model.train()`` then ``GFV.train_mode(args)``."""
  model.train()
  if stage in (1, 3):
    model.glancer.eval()
  if stage == 3:
    model.focuser.eval()     # its policy (and policy_old) included


def random_offsets(rs: np.random.RandomState, batch: int, frames: int,
                   frame_size: int, patch: int) -> np.ndarray:
  """``random_crop``'s top-left pixels, int [B, T, 2] (y, x).

  Args:
    rs: the draws' generator (``np.random``'s state).
    batch: B.
    frames: T.
    frame_size: S.
    patch: P.
  """
  out = np.empty((batch * frames, 2), np.int64)
  for i in range(batch * frames):
    out[i, 0] = rs.randint(0, frame_size - patch)
    out[i, 1] = rs.randint(0, frame_size - patch)
  return out.reshape(batch, frames, 2)


def standard_actions(num_actions: int) -> torch.Tensor:
  """``Focuser.standard_actions_set[num_actions]``: float32 [A, 2] (row,
  col) / (g - 1), row-major."""
  g = math.isqrt(num_actions)
  return torch.tensor([[i / (g - 1), j / (g - 1)] for i in range(g)
                       for j in range(g)], dtype=torch.float32)


def stage0_logits(model: GFV, frames):
  """Stage 0: each backbone's per-frame logits averaged over the frames.

  Args:
    model: the model, in training mode.
    frames: [B, T, 3, S, S].

  Returns:
    {"glance": [B, C] (``Glancer.predict``), "focus": [B, C]
    (``Focuser.predict``)}.
  """
  b, t, _, s, _ = frames.shape
  flat = frames.reshape(b * t, 3, s, s)
  _, pooled = model.glancer.net.get_featmap(flat)
  glance = model.glancer.net.classifier(pooled)
  focus = model.focuser.net.fc(model.focuser.net.get_featmap(flat).flatten(1))
  return {"glance": glance.view(b, t, -1).mean(1),
          "focus": focus.view(b, t, -1).mean(1)}


def _features(model: GFV, flat, offsets, pooled):
  """concat(glance feature, focus feature of the patch at ``offsets``)."""
  patches = ref.crop(flat, offsets.reshape(-1, 2), model.patch)
  local = model.focuser.net.get_featmap(patches).flatten(1)
  return torch.cat([pooled, local], 1)


def stage1_logits(model: GFV, frames, offsets):
  """Stage 1 (``GFV.forward``'s last branch): step logits [B*T, C].

  Args:
    model: the model, in stage 1's modes.
    frames: [B, T, 3, S, S].
    offsets: int [B, T, 2] the random patches' top-left pixels.
  """
  b, t, _, s, _ = frames.shape
  flat = frames.reshape(b * t, 3, s, s)
  with torch.no_grad():
    _, pooled = model.glancer.net.get_featmap(flat)
  feature = _features(model, flat, offsets, pooled).view(b, t, -1)
  return model.classifier(feature).reshape(b * t, -1)


def stage3_logits(model: GFV, frames):
  """Stage 3 (``GFV.forward`` with ``one_step``): step logits [B*T, C].

  Args:
    model: the model, in stage 3's modes.
    frames: [B, T, 3, S, S].

  Returns:
    (logits [B*T, C], the policy's offsets int [B, T, 2]).
  """
  b, t, _, s, _ = frames.shape
  flat = frames.reshape(b * t, 3, s, s)
  with torch.no_grad():
    fmap, pooled = model.glancer.net.get_featmap(flat)
    probs, _ = model.holder.policy_old.rollout(
        fmap.view(b, t, *fmap.shape[1:]))
    action = standard_actions(model.num_actions)[probs.argmax(-1)]
    offsets = torch.floor(action * (s - model.patch)).int()
    feature = _features(model, flat, offsets, pooled).view(b, t, -1)
  return model.classifier(feature).reshape(b * t, -1), offsets


def official_optimizer(model: GFV, stage: int, backbone_lr: float,
                       fc_lr: float, epoch: int, epochs: int,
                       momentum: float,
                       weight_decay: float) -> torch.optim.SGD:
  """The stage's SGD at ``epoch``'s rates (``main_worker``,
  ``adjust_learning_rate``)."""
  optimizer = torch.optim.SGD(
      [{"params": getattr(model, name).parameters()}
       for name, _ in OPTIMIZER_GROUPS[stage]], lr=0, momentum=momentum,
      weight_decay=weight_decay)
  cosine = 0.5 * (1 + math.cos(math.pi * epoch / epochs))
  rates = {"backbone": backbone_lr * cosine, "fc": fc_lr * cosine}
  for group, (_, rate) in zip(optimizer.param_groups,
                              OPTIMIZER_GROUPS[stage]):
    group["lr"] = rates[rate]
    group["weight_decay"] = weight_decay
  return optimizer


def _save(model: GFV, path: str) -> None:
  """The model in the official file layout (its ``optimizer`` entry a
  made-up one: the converter skips training state)."""
  torch.save(ref.v1_checkpoint(model.glancer, model.focuser,
                               model.classifier, model.holder), path)


def case_v1_train_step(out: str, name: str, stage: int = 1, seed: int = 0,
                       batch: int = 2, frames: int = 3, frame_size: int = 64,
                       patch: int = 32, classes: int = 5, hidden: int = 24,
                       num_actions: int = 49, policy_hidden: int = 20,
                       policy_conv: int = 32, backbone_lr: float = 5e-4,
                       fc_lr: float = 0.05, epoch: int = 0, epochs: int = 50,
                       momentum: float = 0.9, weight_decay: float = 1e-4,
                       dtype: str = "float32") -> None:
  """One official training step of stage 0, 1 or 3 of a random V1 model.

  Args:
    out: output directory.
    name: file stem.
    stage: 0, 1 or 3.
    seed: random seed.
    batch: B videos.
    frames: T.
    frame_size: S.
    patch: P.
    classes: C.
    hidden: the classifier GRU's units.
    num_actions: the policy's grid (stage 3).
    policy_hidden: the policy's width (stage 3).
    policy_conv: the policy encoder's channels (stage 3).
    backbone_lr: ``backbone_lr``.
    fc_lr: ``fc_lr``.
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``epochs``.
    momentum: SGD momentum.
    weight_decay: weight decay.
    dtype: ``float32``, or ``float64`` (every parameter, buffer and input
      in double; the weights are float32 values all the same, so that a
      float32 checkpoint of them is exact).
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = GFV(classes, hidden, frame_size, patch, stage == 3, num_actions,
              policy_hidden, policy_conv)
  calibrate_v1(model, ref_v2.random_frames(
      np.random.default_rng(seed + 10),
      (4, frames, 3, frame_size, frame_size)), seed)
  for module in model.modules():
    if isinstance(module, nn.Dropout):
      module.p = 0.0
  if dtype == "float64":
    model.double()
  _save(model, os.path.join(out, f"{name}_before.pth.tar"))
  x = ref_v2.random_frames(rng, (batch, frames, 3, frame_size, frame_size))
  x = x.to(torch.float64 if dtype == "float64" else torch.float32)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  offsets = random_offsets(np.random.RandomState(seed), batch, frames,
                           frame_size, patch)

  train_mode(model, stage)
  optimizer = official_optimizer(model, stage, backbone_lr, fc_lr, epoch,
                                 epochs, momentum, weight_decay)
  optimizer.zero_grad()
  criterion = nn.CrossEntropyLoss()
  if stage == 0:
    terms = {k: criterion(v, labels) for k, v in
             stage0_logits(model, x).items()}
  else:
    if stage == 1:
      logits = stage1_logits(model, x, torch.from_numpy(offsets))
    else:
      logits, policy_offsets = stage3_logits(model, x)
      offsets = policy_offsets.numpy()
    target = labels.view(batch, -1).expand(batch, frames).reshape(-1)
    terms = {"steps": criterion(logits, target)}
  loss = sum(terms.values())
  loss.backward()
  norms = torch_train_v2.group_norms(model, GROUPS[stage])
  optimizer.step()
  _save(model, os.path.join(out, f"{name}_after.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"),
           frames=ref._nchw_to_nhwc(x),  # pylint: disable=protected-access
           labels=labels.numpy(), offsets=offsets.astype(np.int32),
           loss=float(loss.detach()), norms=np.array(list(norms.values())),
           norm_names=np.array(list(norms)),
           **{f"term_{k}": float(v.detach()) for k, v in terms.items()})


class SomethingGFV(nn.Module):
  """The Something-Something ``GFV``: ``glancer`` (TSM MobileNetV2,
  tonylins' layout), ``focuser`` (a ``TSN`` whose ``base_model`` is the TSM
  ResNet-50 without its ``fc``), ``classifier`` (the focus head).

  Args:
    classes: C.
    glance_frames: Tg.
    focus_frames: Tf.
    patch: P.
    frame_size: S (the policy's observation size; with ``policy``).
    policy: the focuser holds the continuous PPO policy (``PPO_Continuous``
      with ``actorcritic_with_bn``; the encoder's 64 channels hard-coded).
    policy_hidden: the policy's width.
  """

  def __init__(self, classes: int, glance_frames: int, focus_frames: int,
               patch: int, frame_size: int = 64, policy: bool = False,
               policy_hidden: int = 16):
    super().__init__()
    mbv2 = ref.MobileNetV2(classes, flat=True)
    ref.shift_mobilenet(mbv2, glance_frames)
    self.glancer = ref.Wrapper(mbv2)
    resnet = ref.ResNet50(classes)
    ref.shift_resnet(resnet, focus_frames)
    feature_dim = GLANCE_CHANNELS * glance_frames
    map_side = -(-frame_size // 32)
    holder = ref.PPOHolder(lambda: ref.ActorCritic(
        feature_dim, feature_dim * map_side ** 2, 2, policy_hidden, 64,
        with_bn=True)) if policy else None
    # stage1.py drops the ResNet's fc: children()[:-1].
    self.focuser = ref.Wrapper(ref.TSN(nn.Sequential(
        *list(resnet.children())[:-1])), holder)
    self.classifier = nn.Linear(FOCUS_CHANNELS, classes)
    self.patch = patch

  @property
  def holder(self):
    """The focuser's ``PPOHolder``, or None."""
    return getattr(self.focuser, "policy", None)


def _save_something(model: SomethingGFV, path: str) -> None:
  """The model in the official file layout (stage 1's, or stage 3's with
  the policy)."""
  torch.save(ref.something_checkpoint(model.glancer, model.focuser,
                                      model.classifier, model.holder), path)


def something_stage1_logits(model: SomethingGFV, glance, focus, offsets):
  """Stage 1's prediction [B, C] (``GFV.forward``).

  Args:
    model: the model, in stage 1's modes.
    glance: [B, Tg, 3, S, S].
    focus: [B, Tf, 3, S, S].
    offsets: int [B, 2] each video's patch.
  """
  b, tg, _, s, _ = glance.shape
  tf_ = focus.shape[1]
  with torch.no_grad():
    _, pooled = model.glancer.net.get_featmap(glance.reshape(b * tg, 3, s, s))
    glance_logits = model.glancer.net.classifier(pooled).view(b, tg, -1)
  patches = ref.crop(focus.reshape(b, tf_ * 3, s, s), offsets, model.patch)
  local = model.focuser.net.base_model(patches.view(b * tf_, 3, model.patch,
                                                    model.patch))
  focus_logits = model.classifier(local.view(b, tf_, -1))
  return focus_logits.mean(1) + glance_logits.mean(1)


def something_stage3_logits(model: SomethingGFV, glance, focus):
  """Stage 3's prediction [B, C] (``GFV.glance``, ``GFV.action_stage3``).

  Args:
    model: the model, in stage 3's modes.
    glance: [B, Tg, 3, S, S].
    focus: [B, Tf, 3, S, S].

  Returns:
    (prediction [B, C], the policy's offsets int [B, 2]).
  """
  b, tg, _, s, _ = glance.shape
  tf_ = focus.shape[1]
  with torch.no_grad():
    fmap, pooled = model.glancer.net.get_featmap(
        glance.reshape(b * tg, 3, s, s))
    glance_logits = model.glancer.net.classifier(pooled).view(b, tg, -1)
    # policy_old.act(training=False): one step from a zero state on the
    # glance maps stacked on channels; the action is the actor's mean.
    mean, _ = model.holder.policy_old.rollout(
        fmap.view(b, 1, tg * fmap.shape[1], *fmap.shape[2:]))
    offsets = torch.floor(mean[:, 0] * (s - model.patch)).int()
  patches = ref.crop(focus.reshape(b, tf_ * 3, s, s), offsets, model.patch)
  local = model.focuser.net.base_model(patches.view(b * tf_, 3, model.patch,
                                                    model.patch))
  focus_logits = model.classifier(local.view(b, tf_, -1))
  return focus_logits.mean(1) + glance_logits.mean(1), offsets


def case_something_train_step(out: str, name: str, stage: int = 1,
                              seed: int = 0,
                              batch: int = 2, glance_frames: int = 4,
                              focus_frames: int = 4, frame_size: int = 64,
                              patch: int = 32, classes: int = 6,
                              backbone_lr: float = 1e-5, fc_lr: float = 0.01,
                              epoch: int = 0, epochs: int = 10,
                              momentum: float = 0.9,
                              weight_decay: float = 1e-4,
                              policy_hidden: int = 16,
                              dtype: str = "float32") -> None:
  """One stage-1 or stage-3 step of a random Something-Something model
  (module doc).

  Args:
    out: output directory.
    name: file stem.
    stage: 1 or 3.
    seed: random seed.
    batch: B videos.
    glance_frames: Tg.
    focus_frames: Tf.
    frame_size: S.
    patch: P.
    classes: C.
    backbone_lr: ``backbone_lr`` (the focus net's).
    fc_lr: ``fc_lr`` (the classifier's).
    epoch: the epoch whose rate the step takes.
    epochs: the cosine schedule's ``epochs``.
    momentum: SGD momentum.
    weight_decay: weight decay.
    policy_hidden: the policy's width (stage 3).
    dtype: ``float32`` or ``float64`` (as ``case_v1_train_step``).
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  model = SomethingGFV(classes, glance_frames, focus_frames, patch,
                       frame_size, stage == 3, policy_hidden)
  calib = np.random.default_rng(seed + 10)
  calib_g = ref_v2.random_frames(calib, (2, glance_frames, 3, frame_size,
                                         frame_size))
  calib_f = ref_v2.random_frames(calib, (2, focus_frames, 3, patch, patch))
  ref_v2.randomise_normalised(model.glancer.net, lambda m: m.get_featmap(
      calib_g.flatten(0, 1)), seed)
  ref_v2.randomise_normalised(model.focuser.net.base_model,
                              lambda m: m(calib_f.flatten(0, 1)), seed + 1)
  ref.randomise(model.classifier, None, seed + 2)
  if model.holder is not None:
    ref.randomise(model.holder.policy, None, seed + 3)
    model.holder.sync()
  model.eval()
  if dtype == "float64":
    model.double()
  wide = torch.float64 if dtype == "float64" else torch.float32
  _save_something(model, os.path.join(out, f"{name}_before.pth.tar"))
  glance = ref_v2.random_frames(rng, (batch, glance_frames, 3, frame_size,
                                      frame_size)).to(wide)
  focus = ref_v2.random_frames(rng, (batch, focus_frames, 3, frame_size,
                                     frame_size)).to(wide)
  labels = torch.from_numpy(rng.integers(0, classes, batch))
  offsets = torch.floor(torch.rand(batch, 2) * (frame_size - patch)).long()

  model.train()
  model.glancer.eval()
  if stage == 3:
    model.focuser.eval()    # its policy's policy and policy_old included
  cosine = 0.5 * (1 + math.cos(math.pi * epoch / epochs))
  optimizer = torch.optim.SGD(
      [{"params": model.focuser.net.parameters(), "lr": backbone_lr * cosine},
       {"params": model.classifier.parameters(), "lr": fc_lr * cosine}],
      lr=0, momentum=momentum, weight_decay=weight_decay)
  optimizer.zero_grad()
  if stage == 3:
    pred, offsets = something_stage3_logits(model, glance, focus)
  else:
    pred = something_stage1_logits(model, glance, focus, offsets)
  loss = nn.CrossEntropyLoss()(pred, labels)
  loss.backward()
  norms = torch_train_v2.group_norms(
      model, SOMETHING_GROUPS if stage == 1 else GROUPS[3])
  optimizer.step()
  _save_something(model, os.path.join(out, f"{name}_after.pth.tar"))
  np.savez(os.path.join(out, f"{name}.npz"),
           glance_frames=ref._nchw_to_nhwc(glance),  # pylint: disable=protected-access
           focus_frames=ref._nchw_to_nhwc(focus),  # pylint: disable=protected-access
           labels=labels.numpy(),
           offsets=offsets.numpy().astype(np.int32)[:, None],
           loss=float(loss.detach()), term_steps=float(loss.detach()),
           norms=np.array(list(norms.values())),
           norm_names=np.array(list(norms)))


CASES = {"v1_train_step": case_v1_train_step,
         "something_train_step": case_something_train_step}


if __name__ == "__main__":
  ref.main(cases=CASES)

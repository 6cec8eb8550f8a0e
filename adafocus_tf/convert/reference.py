"""What a reference checkpoint holds, and the architecture its tensors imply.

Checkpoint families (key structures of the reference code):

  * AdaFocus V1 (ActivityNet, FCVID, Mini-Kinetics; ``main_dist.py``): a
    dict with ``glancer`` (``Glancer.state_dict()``: ``net.features.*``, a
    torchvision-0.8 MobileNetV2, and its stage-0 head ``net.classifier.1``),
    ``focuser`` (``net.*``, a torchvision ResNet-50 with its stage-0 head
    ``net.fc``; from stage 2 on also the PPO's ``policy.policy.*`` and
    ``policy.policy_old.*``), ``fc`` (the classifier), ``policy``
    (``ActorCritic.state_dict()`` or None before stage 2), and training
    state: ``model_state_dict`` (all of the above again, under
    ``glancer.``, ``focuser.``, ``classifier.``), ``optimizer``,
    ``scaler``, ``epoch``, ``acc``, ``best_acc``.
  * AdaFocus Something-Something (``stage1.py``...): the same entries, but
    the glance net is TSM's (tonylins') MobileNetV2 with shifted blocks
    (``net.features.2.conv.0.net.weight``) and head ``net.classifier``;
    the focus net is a TSM ResNet-50 turned into a Sequential
    (``net.base_model.0.weight`` is conv1, ``net.base_model.4.0.conv1.net``
    layer1's first block); ``fc`` is the focus head itself (``weight``,
    ``bias``).
  * TSM (the temporal-shift-module repository's released models, the
    Something-Something backbones' starting point): ``{"state_dict":
    {"module.base_model.<backbone>...", "module.new_fc.weight", ...}}``.
  * AdaFocusV2 (docs/METHOD.md section V2-8): ``{"state_dict":
    {"module.global_CNN...", "module.local_CNN...", "module.policy_stn...",
    ...}}`` (a ``DataParallel`` model's state dict), either the
    ActivityNet-family model (``classifier.mlp.*``, recurrent
    ``policy_stn.gru``) or V2-TSM (``global_CNN.base_model.*``, the
    training dict's ``epoch``, ``optimizer``... beside it). ``v2.py``
    reads them.
  * Uni-AdaFocus (docs/METHOD.md V2-11.6): the same ``{"state_dict":
    {"module.global_CNN...", ...}, "epoch", "optimizer", "best_acc1"}``
    with the modules only it has: ``spatial_policy``, ``temporal_policy``,
    ``aux_fc``. The ActivityNet family (``global_CNN.features.*``, the
    pooling classifier ``classifier.global_mlp.*``) is read by ``uni.py``;
    the TSM one (``global_CNN.base_model.*``) by ``uni_tsm.py``.

The training state (optimizer, scaler, epoch, accuracies) is not
converted: a converted run starts its own optimizer if trained further.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from adafocus_tf.convert import checkpoint_file
from adafocus_tf.convert import errors
from adafocus_tf.convert.torch_pickle import CheckpointFormatError

ADAFOCUS = "adafocus"
TSM = "tsm"
ADAFOCUS_V2 = "adafocus_v2"
V1 = "v1"
SOMETHING = "something"
# AdaFocusV2 families (``ADAFOCUS_V2`` files).
V2 = "v2"
V2_TSM = "v2_tsm"
UNI_ADAFOCUS = "uni_adafocus"
# Uni-AdaFocus families (``UNI_ADAFOCUS`` files): ActivityNet's, and TSM's.
UNI = "uni"
UNI_TSM = "uni_tsm"
UNI_X3D = "uni_x3d"
# The key that makes a Uni-AdaFocus file an X3D one (SlowFast's X3D stem).
X3D_GLANCE_STEM = "global_CNN.s1.pathway0_stem."
# The DataParallel wrapper's key prefix (TSM and V2 files).
MODULE_PREFIX = "module."
# Top-level modules of a V2 model; any one of them makes a file a V2 one.
V2_MODULES = ("global_CNN", "global_CNN_fc", "local_CNN", "local_CNN_fc",
              "policy_stn", "classifier")
# Top-level modules only a Uni-AdaFocus model has (its others are V2's).
UNI_MODULES = ("spatial_policy", "temporal_policy", "aux_fc")
# Top-level entries of an AdaFocus checkpoint that hold weights.
WEIGHT_ENTRIES = ("glancer", "focuser", "fc", "policy")
# Entries that are training state, read but not converted.
TRAINING_STATE = ("optimizer", "scaler", "epoch", "acc", "best_acc")
MODEL_STATE = "model_state_dict"
# Where each weight entry sits inside ``model_state_dict``.
MODEL_STATE_PREFIXES = {"glancer": "glancer.", "focuser": "focuser.",
                        "fc": "classifier."}
POLICY_COPIES = ("policy.policy.", "policy.policy_old.")


@dataclasses.dataclass
class Checkpoint:
  """A reference checkpoint's weight entries.

  Attributes:
    path: the file.
    kind: ``adafocus``, ``tsm``, ``adafocus_v2`` or ``uni_adafocus``.
    family: ``v1`` or ``something`` (AdaFocus); for TSM files the backbone
      (``resnet50`` or ``mobilenet_v2``); ``v2`` or ``v2_tsm`` (AdaFocusV2);
      ``uni``, ``uni_tsm`` or ``uni_x3d`` (Uni-AdaFocus).
    entries: entry name -> state dict (key -> numpy array). TSM, V2 and
      Uni files have one entry, ``state_dict``, with ``module.`` stripped.
    other: top-level entries that are not weights (names only).
  """
  path: str
  kind: str
  family: str
  entries: Dict[str, Dict[str, np.ndarray]]
  other: List[str]

  def origin(self, entry: str) -> str:
    return f"{self.path}[{entry!r}]"


def _state_dict(obj, where: str) -> Dict[str, np.ndarray]:
  if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
    raise CheckpointFormatError(f"{where} is not a state dict (a dict of "
                                f"tensors), it is {type(obj).__name__}")
  bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
  if bad:
    raise CheckpointFormatError(
        f"{where}: {bad[:4]} are not tensors (the file may hold objects "
        "this reader does not load)")
  return dict(obj)


def _tsm_backbone(keys) -> str:
  if any(k.startswith("base_model.features.") for k in keys):
    return "mobilenet_v2"
  if any(k.startswith("base_model.layer1.") for k in keys):
    return "resnet50"
  raise CheckpointFormatError("a TSM checkpoint whose base_model is neither "
                              "a ResNet-50 nor a MobileNetV2")


def parse(obj, path: str) -> Checkpoint:
  """Recognises the checkpoint family of a loaded object.

  Args:
    obj: what ``checkpoint_file.read`` returned.
    path: the file, for messages.

  Raises:
    CheckpointFormatError: not an AdaFocus or TSM checkpoint.
  """
  if not isinstance(obj, dict):
    raise CheckpointFormatError(
        f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
  if any(k in obj for k in ("glancer", "focuser")):
    entries = {}
    for name in WEIGHT_ENTRIES:
      if obj.get(name) is not None:
        entries[name] = _state_dict(obj[name], f"{path}[{name!r}]")
    if MODEL_STATE in obj and obj[MODEL_STATE] is not None:
      entries[MODEL_STATE] = _state_dict(obj[MODEL_STATE],
                                         f"{path}[{MODEL_STATE!r}]")
    other = sorted(k for k in obj if k not in entries)
    glancer = entries.get("glancer", {})
    focuser = entries.get("focuser", {})
    something = ("net.classifier.weight" in glancer
                 or any(k.startswith("net.base_model.") for k in focuser))
    return Checkpoint(path, ADAFOCUS, SOMETHING if something else V1,
                      entries, other)
  if "state_dict" in obj:
    sd = _state_dict(obj["state_dict"], f"{path}['state_dict']")
    stripped = {(k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX)
                 else k): v for k, v in sd.items()}
    other = sorted(k for k in obj if k != "state_dict")
    tsm = any(k.startswith("global_CNN.base_model.") for k in stripped)
    if any(k.split(".", 1)[0] in UNI_MODULES for k in stripped):
      x3d = any(k.startswith(X3D_GLANCE_STEM) for k in stripped)
      return Checkpoint(path, UNI_ADAFOCUS,
                        UNI_TSM if tsm else UNI_X3D if x3d else UNI,
                        {"state_dict": stripped}, other)
    if any(k.split(".", 1)[0] in V2_MODULES for k in stripped):
      return Checkpoint(path, ADAFOCUS_V2, V2_TSM if tsm else V2,
                        {"state_dict": stripped}, other)
    if not any(k.startswith("base_model.") for k in stripped):
      raise CheckpointFormatError(
          f"{path}['state_dict'] has neither base_model.* keys (a TSM "
          "checkpoint) nor global_CNN/local_CNN/policy_stn/classifier keys "
          "(an AdaFocusV2 one) nor spatial_policy/temporal_policy/aux_fc "
          "keys (a Uni-AdaFocus one)")
    return Checkpoint(path, TSM, _tsm_backbone(stripped),
                      {"state_dict": stripped}, other)
  raise CheckpointFormatError(
      f"{path} is a PyTorch file but not an AdaFocus checkpoint (entries "
      f"glancer, focuser, fc, policy), nor a TSM, AdaFocusV2 or "
      f"Uni-AdaFocus one "
      f"(state_dict): its entries are {sorted(map(str, obj))[:10]}")


def load(path: str) -> Checkpoint:
  """Reads and recognises a reference checkpoint file."""
  return parse(checkpoint_file.read(path), path)


@dataclasses.dataclass
class Architecture:
  """Model settings the tensors imply (the config must agree with them).

  Attributes:
    num_classes: classes of the classifier (or heads).
    classifier: ``gru``, ``fc`` or ``logit_mean``.
    classifier_hidden: GRU units (0 without a GRU).
    policy: ``discrete`` or ``continuous``, or "" without a policy.
    num_actions: discrete grid size.
    policy_hidden: dense and GRU units of the policy.
    policy_conv_channels: 1x1 conv channels of the policy encoder.
    policy_batchnorm: batch norms in the policy encoder.
  """
  num_classes: int = 0
  classifier: str = ""
  classifier_hidden: int = 0
  policy: str = ""
  num_actions: int = 0
  policy_hidden: int = 0
  policy_conv_channels: int = 0
  policy_batchnorm: bool = False

  def config_fields(self) -> Dict[str, object]:
    """Dotted config fields -> values, for the model fields this fixes.

    ``num_classes`` is not among them: it belongs to the dataset, and a
    preset that disagrees with the checkpoint is an error, not a change.
    """
    out: Dict[str, object] = {"model.classifier": self.classifier}
    if self.classifier == "gru":
      out["model.classifier_hidden"] = self.classifier_hidden
    if self.policy:
      out.update({"model.policy": self.policy,
                  "model.policy_hidden": self.policy_hidden,
                  "model.policy_conv_channels": self.policy_conv_channels,
                  "model.policy_batchnorm": self.policy_batchnorm})
      if self.policy == "discrete":
        out["model.num_actions"] = self.num_actions
    return out


def _shape(sd, key, origin):
  if key not in sd:
    raise errors.MissingKeyError(f"{origin}[{key!r}] is missing")
  return sd[key].shape


def policy_entry(ckpt: Checkpoint) -> Optional[Dict[str, np.ndarray]]:
  """The ``ActorCritic`` state dict: ``policy``, else the focuser's copy."""
  if "policy" in ckpt.entries:
    return ckpt.entries["policy"]
  focuser = ckpt.entries.get("focuser", {})
  prefix = POLICY_COPIES[0]
  copy = {k[len(prefix):]: v for k, v in focuser.items()
          if k.startswith(prefix)}
  return copy or None


def architecture(ckpt: Checkpoint) -> Architecture:
  """The architecture an AdaFocus checkpoint's tensors imply.

  Raises:
    ConversionError: an entry needed to tell is missing.
  """
  arch = Architecture()
  fc = ckpt.entries.get("fc")
  if fc is None:
    raise errors.MissingKeyError(f"{ckpt.path} has no 'fc' entry (the "
                                 "classifier)")
  origin = ckpt.origin("fc")
  if ckpt.family == SOMETHING:
    arch.classifier = "logit_mean"
    arch.num_classes = _shape(fc, "weight", origin)[0]
  elif "gru.weight_hh_l0" in fc:
    arch.classifier = "gru"
    arch.classifier_hidden = _shape(fc, "gru.weight_hh_l0", origin)[1]
    arch.num_classes = _shape(fc, "fc.weight", origin)[0]
  else:
    arch.classifier = "fc"
    arch.num_classes = _shape(fc, "fc.weight", origin)[0]
  policy = policy_entry(ckpt)
  if policy is not None:
    origin = ckpt.origin("policy")
    actions = _shape(policy, "actor.0.weight", origin)[0]
    arch.policy = "continuous" if actions == 2 else "discrete"
    arch.num_actions = actions if arch.policy == "discrete" else 0
    arch.policy_hidden = _shape(policy, "gru.weight_hh_l0", origin)[1]
    arch.policy_conv_channels = _shape(policy, "state_encoder.0.weight",
                                       origin)[0]
    arch.policy_batchnorm = "state_encoder.1.weight" in policy
  return arch


# The head (stage-0 classifier) of each net, by checkpoint kind and role.
_HEADS = {(ADAFOCUS, "glance"): ("glancer", "net.classifier.1.weight"),
          (ADAFOCUS, "focus"): ("focuser", "net.fc.weight"),
          (TSM, "glance"): ("state_dict", "new_fc.weight"),
          (TSM, "focus"): ("state_dict", "new_fc.weight")}


def head_classes(ckpt: Checkpoint, role: str) -> Optional[int]:
  """Classes of a backbone file's head for ``role`` (None if it has none)."""
  entry, key = _HEADS[(ckpt.kind, role)]
  weight = ckpt.entries.get(entry, {}).get(key)
  return None if weight is None else int(weight.shape[0])

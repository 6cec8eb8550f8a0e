"""Fills whole Keras models from a reference checkpoint's entries.

Every function takes ``TensorSource``s (tracked state dicts) and a
``Filler`` (tracked Keras variables); ``finish_all`` then raises if any
checkpoint tensor was left unused or any Keras variable unfilled.

Duplicates in a reference checkpoint are checked, not converted twice:
``model_state_dict`` repeats the weight entries, and from stage 2 on the
focuser repeats the policy as ``policy.policy.*`` and ``policy.policy_old.*``
(the PPO's current and acting copies, equal after every update); a copy
that differs from the original is an error, since the reference would then
act with weights the conversion does not carry.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import numpy as np

from adafocus_tf.convert import cnn
from adafocus_tf.convert import errors
from adafocus_tf.convert import recurrent
from adafocus_tf.convert import reference
from adafocus_tf.convert.state import Filler, TensorSource

# Backbone key prefix, dialect and head key of each family's nets.
_V1_GLANCE = ("net.", cnn.TORCHVISION, "net.classifier.1")
_V1_FOCUS = ("net.", cnn.TORCHVISION, "net.fc")
_STH_GLANCE = ("net.", cnn.TSM, "net.classifier")
_STH_FOCUS = ("net.base_model.", cnn.TSM_SEQUENTIAL, None)  # head: 'fc'
_TSM_FILE = ("base_model.", cnn.TSM, "new_fc")


def sources(ckpt: reference.Checkpoint) -> Dict[str, TensorSource]:
  """A ``TensorSource`` per weight entry (and ``model_state_dict``)."""
  return {name: TensorSource(sd, ckpt.origin(name))
          for name, sd in ckpt.entries.items()}


def check_model_state(srcs: Dict[str, TensorSource]) -> None:
  """Consumes ``model_state_dict`` after checking it repeats the entries.

  Raises:
    ConversionError: a tensor of it differs from its entry's, or it has a
      key no entry has (an unused tensor).
  """
  whole = srcs.get(reference.MODEL_STATE)
  if whole is None:
    return
  for entry, prefix in reference.MODEL_STATE_PREFIXES.items():
    part = srcs.get(entry)
    if part is None:
      continue
    for key in list(part.keys()):
      full = prefix + key
      if not whole.has(full):
        continue
      if not np.array_equal(whole.tensors[full], part.tensors[key]):
        raise errors.ConversionError(
            f"{whole.describe(full)} differs from {part.describe(key)}: "
            "the checkpoint's two copies of this weight disagree")
      whole.skip(full)


def check_policy_copies(srcs: Dict[str, TensorSource],
                        policy: Optional[TensorSource]) -> None:
  """Consumes the focuser's policy copies after comparing them to ``policy``.

  Args:
    srcs: the entries' sources.
    policy: the source the policy is converted from (None without policy).
  """
  focuser = srcs.get("focuser")
  if focuser is None:
    return
  for key in list(focuser.keys()):
    prefix = next((p for p in reference.POLICY_COPIES if key.startswith(p)),
                  None)
    if prefix is None:
      continue
    if policy is None:
      raise errors.UnusedKeyError(
          f"{focuser.describe(key)} is a policy weight but no policy is "
          "converted")
    short = key[len(prefix):]
    if policy.has(short) and not np.array_equal(policy.tensors[short],
                                                focuser.tensors[key]):
      raise errors.ConversionError(
          f"{focuser.describe(key)} differs from {policy.describe(short)}: "
          "the PPO's policy copies disagree")
    if not policy.has(short):
      raise errors.UnusedKeyError(
          f"{focuser.describe(key)} has no counterpart in {policy.origin}")
    focuser.skip(key)


def fill_net(net, source: TensorSource, layout, filler: Filler) -> None:
  """A ``GlanceNet`` or ``FocusNet``: its backbone, and its head if named.

  Args:
    net: the Keras net (``backbone`` and ``head``).
    source: the entry holding it.
    layout: (backbone key prefix, dialect, head key or None).
    filler: records what was filled.
  """
  prefix, dialect, head = layout
  cnn.fill_backbone(net.backbone, source, prefix, dialect, filler)
  if head is not None:
    cnn.fill_dense(net.head, source, head, filler)


def fill_model(model, ckpt: reference.Checkpoint,
               srcs: Dict[str, TensorSource], filler: Filler) -> None:
  """The whole model (glance, focus, heads, classifier) of an AdaFocus file.

  Args:
    model: ``AdaFocus`` (V1) or ``TwoStreamAdaFocus`` (Something-Something),
      built.
    ckpt: the parsed checkpoint.
    srcs: its sources (``sources(ckpt)``).
    filler: records what was filled.
  """
  for entry in ("glancer", "focuser", "fc"):
    if entry not in srcs:
      raise errors.MissingKeyError(f"{ckpt.path} has no {entry!r} entry")
  if ckpt.family == reference.SOMETHING:
    fill_net(model.glance, srcs["glancer"], _STH_GLANCE, filler)
    fill_net(model.focus, srcs["focuser"], _STH_FOCUS, filler)
    # The reference's focus logits come from GFV.classifier, saved as 'fc'.
    cnn.fill_dense(model.focus.head, srcs["fc"], "", filler)
  else:
    fill_net(model.glance, srcs["glancer"], _V1_GLANCE, filler)
    fill_net(model.focus, srcs["focuser"], _V1_FOCUS, filler)
    recurrent.fill_classifier(model.classifier, srcs["fc"], filler)


def policy_source(ckpt: reference.Checkpoint,
                  srcs: Dict[str, TensorSource]) -> Optional[TensorSource]:
  """The source the policy converts from: ``policy``, or the focuser's copy."""
  if "policy" in srcs:
    return srcs["policy"]
  sd = reference.policy_entry(ckpt)
  if sd is None:
    return None
  return TensorSource(sd, f"{ckpt.origin('focuser')}[policy.policy.*]")


def fill_policy(actor, critic, source: TensorSource, map_chw,
                filler: Filler) -> None:
  """The stage-2 actor and critic networks (shared trunk).

  Args:
    actor: ``ActorDistributionGruNetwork`` (variables created).
    critic: ``ValueGruNetwork`` sharing the actor's trunk.
    source: the ``ActorCritic`` state dict.
    map_chw: (C, H, W) of one observation (a glance feature map).
    filler: records what was filled.
  """
  # The reference has one trunk under both heads, as ours does with
  # share_trunk (the default).
  trunk = actor.trunk
  if critic.trunk is not trunk:
    raise errors.ArchitectureError("the reference's actor and critic share "
                                   "one encoder and GRU; ours do not")
  recurrent.fill_policy(trunk, actor.head, critic.head, source,
                        map_chw, filler)


def fill_backbone_file(net, ckpt: reference.Checkpoint, role: str,
                       filler: Filler) -> List[TensorSource]:
  """A glance or focus net (backbone and head) from a stage-0 or TSM file.

  Only that net's entry is read: a stage-0 file of the reference trains one
  backbone and saves the whole (untrained) rest beside it.

  Args:
    net: ``GlanceNet`` or ``FocusNet``.
    ckpt: the parsed checkpoint.
    role: ``glance`` or ``focus``.
    filler: records what was filled.

  Returns:
    The sources used (to ``finish``).
  """
  if ckpt.kind == reference.TSM:
    src = TensorSource(ckpt.entries["state_dict"], ckpt.origin("state_dict"))
    want = "mobilenet_v2" if role == "glance" else "resnet50"
    if ckpt.family != want:
      raise errors.ArchitectureError(
          f"{ckpt.path} is a TSM {ckpt.family}; the {role} net is a {want}")
    fill_net(net, src, _TSM_FILE, filler)
    return [src]
  entry = "glancer" if role == "glance" else "focuser"
  if entry not in ckpt.entries:
    raise errors.MissingKeyError(f"{ckpt.path} has no {entry!r} entry")
  src = TensorSource(ckpt.entries[entry], ckpt.origin(entry))
  if ckpt.family == reference.SOMETHING:
    raise errors.ArchitectureError(
        f"{ckpt.path} is an AdaFocus Something-Something checkpoint: pass it "
        "as --checkpoint (its focus head is its 'fc' entry)")
  fill_net(net, src, _V1_GLANCE if role == "glance" else _V1_FOCUS, filler)
  # A stage-0 file carries no policy; one from a later stage does, which a
  # backbone-only conversion leaves out on purpose.
  for key in list(src.keys()):
    if key.startswith(reference.POLICY_COPIES):
      src.skip(key)
  return [src]


def finish_all(srcs: Iterable[TensorSource], filler: Filler,
               variables) -> None:
  """Raises if a tensor went unused or a Keras variable unfilled."""
  for src in srcs:
    src.finish()
  filler.check_filled(variables)


def unique_variables(*groups) -> list:
  """Variables of several models, each once (shared trunks appear twice)."""
  seen, out = set(), []
  for group in groups:
    for v in group:
      if id(v) not in seen:
        seen.add(id(v))
        out.append(v)
  return out

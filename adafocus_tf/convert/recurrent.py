"""The classifiers and the patch policy: PyTorch keys -> Keras variables.

Reference modules (key names in the checkpoint, relative to their entry):

  * ``RecurrentClassifier`` (the ``fc`` entry, classifier "gru"):
    ``gru.weight_ih_l0``, ``gru.weight_hh_l0``, ``gru.bias_ih_l0``,
    ``gru.bias_hh_l0`` (one-layer ``nn.GRU``), ``fc.weight``, ``fc.bias``.
  * ``LinearCLassifier`` (classifier "fc"): ``fc.weight``, ``fc.bias``.
  * ``ActorCritic`` (the ``policy`` entry): ``state_encoder`` Sequential of
    Conv2d 1x1 (no bias), [BatchNorm2d], ReLU, Flatten, Linear,
    [BatchNorm1d], ReLU, so the Linear is ``state_encoder.3`` (or ``.4``
    with batch norms, and the norms ``.1`` and ``.5``); ``gru.*_l0``;
    ``actor.0`` (Linear, then Softmax or Sigmoid, which have no weights);
    ``critic.0``.

Our ``RecurrentClassifier`` is a Keras GRU (``reset_after=True``) and a
Dense ``fc``; the policy is ``PolicyTrunk`` (encoder ``conv1x1``
[``conv_bn``] ``fc`` [``fc_bn``], GRUCell ``gru``) under the actor head
(``logits`` or ``mean``) and the critic head ``value``. The actor's
Softmax is not a weight: our actor emits the logits of a Categorical, whose
probabilities are that softmax.
"""
from __future__ import annotations

from typing import Tuple

from adafocus_tf.convert import cnn
from adafocus_tf.convert import errors
from adafocus_tf.convert import layouts
from adafocus_tf.convert.state import Filler, TensorSource, variable_name


def fill_gru(cell, source: TensorSource, key: str, filler: Filler) -> None:
  """A Keras GRU cell (``reset_after=True``) from a one-layer ``nn.GRU``.

  Args:
    cell: a ``GRUCell`` (the ``cell`` of a ``GRU`` layer, or the policy's).
    source: the checkpoint's tensors.
    key: the ``nn.GRU`` module path (``"gru"``).
    filler: records what was filled.
  """
  if not cell.reset_after:
    raise errors.ArchitectureError(
        f"{cell.name} must have reset_after=True (PyTorch's GRU)")
  extra = [k for k in source.keys() if k.startswith(f"{key}.")
           and k.endswith(("_l1", "_reverse"))]
  if extra:
    raise errors.ArchitectureError(
        f"{source.origin}: {key} has more than one layer or direction "
        f"({extra[:3]}); the Keras GRU has one")
  names = [f"{key}.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih",
                                     "bias_hh")]
  targets = (cell.kernel, cell.recurrent_kernel, cell.bias)
  tensors = [source.take(n, variable_name(targets[min(i, 2)]))
             for i, n in enumerate(names)]
  try:
    values = layouts.gru(*tensors)
  except ValueError as e:
    raise errors.ShapeMismatchError(
        f"{source.describe(key)} does not fit {cell.name}: {e}") from None
  for var, value, src in zip(targets, values,
                             (names[0], names[1], f"{names[2]}+{names[3]}")):
    filler.assign(var, value, source.describe(src))


def fill_classifier(classifier, source: TensorSource, filler: Filler) -> None:
  """Our ``RecurrentClassifier`` or ``LinearClassifier`` from the ``fc`` entry.

  Args:
    classifier: the Keras classifier (built).
    source: the reference classifier's state dict.
    filler: records what was filled.
  """
  if hasattr(classifier, "gru"):
    fill_gru(classifier.gru.cell, source, "gru", filler)
  cnn.fill_dense(classifier.fc, source, "fc", filler)


def encoder_keys(batchnorm: bool) -> Tuple[str, str, str, str]:
  """``state_encoder`` indices of (conv, conv bn, linear, linear bn)."""
  if batchnorm:
    return "state_encoder.0", "state_encoder.1", "state_encoder.4", (
        "state_encoder.5")
  return "state_encoder.0", "", "state_encoder.3", ""


def fill_policy(trunk, actor_head, critic_head, source: TensorSource,
                map_chw: Tuple[int, int, int], filler: Filler) -> None:
  """The policy (trunk, actor head, critic head) from an ``ActorCritic``.

  Args:
    trunk: ``policy_trunk.PolicyTrunk`` (built).
    actor_head: the actor's Dense head (``logits`` or ``mean``).
    critic_head: the critic's Dense head (``value``).
    source: the ``ActorCritic`` state dict.
    map_chw: (C, H, W) of the observation the encoder's convolution sees;
      its output is flattened channel-major by PyTorch, so the Linear's
      inputs are permuted for Keras' channel-minor flatten.
    filler: records what was filled.
  """
  layers = {layer.name: layer for layer in trunk.encoder.layers}
  batchnorm = "conv_bn" in layers
  conv_key, conv_bn_key, fc_key, fc_bn_key = encoder_keys(batchnorm)
  if not batchnorm and source.has("state_encoder.1.weight"):
    raise errors.ArchitectureError(
        f"{source.origin} has batch norms in its encoder "
        "(state_encoder.1, .5) but the config's policy has none: set "
        "model.policy_batchnorm=true")
  cnn.fill_conv(layers["conv1x1"], source, conv_key, filler)
  if batchnorm:
    cnn.fill_batch_norm(layers["conv_bn"], source, conv_bn_key, filler)
    cnn.fill_batch_norm(layers["fc_bn"], source, fc_bn_key, filler)
  channels = layers["conv1x1"].filters
  cnn.fill_flattened_dense(layers["fc"], source, fc_key,
                           (channels, map_chw[1], map_chw[2]), filler)
  fill_gru(trunk.rnn.cell, source, "gru", filler)
  cnn.fill_dense(actor_head, source, "actor.0", filler)
  cnn.fill_dense(critic_head, source, "critic.0", filler)

"""Backbone and head weights: torchvision-style names -> our Keras layers.

Our ``resnet50`` and ``mobilenet_v2_torch`` backbones name every weighted
Keras layer after torchvision's state-dict module path with ``.`` replaced
by ``_`` (``layer2_0_conv2`` is ``layer2.0.conv2``; ``features_2_conv_1_0``
is ``features.2.conv.1.0``), so each layer's *canonical* PyTorch path is its
name with ``_`` -> ``.``. A *dialect* rewrites that canonical path into the
path a given checkpoint family uses:

  * ``torchvision``: the path itself (the V1 reference's ResNet-50 and its
    MobileNetV2, copied from torchvision 0.8).
  * ``tsm``: the TSM repository's networks: a shifted convolution is
    wrapped as ``<conv>.net`` (``layer1.0.conv1.net``); its MobileNetV2 is
    tonylins' layout, whose inverted-residual ``conv`` Sequential is flat
    (conv, bn, relu6, conv, bn, relu6, conv, bn) where torchvision nests
    (ConvBNReLU, ConvBNReLU, conv, bn).
  * ``tsm_sequential``: the AdaFocus Something-Something focus net, whose
    ResNet-50 the reference turned into ``nn.Sequential(*children[:-1])``
    before saving: ``conv1`` -> ``0``, ``bn1`` -> ``1``, ``layer<k>`` ->
    ``<k + 3>`` (children: conv1, bn1, relu, maxpool, layer1..4, avgpool);
    shifted convolutions as in ``tsm``.

A shifted convolution is the first convolution of a block whose Keras
model has a ``<block>_shift`` layer (``models/backbones.py``).
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Tuple

import tensorflow as tf

from adafocus_tf.convert import errors
from adafocus_tf.convert import layouts
from adafocus_tf.convert.state import Filler, TensorSource, variable_name

TORCHVISION = "torchvision"
TSM = "tsm"
TSM_SEQUENTIAL = "tsm_sequential"
DIALECTS = (TORCHVISION, TSM, TSM_SEQUENTIAL)

# PyTorch's BatchNorm default; our torch-layout backbones use it too.
_TORCH_BN_EPSILON = 1e-5

_RESNET_BLOCK = re.compile(r"^(layer\d+\.\d+)\.")
_MOBILENET_BLOCK = re.compile(r"^(features\.\d+)\.conv\.")


def _block_of(canonical: str):
  m = _RESNET_BLOCK.match(canonical) or _MOBILENET_BLOCK.match(canonical)
  return m.group(1) if m else None


def _first_conv(canonical: str) -> bool:
  """Whether the layer is its block's first convolution (where TSM shifts)."""
  return bool(re.match(r"^layer\d+\.\d+\.conv1$", canonical)
              or re.match(r"^features\.\d+\.conv\.0\.0$", canonical))


def _tonylins(canonical: str, groups: int) -> str:
  """torchvision MobileNetV2 block path -> tonylins' flat ``conv`` index.

  Args:
    canonical: ``features.N.conv.i.j`` (the j-th module of ConvBNReLU i) or
      ``features.N.conv.k`` (the final 1x1 convolution or its batch norm).
    groups: ConvBNReLU groups in the block (1 without expansion, else 2).
  """
  m = re.match(r"^(features\.\d+\.conv)\.(\d+)(?:\.(\d+))?$", canonical)
  if not m:
    return canonical
  head, i, j = m.group(1), int(m.group(2)), m.group(3)
  if j is not None:
    return f"{head}.{3 * i + int(j)}"
  return f"{head}.{3 * groups + (i - groups)}"


def torch_path(canonical: str, dialect: str, shifted: bool,
               groups: int = 0) -> str:
  """The PyTorch module path of a layer in a checkpoint family.

  Args:
    canonical: torchvision-style path (the Keras name with ``_`` -> ``.``).
    dialect: one of ``DIALECTS``.
    shifted: the layer is a convolution that TSM wraps (``.net``).
    groups: ConvBNReLU groups of the layer's MobileNetV2 block (``tsm``).
  """
  if dialect not in DIALECTS:
    raise ValueError(f"unknown dialect {dialect!r}; one of {DIALECTS}")
  path = canonical
  if dialect in (TSM, TSM_SEQUENTIAL) and path.startswith("features."):
    path = _tonylins(path, groups)
  if dialect == TSM_SEQUENTIAL:
    path = re.sub(r"^conv1(?=\.|$)", "0", path)
    path = re.sub(r"^bn1(?=\.|$)", "1", path)
    path = re.sub(r"^layer(\d)(?=\.)", lambda m: str(int(m.group(1)) + 3),
                  path)
  if shifted and dialect != TORCHVISION:
    path += ".net"
  return path


def _guard(source: TensorSource, key: str, variable, convert: Callable):
  """Runs a layout conversion, turning a rank error into a named one."""
  try:
    return convert(source.take(key, variable_name(variable)))
  except ValueError as e:
    if isinstance(e, errors.ConversionError):
      raise
    raise errors.ShapeMismatchError(
        f"{source.describe(key)} does not fit the Keras variable "
        f"{variable_name(variable)}: {e}") from None


def fill_conv(layer, source: TensorSource, key: str, filler: Filler) -> None:
  """A bias-free Conv2D or DepthwiseConv2D from ``<key>.weight``."""
  if layer.use_bias:
    raise errors.ConversionError(f"{layer.name}: the torch-layout backbones "
                                 "have bias-free convolutions")
  if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
    var, convert = layer.depthwise_kernel, layouts.depthwise_kernel
  else:
    var, convert = layer.kernel, layouts.conv_kernel
  filler.assign(var, _guard(source, f"{key}.weight", var, convert),
                source.describe(f"{key}.weight"))


def fill_batch_norm(layer, source: TensorSource, key: str,
                    filler: Filler) -> None:
  """A BatchNormalization from ``<key>.weight/bias/running_mean/var``."""
  if abs(layer.epsilon - _TORCH_BN_EPSILON) > 1e-9:
    raise errors.ArchitectureError(
        f"{layer.name} has batch-norm epsilon {layer.epsilon}, PyTorch's is "
        f"{_TORCH_BN_EPSILON}: the outputs would differ")
  pairs = [(layer.gamma, "weight"), (layer.beta, "bias"),
           (layer.moving_mean, "running_mean"),
           (layer.moving_variance, "running_var")]
  for var, suffix in pairs:
    k = f"{key}.{suffix}"
    filler.assign(var, _guard(source, k, var, lambda x: x),
                  source.describe(k))


def sub_key(key: str, name: str) -> str:
  """``key.name``, or ``name`` when the module is the state dict's root."""
  return f"{key}.{name}" if key else name


def fill_dense(layer, source: TensorSource, key: str, filler: Filler) -> None:
  """A Dense layer from a Linear's ``<key>.weight`` and ``<key>.bias``.

  Args:
    layer: the Keras Dense layer (built).
    source: the checkpoint's tensors.
    key: the Linear's module path; "" when the state dict is the Linear's
      own (the Something-Something reference's ``fc`` entry).
    filler: records what was filled.
  """
  weight, bias = sub_key(key, "weight"), sub_key(key, "bias")
  filler.assign(layer.kernel, _guard(source, weight, layer.kernel,
                                     layouts.dense_kernel),
                source.describe(weight))
  filler.assign(layer.bias, _guard(source, bias, layer.bias, lambda x: x),
                source.describe(bias))


def fill_flattened_dense(layer, source: TensorSource, key: str,
                         chw: Tuple[int, int, int], filler: Filler) -> None:
  """A Dense layer after an NHWC flatten from a Linear after an NCHW one.

  Args:
    layer: the Keras Dense layer (built), reading a Keras ``Flatten`` of a
      [h, w, c] map.
    source: the checkpoint's tensors.
    key: the Linear's module path (it read ``x.view(n, -1)`` of [c, h, w]).
    chw: (c, h, w) of the flattened map.
    filler: records what was filled.
  """
  weight, bias = sub_key(key, "weight"), sub_key(key, "bias")
  filler.assign(layer.kernel, _guard(
      source, weight, layer.kernel,
      lambda w: layouts.flattened_dense_kernel(w, chw)),
                source.describe(weight))
  filler.assign(layer.bias, _guard(source, bias, layer.bias, lambda x: x),
                source.describe(bias))


def _mobilenet_groups(model) -> Dict[str, int]:
  """ConvBNReLU groups of each MobileNetV2 block, by block path."""
  groups: Dict[str, int] = {}
  for layer in model.layers:
    m = re.match(r"^(features_\d+)_conv_(\d+)_0$", layer.name)
    if m:
      block = m.group(1).replace("_", ".")
      groups[block] = max(groups.get(block, 0), int(m.group(2)) + 1)
  return groups


def fill_backbone(model, source: TensorSource, prefix: str, dialect: str,
                  filler: Filler) -> None:
  """Fills every weighted layer of a torch-layout backbone by name.

  Args:
    model: a ``resnet50`` or ``mobilenet_v2_torch`` Keras backbone (its
      weighted layers are named after torchvision's module paths), plain
      or with temporal shift layers.
    source: the checkpoint's tensors.
    prefix: the backbone's key prefix in ``source`` (``"net."``,
      ``"base_model."``, ``"net.base_model."``...).
    dialect: the checkpoint family's naming (``DIALECTS``).
    filler: records what was filled.

  Raises:
    ConversionError: a layer kind without a mapping, or a missing tensor or
      shape mismatch (subclasses).
  """
  shifted_blocks = {layer.name[:-len("_shift")].replace("_", ".")
                    for layer in model.layers
                    if layer.name.endswith("_shift")}
  groups = _mobilenet_groups(model)
  for layer in model.layers:
    if not layer.weights:
      continue
    canonical = layer.name.replace("_", ".")
    block = _block_of(canonical)
    shifted = block in shifted_blocks and _first_conv(canonical)
    key = prefix + torch_path(canonical, dialect, shifted,
                              groups.get(block, 0))
    # DepthwiseConv2D is not a Conv2D subclass in Keras 2.
    if isinstance(layer, (tf.keras.layers.Conv2D,
                          tf.keras.layers.DepthwiseConv2D)):
      fill_conv(layer, source, key, filler)
    elif isinstance(layer, tf.keras.layers.BatchNormalization):
      fill_batch_norm(layer, source, key, filler)
    else:
      raise errors.ConversionError(
          f"no PyTorch mapping for the Keras layer {layer.name} "
          f"({type(layer).__name__}) of {model.name}")

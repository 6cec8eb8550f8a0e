"""What the glance network computed for a batch (``Recognizer.glance``)."""
from typing import Dict, NamedTuple

import tensorflow as tf


class Glance(NamedTuple):
  """What the glance network computed for a batch, run once.

  Attributes:
    maps: [B, T, h, w, C] feature maps of the glance frames.
    pooled: [B, T, C] pooled features.
    policy_maps: the maps the policy reads: ``maps``, or those of the glance
      net the policy was trained with when its weights differ.
  """
  maps: tf.Tensor
  pooled: tf.Tensor
  policy_maps: tf.Tensor

  def as_outputs(self) -> Dict[str, tf.Tensor]:
    """The glance as named tensors, for a glance network run elsewhere.

    The form a separately compiled glance returns (the TFLite glance of
    ``Predictor``'s hybrid backend): ``maps`` and ``pooled``, and
    ``policy_maps`` only when the policy reads another glance net's maps.
    ``from_outputs`` takes it back.
    """
    out = {"maps": self.maps, "pooled": self.pooled}
    if self.policy_maps is not self.maps:
      out["policy_maps"] = self.policy_maps
    return out

  @classmethod
  def from_outputs(cls, outputs) -> "Glance":
    """The ``Glance`` of ``as_outputs``' dict.

    Args:
      outputs: {name: tensor} with ``maps``, ``pooled`` and optionally
        ``policy_maps``.
    """
    return cls(outputs["maps"], outputs["pooled"],
               outputs.get("policy_maps", outputs["maps"]))

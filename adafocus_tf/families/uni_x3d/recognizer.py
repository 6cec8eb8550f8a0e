"""Uni-AdaFocus-X3D's recognizer (``models/uni/uni_x3d.py``).

The TSM family's (``families/uni_tsm/recognizer.py``: focus plans, the
patch choices, two exits, their cost) with the X3D model's prediction,
whose glance summand reads the glance maps rather than per-frame
features: exit step 0 runs the glance net and the glance-only prediction
(the mean per-frame glance logits), step 1 both policies, the focus net
on the K patches and both X3D heads.
"""
from adafocus_tf.families.uni_tsm import recognizer as tsm_recognizer


class UniX3DRecognizer(tsm_recognizer.UniTSMRecognizer):
  """Uni-AdaFocus-X3D: two frame streams; the model carries both policies.
  """

  def logits(self, batch, glance, offsets, training=False, train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's."""
    return self.model.head_logits(glance.maps, glance.pooled,
                                  batch["focus_frames"], offsets,
                                  batch.get("seed"), training=training,
                                  train_focus=train_focus)

  def _glance_summand(self, maps, pooled):
    """The prediction's glance logits [n, C] at exit step 1.

    Args:
      maps: the glance maps (the state's first part).
      pooled: [n, G, C] the pooled per-frame glance features.

    Returns:
      The glance X3D head's logits, which read the maps.
    """
    del pooled  # The X3D head reads the glance maps.
    return self.model.glance_logits(maps)

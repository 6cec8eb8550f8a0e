"""Uni-AdaFocus-X3D's recognizer (``models/uni/uni_x3d.py``).

The TSM family's (``families/uni_tsm/recognizer.py``: focus plans, the
patch choices, two exits, their cost) with the X3D model's prediction,
whose glance summand reads the glance maps rather than per-frame
features: exit step 0 runs the glance net and the glance-only prediction
(the mean per-frame glance logits), step 1 both policies, the focus net
on the K patches and both X3D heads.
"""
import tensorflow as tf

from adafocus_tf.families.uni_tsm import recognizer as tsm_recognizer
from adafocus_tf.models.uni import focus_plan


class UniX3DRecognizer(tsm_recognizer.UniTSMRecognizer):
  """Uni-AdaFocus-X3D: two frame streams; the model carries both policies.
  """

  def logits(self, batch, glance, offsets, training=False, train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's."""
    return self.model.head_logits(glance.maps, glance.pooled,
                                  batch["focus_frames"], offsets,
                                  batch.get("seed"), training=training,
                                  train_focus=train_focus)

  def _step_logits(self, inputs, state, e):
    model = self.model
    if e == 0:
      maps, pooled = model.glance_features(inputs["glance_frames"])
      logits = model.glance_only_logits(pooled)
      return (tf.cast(logits, tf.float32),
              tf.zeros([tf.shape(pooled)[0], 0, focus_plan.PLAN_DIMS]),
              (maps, pooled))
    maps, pooled = state
    plan = model.policy_plan(maps, pooled)
    logits = (model.glance_logits(maps)
              + model.focus_logits(inputs["focus_frames"], plan))
    return tf.cast(logits, tf.float32), plan, state

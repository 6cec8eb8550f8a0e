"""The V1 model's classifier by name: ``gru`` or ``fc`` (docs/METHOD.md 2).

  ``gru``  ``recurrent_classifier.RecurrentClassifier``
  ``fc``   ``linear_classifier.LinearClassifier``

``logit_mean`` (``logit_mean_classifier.py``) belongs to the two-stream
model, which builds it.
"""
import tensorflow as tf

from adafocus_tf.models import linear_classifier
from adafocus_tf.models import recurrent_classifier


def build_classifier(kind: str, num_classes: int, hidden: int,
                     dropout: float) -> tf.keras.Model:
  """Builds the V1 model's ``gru`` or ``fc`` classifier (see above).

  ``logit_mean`` is built by the two-stream model itself, from the heads of
  its glance and focus nets (``models.factory.build_model``).
  """
  if kind == "gru":
    return recurrent_classifier.RecurrentClassifier(num_classes, hidden,
                                                    dropout)
  if kind == "fc":
    return linear_classifier.LinearClassifier(num_classes, dropout)
  if kind == "logit_mean":
    raise ValueError("the logit_mean classifier belongs to the two-stream "
                     "model (data.glance_frames and data.focus_frames set; "
                     "models.factory.build_model builds it)")
  raise ValueError(f"unknown classifier {kind!r}; choose gru, fc or "
                   "logit_mean")

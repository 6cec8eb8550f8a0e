"""The model of a config: the V1 ``AdaFocus`` or the two-stream model.

Both share what the recognizer (``adafocus_tf.inference``) and the training
stages use: ``build_all()``, ``glance_features``, ``head_logits`` (per-step
logits [B, T or 1, C] after the glance), ``glance_only_probs``,
``classifier.loss`` and ``classifier.step_probs``, and the
``glance``/``focus`` nets with their heads.
"""
from typing import Union

from adafocus_tf import config as config_lib
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import two_stream

Model = Union[adafocus.AdaFocus, two_stream.TwoStreamAdaFocus]


def is_two_stream(cfg: ExperimentConfig) -> bool:
  """Whether the config's model is the two-stream family.

  Its glance and focus frames are sampled separately: the input pipeline
  yields ``glance_frames`` and ``focus_frames`` instead of ``frames``.

  Args:
    cfg: the experiment config (``model.variant``).
  """
  return cfg.model.variant == config_lib.TWO_STREAM


def build_model(cfg: ExperimentConfig) -> Model:
  """The model of ``cfg``, its variables not yet created (see ``build_all``).

  Args:
    cfg: the experiment config.

  Returns:
    ``TwoStreamAdaFocus`` for two frame streams (Something-Something),
    else ``AdaFocus``.

  Raises:
    ValueError: an invalid config (``ExperimentConfig.validate``).
  """
  cfg.validate()
  if is_two_stream(cfg):
    return two_stream.TwoStreamAdaFocus(cfg)
  return adafocus.AdaFocus(cfg)

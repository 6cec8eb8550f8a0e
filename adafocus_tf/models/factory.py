"""The model of a config: V1's ``AdaFocus``, the two-stream model, or V2's.

All share what the recognizer (``adafocus_tf.inference``) and the training
stages use: ``build_all()``, ``glance_features``, ``head_logits`` (per-step
logits [B, T or 1, C] after the glance), ``glance_only_probs``,
``classifier.loss`` and ``classifier.step_probs``, and the
``glance``/``focus`` nets with their heads.
"""
from typing import Union

from adafocus_tf import config as config_lib
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import adafocus_v2
from adafocus_tf.models import two_stream
from adafocus_tf.models import v2_two_stream

Model = Union[adafocus.AdaFocus, two_stream.TwoStreamAdaFocus,
              adafocus_v2.AdaFocusV2, v2_two_stream.TwoStreamAdaFocusV2]


def is_two_stream(cfg: ExperimentConfig) -> bool:
  """Whether the config's model is the two-stream family.

  Its glance and focus frames are sampled separately: the input pipeline
  yields ``glance_frames`` and ``focus_frames`` instead of ``frames``.

  Args:
    cfg: the experiment config (``model.variant``).
  """
  return cfg.model.variant in config_lib.TWO_STREAM_VARIANTS


def is_v2(cfg: ExperimentConfig) -> bool:
  """Whether the config's model is an AdaFocusV2 family (``v2``, ``v2_tsm``).

  Its policy is part of the model, trained with it in one end-to-end
  stage.
  """
  return cfg.model.variant in config_lib.V2_VARIANTS


def build_model(cfg: ExperimentConfig) -> Model:
  """The model of ``cfg``, its variables not yet created (see ``build_all``).

  Args:
    cfg: the experiment config.

  Returns:
    by ``model.variant``: ``AdaFocus`` (one_stream), ``TwoStreamAdaFocus``
    (two_stream), ``AdaFocusV2`` (v2), ``TwoStreamAdaFocusV2`` (v2_tsm).

  Raises:
    ValueError: an invalid config (``ExperimentConfig.validate``).
  """
  cfg.validate()
  return {config_lib.ONE_STREAM: adafocus.AdaFocus,
          config_lib.TWO_STREAM: two_stream.TwoStreamAdaFocus,
          config_lib.V2: adafocus_v2.AdaFocusV2,
          config_lib.V2_TSM: v2_two_stream.TwoStreamAdaFocusV2,
          }[cfg.model.variant](cfg)

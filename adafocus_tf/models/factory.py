"""The model of a config: the V1 ``AdaFocus`` or the two-stream model.

Both share the interface the training stages, evaluation and the patch
images use: ``build_all()``, ``batch_logits(batch, offsets, ...)`` (per-step
logits [B, T or 1, C]), ``classifier.loss`` and ``classifier.step_probs``,
and the ``glance``/``focus`` nets with their heads.
"""
from typing import Union

from adafocus_tf.config import DataConfig, ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import two_stream

Model = Union[adafocus.AdaFocus, two_stream.TwoStreamAdaFocus]


def is_two_stream(data: DataConfig) -> bool:
  """Whether the glance and focus frames are sampled separately.

  The input pipeline then yields ``glance_frames`` and ``focus_frames``
  instead of ``frames``.

  Args:
    data: the data config.

  Raises:
    ValueError: only one of the two frame counts is set.
  """
  if bool(data.glance_frames) != bool(data.focus_frames):
    raise ValueError("set both data.glance_frames and data.focus_frames (two "
                     "frame streams) or neither (one stream of "
                     f"data.num_frames); got {data.glance_frames} and "
                     f"{data.focus_frames}")
  return data.glance_frames > 0


def require_one_stream(cfg: ExperimentConfig, what: str) -> None:
  """Refuses a two-stream run for a tool that serves the V1 model only.

  Args:
    cfg: the run's config.
    what: the tool, for the message (e.g. ``"export"``).

  Raises:
    ValueError: ``cfg`` has two frame streams.
  """
  if is_two_stream(cfg.data):
    raise ValueError(
        f"{what} supports the V1 model (one frame stream, a patch per "
        f"frame); this run ({cfg.data.dataset}) has separate glance and "
        "focus frame streams. Use launch/evaluate.py for it.")


def build_model(cfg: ExperimentConfig) -> Model:
  """The model of ``cfg``, its variables not yet created (see ``build_all``).

  Args:
    cfg: the experiment config.

  Returns:
    ``TwoStreamAdaFocus`` for two frame streams (Something-Something),
    else ``AdaFocus``.

  Raises:
    ValueError: a classifier that does not fit the streams: two streams
      need ``logit_mean``, one stream ``gru`` or ``fc``.
  """
  if is_two_stream(cfg.data):
    if cfg.model.classifier != "logit_mean":
      raise ValueError("two frame streams (data.glance_frames, "
                       "data.focus_frames) need model.classifier=logit_mean, "
                       f"not {cfg.model.classifier!r}")
    return two_stream.TwoStreamAdaFocus(cfg)
  if cfg.model.temporal_shift:
    # The V1 model predicts after every frame (early exit, the recurrent
    # classifier), which a shift that reads the next frame would contradict.
    raise ValueError("model.temporal_shift needs two frame streams "
                     "(data.glance_frames and data.focus_frames)")
  return adafocus.AdaFocus(cfg)

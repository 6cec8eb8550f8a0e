"""The config checks the one-stream and the two-stream families each share.

A one-stream family (V1, AdaFocusV2) reads ``data.num_frames`` and predicts
after every frame; a two-stream family (the Something-Something model,
V2-TSM) samples its glance and focus frames separately and places one
patch per video.
"""
from adafocus_tf.config_checks import require


def one_stream(cfg, family: str) -> None:
  """Checks of a one-stream family named ``family``.

  Raises:
    ValueError: naming the field.
  """
  d, m = cfg.data, cfg.model
  for name in ("glance_frames", "focus_frames"):
    require(getattr(d, name) == 0, f"data.{name}", getattr(d, name),
            f"must be 0 for the {family} model (it reads data.num_frames)")
  require(not m.patch_per_video, "model.patch_per_video", m.patch_per_video,
          f"must be False for the {family} model")
  require(not m.temporal_shift, "model.temporal_shift", m.temporal_shift,
          f"needs the two_stream model: the {family} model predicts after "
          "every frame, which a shift reading the next frame would "
          "contradict")


def two_stream(cfg, family: str) -> None:
  """Checks of a two-stream family named ``family``.

  Raises:
    ValueError: naming the field.
  """
  d, m = cfg.data, cfg.model
  for name in ("glance_frames", "focus_frames"):
    require(getattr(d, name) >= 1, f"data.{name}", getattr(d, name),
            f"must be at least 1 for the {family} model")
  require(m.patch_per_video, "model.patch_per_video", m.patch_per_video,
          f"must be True for the {family} model")
  require(m.frame_order == "chronological", "model.frame_order",
          m.frame_order, "must be chronological for two-stream models (they "
          "make one prediction per video)")


def discrete_grid(cfg) -> None:
  """A discrete policy's ``num_actions`` is a square grid of 4 or more."""
  m = cfg.model
  side = int(round(m.num_actions ** 0.5))
  require(m.policy != "discrete" or (side * side == m.num_actions and
                                     side >= 2),
          "model.num_actions", m.num_actions,
          "must be a square number of grid positions (16, 25, 36, 49, 64, "
          "...)")


def v2_policy(cfg) -> None:
  """AdaFocusV2's position policies: batch norm in the encoder, positive
  dense widths, and rates for the end-to-end stage's policy and glance."""
  m = cfg.model
  require(m.policy_batchnorm, "model.policy_batchnorm", m.policy_batchnorm,
          "must be true for V2 (its policy encoder has batch norm)")
  require(all(w >= 1 for w in m.policy_mlp) and m.policy_mlp,
          "model.policy_mlp", m.policy_mlp,
          "must be one or more positive widths")
  require(cfg.stage1.policy_lr > 0 and cfg.stage1.glance_lr > 0,
          "stage1.policy_lr", cfg.stage1.policy_lr,
          "V2's end-to-end stage 1 needs positive stage1.policy_lr and "
          "stage1.glance_lr")

"""The model of a config, built by its model family (``families/``)."""
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.families import registry


def build_model(cfg: ExperimentConfig):
  """The model of ``cfg``, its variables not yet created (see ``build_all``).

  Args:
    cfg: the experiment config; its family (``model.variant``) builds it.

  Raises:
    ValueError: an invalid config (``ExperimentConfig.validate``).
  """
  cfg.validate()
  return registry.of(cfg).build_model(cfg)

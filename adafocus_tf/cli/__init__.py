"""The command-line tools, one module per command; setup.py installs each
as the console script ``adafocus-<command>`` (underscores become dashes),
and ``launch/`` and ``datasets/`` keep a script of the old name for each.

  train           adafocus-train: stages 0-3 of a run, then the results table
  prepare         adafocus-prepare: videos and split lists -> TFRecord shards
  synthetic       adafocus-synthetic: the embedded synthetic dataset
  evaluate        adafocus-evaluate: a run's metrics and cost on a split
  predict         adafocus-predict: a run on video files and frame folders
  calibrate_exit  adafocus-calibrate-exit: AdaFocus+ early-exit thresholds
  export          adafocus-export: a run as a SavedModel for TF Serving
  serve_client    adafocus-serve-client: asks TF Serving about videos
  convert         adafocus-convert: reference PyTorch checkpoints -> a run
  flops           adafocus-flops: the GFLOPs of a config
  profile         adafocus-profile: a TensorBoard profile of inference
  data_service    adafocus-data-service: tf.data service for training input
  common          flags shared by several commands, the way in and out

Each command module defines its flags, ``main(argv)``, and ``run()``, which
the console script calls.
"""

COMMANDS = ("train", "prepare", "synthetic", "evaluate", "predict",
            "calibrate_exit", "export", "serve_client", "convert", "flops",
            "profile", "data_service")


def script_name(command: str) -> str:
  """The console script of ``command`` (a name in ``COMMANDS``)."""
  return "adafocus-" + command.replace("_", "-")

"""Converts the reference PyTorch implementation's checkpoints into runs.

Modules (docs/CONVERT.md has the user's view):

  * ``torch_pickle``: reads ``torch.save`` files with numpy only, safely.
  * ``checkpoint_file``: opens a checkpoint (``torch.load(weights_only=True)``
    when PyTorch is importable, else ``torch_pickle``).
  * ``reference``: what a reference checkpoint holds (AdaFocus V1,
    AdaFocus Something-Something, TSM, AdaFocusV2) and the architecture it
    implies.
  * ``v2``: official AdaFocusV2 and V2-TSM files: their architecture and
    the filling of the V2 models.
  * ``layouts``: tensor layout changes (OIHW -> HWIO, GRU gate order...).
  * ``state``: tracked taking of tensors and filling of Keras variables.
  * ``cnn``, ``recurrent``: the per-part name and shape mappings.
  * ``fill``: fills whole models (glance, focus, classifier, policy).
  * ``uni``, ``uni_tsm``, ``uni_x3d``, ``x3d``: official Uni-AdaFocus files
    of each family, and X3D's.
  * ``converted_config``, ``single_region_config``: a converted Uni run's
    config from the preset and the tensors.
  * ``config_checks``: a config checked against what the tensors imply.
  * ``tensor_shapes``: a required tensor's shape, or the error naming it.
  * ``errors``: the conversion's refusals.
  * ``run_writer``: writes a run directory that evaluate/predict/export read.

Importing this package imports neither TensorFlow nor PyTorch.
"""

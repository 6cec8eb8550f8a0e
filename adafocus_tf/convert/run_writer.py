"""Writes a converted checkpoint as a run directory (``runs/run_dir.py``).

The checkpoints are written with the project's own ``Checkpointer`` and
networks, so they have the object layout ``launch/train.py`` writes and
every loader reads, without the optimisers (the converted stage is done;
nothing resumes it), and no PPO agent or optimiser is built:

| reference file                        | run stage written (done.json)   |
| ------------------------------------- | ------------------------------- |
| AdaFocus checkpoint with a policy     | 2: model, actor, critic         |
| (stage 2 or 3; V1 or Something-      |                                 |
| Something)                            |                                 |
| AdaFocus checkpoint without a policy  | 1: model                        |
| (stage 1), or ``ignore_policy``       |                                 |
| backbone files (stage 0, TSM)         | 0: glance and/or focus net with |
|                                       | its head                        |
| AdaFocusV2 file (V2 or V2-TSM)        | 1: model (its policy included;  |
|                                       | V2's one end-to-end stage)      |
| Uni-AdaFocus file (ActivityNet        | 1: model (both policies         |
| family, or the TSM family)            | included; its one end-to-end    |
|                                       | stage)                          |

``runs.trained_run.TrainedRun`` takes the model from the latest stage's
checkpoint and the policy's actor from stage 2's, so
``launch/evaluate.py``, ``predict.py`` and ``export.py`` work on the run,
and ``launch/train.py --resume=RUN --stage=...`` trains it further.

``config.json`` is the dataset preset (V2's for a V2 file,
``get_preset(dataset, method="v2")``; Uni-AdaFocus's for a Uni file) with
the architecture the tensors imply (classes, classifier, policy sizes,
Uni-AdaFocus's glance and focus frames), the torch-layout glance backbone
``mobilenet_v2_torch`` (the preset's ``mobilenet_v2`` is Keras' own, with
different padding), the patch size and any overrides; it is written last,
so a failed conversion leaves no run that looks complete.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Callable, Iterable, Optional

import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.convert import config_checks
from adafocus_tf.convert import converted_config
from adafocus_tf.convert import errors
from adafocus_tf.convert import fill
from adafocus_tf.convert import reference
from adafocus_tf.convert import single_region_config
from adafocus_tf.convert import uni
from adafocus_tf.convert import uni_tsm
from adafocus_tf.convert import uni_x3d
from adafocus_tf.convert import v2
from adafocus_tf.convert.state import Filler, TensorSource
from adafocus_tf.families import registry
from adafocus_tf.models import factory
from adafocus_tf.policy import action_space
from adafocus_tf.policy import greedy
from adafocus_tf.policy import networks
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir

# The reference's backbones in our torch-layout builders.
_GLANCE_BACKBONE = "mobilenet_v2_torch"
_FOCUS_BACKBONE = "resnet50"
# ``method`` values: the file's own, or a requirement.
AUTO_METHOD = ""
# The method of the families converted from V1's, V2's and Uni-AdaFocus's
# official files.
_V1_METHOD, _V2_METHOD = "v1", "v2"
_UNI_METHOD = converted_config.UNI_METHOD
METHODS = (_V1_METHOD, _V2_METHOD, _UNI_METHOD)
# Presets of each model family (a wrong --dataset is named with them).
_SOMETHING_PRESETS = "sthv1, sthv2 or jester"
_ONE_STREAM_PRESETS = "actnet, fcvid or minik"


def make_config(dataset: str, patch_size: int,
                arch: Optional[reference.Architecture], something: bool,
                data_dir: str = "", seed: Optional[int] = None,
                overrides: Iterable[str] = (),
                log: Callable[[str], None] = logging.info
                ) -> ExperimentConfig:
  """The converted run's config.

  Args:
    dataset: preset name (``config.PRESETS``).
    patch_size: P (not in the weights: the focus net takes any size).
    arch: what the tensors imply (None for backbone-only files).
    something: the checkpoint is a Something-Something (TSM) one.
    data_dir: prepared dataset for evaluation ("" to give it later).
    seed: the run's seed (None: the preset's).
    overrides: ``key=value`` strings, applied last (as ``--override``).
    log: where changes to the preset are reported.

  Raises:
    ArchitectureError: the preset's model family does not match the
      checkpoint's, or the classes disagree.
    ValueError: a bad override.
  """
  cfg = config_lib.get_preset(dataset)
  _check_family(cfg, dataset, something)
  converted_config.set_fields(cfg, {"model.patch_size": patch_size},
                              "--patch_size", log)
  converted_config.set_fields(cfg, {"model.glance_backbone": _GLANCE_BACKBONE,
             "model.focus_backbone": _FOCUS_BACKBONE,
             "model.glance_width": 1.0}, "the reference's torch layout", log)
  if arch is not None:
    converted_config.set_fields(cfg, arch.config_fields(),
                                "the checkpoint's tensors", log)
  if data_dir:
    cfg.data.data_dir = data_dir
  if seed is not None:
    cfg.seed = seed
  config_lib.apply_overrides(cfg, overrides)
  if arch is not None and cfg.data.num_classes != arch.num_classes:
    raise errors.ArchitectureError(
        f"the checkpoint classifies {arch.num_classes} classes but the "
        f"config has data.num_classes={cfg.data.num_classes}: wrong "
        "--dataset, or a custom dataset that needs "
        f"--override=data.num_classes={arch.num_classes}")
  return cfg


def _check_family(cfg: ExperimentConfig, dataset: str,
                  something: bool) -> None:
  """Refuses a preset of the other family (TSM or one-stream)."""
  if bool(cfg.model.temporal_shift) != something:
    want = _SOMETHING_PRESETS if something else _ONE_STREAM_PRESETS
    raise errors.ArchitectureError(
        f"the checkpoint is {'a' if something else 'not a'} "
        f"Something-Something (TSM) one but --dataset={dataset} is "
        f"{'not ' if something else ''}such a preset: use {want}")


def make_v2_config(dataset: str, patch_size: int, arch: v2.Architecture,
                   data_dir: str = "", seed: Optional[int] = None,
                   overrides: Iterable[str] = (),
                   log: Callable[[str], None] = logging.info
                   ) -> ExperimentConfig:
  """The config of a converted AdaFocusV2 run.

  Args:
    dataset: preset name; its V2 preset is used.
    patch_size: P (not in the weights).
    arch: what the file's tensors imply.
    data_dir: prepared dataset for evaluation ("" to give it later).
    seed: the run's seed (None: the preset's).
    overrides: ``key=value`` strings, applied last.
    log: where changes to the preset are reported.

  Raises:
    ArchitectureError: the preset is of the other family, or a data field
      (classes, frames) or the glance size disagrees with the tensors.
    ValueError: a bad override.
  """
  cfg = config_lib.get_preset(dataset, method=_V2_METHOD)
  _check_family(cfg, dataset, arch.family == reference.V2_TSM)
  converted_config.set_fields(cfg, {"model.patch_size": patch_size},
                              "--patch_size", log)
  converted_config.set_fields(cfg, arch.config_fields(),
                              "the checkpoint's tensors", log)
  if data_dir:
    cfg.data.data_dir = data_dir
  if seed is not None:
    cfg.seed = seed
  config_lib.apply_overrides(cfg, overrides)
  config_checks.check_data_fields(cfg, arch.data_fields())
  config_checks.check_map_side(cfg, arch.map_side, v2.BACKBONE_STRIDE,
                               policy="policy")
  return cfg


def make_uni_config(dataset: str, patch_size: int, arch: uni.Architecture,
                    data_dir: str = "", seed: Optional[int] = None,
                    overrides: Iterable[str] = (),
                    log: Callable[[str], None] = logging.info
                    ) -> ExperimentConfig:
  """The config of a converted Uni-AdaFocus run.

  The candidates N (``data.num_frames``) are not in the weights: the
  preset's (48), or an override's.

  Args:
    dataset: preset name; its Uni-AdaFocus preset is used.
    patch_size: P (not in the weights).
    arch: what the file's tensors imply.
    data_dir: prepared dataset for evaluation ("" to give it later).
    seed: the run's seed (None: the preset's).
    overrides: ``key=value`` strings, applied last.
    log: where changes to the preset are reported.

  Raises:
    ArchitectureError: no Uni-AdaFocus preset of that name, or the classes,
      the candidates or the glance map disagree with the tensors.
    ValueError: a bad override.
  """
  cfg = converted_config.uni_preset(
      dataset, reference.UNI,
      "a Uni-AdaFocus one of the ActivityNet family", patch_size, arch,
      data_dir, seed, overrides, log)
  config_checks.check_data_fields(cfg,
                                  {"data.num_classes": arch.num_classes})
  n, g, k = cfg.data.num_frames, arch.glance_frames, arch.focus_frames
  if n % g or k > n:
    raise errors.ArchitectureError(
        f"the checkpoint has {g} glance and {k} focus steps, so the "
        f"candidates data.num_frames must be a multiple of {g} and at least "
        f"{k}, but the config has data.num_frames={n}: "
        "--override=data.num_frames=<N> (the official commands' N is 48)")
  log(f"data.num_frames={n}: the candidate frames (not in the checkpoint; "
      "the preset's or --override's)")
  config_checks.check_map_side(cfg, arch.map_side, v2.BACKBONE_STRIDE)
  return cfg


def make_uni_tsm_config(dataset: str, patch_size: int,
                        arch: uni_tsm.Architecture, data_dir: str = "",
                        seed: Optional[int] = None,
                        overrides: Iterable[str] = (),
                        log: Callable[[str], None] = logging.info
                        ) -> ExperimentConfig:
  """The config of a converted Uni-AdaFocus-TSM run.

  The focus frames K and the candidates N are not in the weights: the
  preset's (12 of 36), or overrides'.

  Args:
    dataset: preset name; its Uni-AdaFocus preset is used (sthv1, sthv2,
      jester).
    patch_size: P (not in the weights).
    arch: what the file's tensors imply.
    data_dir: prepared dataset for evaluation ("" to give it later).
    seed: the run's seed (None: the preset's).
    overrides: ``key=value`` strings, applied last.
    log: where changes to the preset are reported.

  Raises:
    ArchitectureError: no Uni-AdaFocus-TSM preset of that name, or the
      classes, the frames or the glance map disagree with the tensors
      (``uni_tsm.check_config``).
    ValueError: a bad override.
  """
  return single_region_config.make_config(
      dataset, reference.UNI_TSM, "a Uni-AdaFocus-TSM one", patch_size, arch,
      data_dir, seed, overrides, log, uni_tsm.check_config)


def _done(run: str, stage: int, info: dict) -> None:
  io_utils.write_json(run_dir.done_path(run, stage), dict(info, step=0))


def _model(cfg):
  model = factory.build_model(cfg)
  model.build_all()
  return model


def _save(run, stage, log, **objects) -> int:
  """Writes stage ``stage``'s checkpoint of ``objects`` (no optimiser).

  The converted stage is marked done (``done.json``), so training never
  resumes it: a later stage starts from its model (and, after stage 2,
  uses its actor), which is all a checkpoint here holds.
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  checkpoints.Checkpointer(tf.distribute.get_strategy(),
                           run_dir.checkpoint_dir(run, stage), step=step,
                           **objects).save(0)
  log(f"stage {stage} checkpoint ({', '.join(sorted(objects))}) written "
      f"under {run_dir.checkpoint_dir(run, stage)}")
  return stage


def _write_policy_stage(cfg, run, ckpt, srcs, model_filled, log):
  """Stage 2: the model and the policy's actor and critic."""
  model = _model(cfg)
  # One glance map per step, or (one patch per video) the maps of all
  # glance frames stacked on channels, frame-major like the reference's
  # view(b, t * c, h, w).
  h, w, c = greedy.observation_shape(cfg, model.glance.map_shape)
  _, actor, critic = networks.from_config(
      cfg.model, (h, w, c), action_space.from_config(cfg.model))
  filler = Filler()
  model_filled(model, filler)
  policy_src = fill.policy_source(ckpt, srcs)
  fill.fill_policy(actor, critic, policy_src, (c, h, w), filler)
  fill.check_policy_copies(srcs, policy_src)
  used = list(srcs.values()) + ([policy_src] if policy_src not in
                                srcs.values() else [])
  fill.finish_all(used, filler, fill.unique_variables(
      model.weights, actor.variables, critic.variables))
  return _save(run, 2, log, model=model, actor=actor, critic=critic)


def _write_supervised_stage(cfg, stage, run, srcs_used, model_filled, log):
  """Stage 0 or 1: the model."""
  model = _model(cfg)
  filler = Filler()
  extra = model_filled(model, filler) or []
  variables = model.weights
  if stage == 0:
    # Only the converted nets must be complete; the rest stays random (the
    # classifier is trained by stage 1), and says so.
    variables = []
    for role in cfg.stage0.backbones.split(","):
      variables += getattr(model, role).weights
    log("stage 0: the classifier keeps its random initialisation (stage 1 "
        "trains it)")
  fill.finish_all(list(srcs_used) + list(extra), filler, variables)
  return _save(run, stage, log, model=model)


def convert(dataset: str, patch_size: int, out: str, checkpoint: str = "",
            glance_checkpoint: str = "", focus_checkpoint: str = "",
            data_dir: str = "", seed: Optional[int] = None,
            overrides: Iterable[str] = (), ignore_policy: bool = False,
            method: str = AUTO_METHOD,
            log: Callable[[str], None] = logging.info) -> dict:
  """Converts reference checkpoint(s) into the run directory ``out``.

  Args:
    dataset: preset name.
    patch_size: P.
    out: the run directory to create (must not hold a run already).
    checkpoint: a whole-model AdaFocus checkpoint (stage 1, 2 or 3).
    glance_checkpoint: a backbone file for the glance net (the reference's
      stage-0 ``globalcnn.pth.tar``, or a TSM MobileNetV2); excludes
      ``checkpoint``.
    focus_checkpoint: the same for the focus net (``localcnn.pth.tar``, a
      TSM ResNet-50).
    data_dir: prepared dataset recorded in the config.
    seed: the run's seed.
    overrides: ``key=value`` config overrides.
    ignore_policy: convert a policy-bearing checkpoint without its policy
      (its tensors are then read and dropped, and the log says so).
    method: ``v1`` or ``v2`` to require that family of files ("" takes
      the files' own: an AdaFocusV2 file makes a V2 run).
    log: progress and decisions, one line each.

  Returns:
    dict with ``run``, ``stage`` (the stage written), ``config`` (the
    resolved config) and ``sources`` (the files read).

  Raises:
    ConversionError: the tensors do not fit (subclasses name the keys).
    CheckpointFormatError: a file is not a checkpoint.
    FileExistsError: ``out`` already holds a run.
  """
  if bool(checkpoint) == bool(glance_checkpoint or focus_checkpoint):
    raise ValueError("give either checkpoint (a whole model) or "
                     "glance_checkpoint and/or focus_checkpoint (backbones)")
  if method not in (AUTO_METHOD,) + METHODS:
    raise ValueError(f"method {method!r}: one of {METHODS}, or "
                     "empty for the checkpoint's own")
  if io_utils.exists(io_utils.join(out, run_dir.CONFIG)):
    raise FileExistsError(f"{out} already holds a run (config.json); "
                          "choose another --out")
  created = not io_utils.exists(out)
  try:
    if checkpoint:
      stage, cfg = _convert_model(dataset, patch_size, out, checkpoint,
                                  data_dir, seed, overrides, ignore_policy,
                                  method, log)
      files = {"checkpoint": os.path.abspath(checkpoint)}
    else:
      if method not in (AUTO_METHOD,) + _backbone_methods():
        raise errors.ArchitectureError(
            f"{method.upper()} is converted from one whole-model file "
            "(--checkpoint); backbone files make runs of the methods "
            f"{', '.join(_backbone_methods())}")
      stage, cfg = _convert_backbones(dataset, patch_size, out,
                                      glance_checkpoint, focus_checkpoint,
                                      data_dir, seed, overrides, log)
      files = {k: os.path.abspath(v) for k, v in (
          ("glance_checkpoint", glance_checkpoint),
          ("focus_checkpoint", focus_checkpoint)) if v}
    _done(out, stage, {"converted_from": files})
    run_dir.write_config(out, cfg)
  except BaseException:
    if created and "://" not in out and os.path.isdir(out):
      shutil.rmtree(out, ignore_errors=True)
    raise
  log(f"run directory {out} written (stage {stage} done)")
  return {"run": out, "stage": stage, "config": cfg, "sources": files}


def _backbone_methods():
  """The methods of the families that start from official backbone files:
  those converting the official AdaFocus (V1) checkpoints, whose stage 0
  writes them."""
  methods = []
  for name in registry.names():
    family = registry.get(name)
    if (any(kind == reference.ADAFOCUS
            for kind, _ in family.official_checkpoints)
        and family.method not in methods):
      methods.append(family.method)
  return tuple(methods)


def _file_method(ckpt: reference.Checkpoint) -> str:
  for name in registry.names():
    family = registry.get(name)
    if (ckpt.kind, ckpt.family) in family.official_checkpoints:
      return family.method
  raise errors.ArchitectureError(
      f"{ckpt.path}: no registered model family converts a {ckpt.kind} "
      f"({ckpt.family}) checkpoint")


def _check_method(ckpt: reference.Checkpoint, method: str) -> None:
  """Refuses a file of the other method than the one asked for."""
  have = _file_method(ckpt)
  if method not in (AUTO_METHOD, have):
    what = {reference.ADAFOCUS_V2:
                f"an AdaFocusV2 ({ckpt.family}) checkpoint",
            reference.UNI_ADAFOCUS:
                f"a Uni-AdaFocus ({ckpt.family}) checkpoint"}.get(
                    ckpt.kind, "an AdaFocus (V1) or TSM checkpoint")
    raise errors.ArchitectureError(
        f"{ckpt.path} is {what}, not a {method} one: it converts with "
        f"--method={have} (or without --method)")


def _convert_model(dataset, patch_size, out, path, data_dir, seed, overrides,
                   ignore_policy, method, log):
  ckpt = reference.load(path)
  _check_method(ckpt, method)
  if ckpt.kind == reference.UNI_ADAFOCUS:
    return _convert_uni(dataset, patch_size, out, ckpt, data_dir, seed,
                        overrides, ignore_policy, log)
  if ckpt.kind == reference.ADAFOCUS_V2:
    return _convert_v2(dataset, patch_size, out, ckpt, data_dir, seed,
                       overrides, ignore_policy, log)
  if ckpt.kind != reference.ADAFOCUS:
    raise errors.ArchitectureError(
        f"{path} is a TSM backbone checkpoint: pass it as "
        "--glance_checkpoint or --focus_checkpoint")
  arch = reference.architecture(ckpt)
  if ignore_policy and arch.policy:
    log("--ignore_policy: the checkpoint's policy is not converted")
    arch.policy = ""
  something = ckpt.family == reference.SOMETHING
  cfg = make_config(dataset, patch_size, arch, something, data_dir, seed,
                    overrides, log)
  log("entries not converted (training state, or empty): "
      f"{', '.join(ckpt.other) or 'none'}")
  srcs = fill.sources(ckpt)
  fill.check_model_state(srcs)

  def model_filled(model, filler):
    fill.fill_model(model, ckpt, srcs, filler)

  if arch.policy:
    return _write_policy_stage(cfg, out, ckpt, srcs, model_filled, log), cfg
  # No policy converted: any policy tensors are dropped knowingly.
  policy = fill.policy_source(ckpt, srcs)
  if policy is not None:
    for key in list(policy.keys()):
      policy.skip(key)
    fill.check_policy_copies(srcs, policy)
  return _write_supervised_stage(cfg, 1, out, srcs.values(), model_filled,
                                 log), cfg


def _convert_v2(dataset, patch_size, out, ckpt, data_dir, seed, overrides,
                ignore_policy, log):
  """An AdaFocusV2 file: stage 1 (V2's one stage) with the whole model."""
  if ignore_policy:
    raise errors.ArchitectureError(
        f"{ckpt.path} is an AdaFocusV2 checkpoint: its policy is part of "
        "the model, so --ignore_policy does not apply")
  arch = v2.architecture(ckpt)
  cfg = make_v2_config(dataset, patch_size, arch, data_dir, seed, overrides,
                       log)
  log("entries not converted (training state): "
      f"{', '.join(ckpt.other) or 'none'}")
  src = TensorSource(ckpt.entries["state_dict"], ckpt.origin("state_dict"))

  def model_filled(model, filler):
    v2.fill_model(model, src, arch, filler)

  return _write_supervised_stage(cfg, 1, out, [src], model_filled, log), cfg


def _convert_uni(dataset, patch_size, out, ckpt, data_dir, seed, overrides,
                 ignore_policy, log):
  """A Uni-AdaFocus file: stage 1 (its one stage) with the whole model."""
  if ignore_policy:
    raise errors.ArchitectureError(
        f"{ckpt.path} is a Uni-AdaFocus checkpoint: its policies are part "
        "of the model, so --ignore_policy does not apply")
  # The family's module: the ActivityNet family's, the TSM or the X3D one's.
  lib, make = {reference.UNI_TSM: (uni_tsm, make_uni_tsm_config),
               reference.UNI_X3D: (uni_x3d, uni_x3d.make_config)}.get(
                   ckpt.family, (uni, make_uni_config))
  arch = lib.architecture(ckpt)
  cfg = make(dataset, patch_size, arch, data_dir, seed, overrides, log)
  log("entries not converted (training state): "
      f"{', '.join(ckpt.other) or 'none'}")
  src = TensorSource(ckpt.entries["state_dict"], ckpt.origin("state_dict"))

  def model_filled(model, filler):
    lib.fill_model(model, src, filler)

  return _write_supervised_stage(cfg, 1, out, [src], model_filled, log), cfg


def _convert_backbones(dataset, patch_size, out, glance_path, focus_path,
                       data_dir, seed, overrides, log):
  ckpts = {role: reference.load(p) for role, p in
           (("glance", glance_path), ("focus", focus_path)) if p}
  for c in ckpts.values():
    whole = {reference.ADAFOCUS_V2: "AdaFocusV2",
             reference.UNI_ADAFOCUS: "Uni-AdaFocus"}.get(c.kind)
    if whole:
      raise errors.ArchitectureError(
          f"{c.path} is a whole {whole} model: pass it as --checkpoint")
  something = {c.kind == reference.TSM or c.family == reference.SOMETHING
               for c in ckpts.values()}
  if len(something) != 1:
    raise errors.ArchitectureError("the glance and focus files come from "
                                   "different model families")
  roles = ",".join(ckpts)
  cfg = make_config(dataset, patch_size, None, something.pop(), data_dir,
                    seed, list(overrides) + [f"stage0.backbones={roles}"],
                    log)
  for role, c in ckpts.items():
    classes = reference.head_classes(c, role)
    if classes is not None and classes != cfg.data.num_classes:
      raise errors.ArchitectureError(
          f"{c.path}: the {role} head classifies {classes} classes but the "
          f"config has data.num_classes={cfg.data.num_classes}: wrong "
          f"--dataset, or --override=data.num_classes={classes}")
    left = [e for e in c.entries if e not in (
        "state_dict", "glancer" if role == "glance" else "focuser")]
    log(f"{c.path}: the {role} net is converted; entries not read: "
        f"{', '.join(left + c.other) or 'none'}")
  used = []

  def model_filled(model, filler):
    for role, c in ckpts.items():
      used.extend(fill.fill_backbone_file(getattr(model, role), c, role,
                                          filler))
    return used

  return _write_supervised_stage(cfg, 0, out, [], model_filled, log), cfg

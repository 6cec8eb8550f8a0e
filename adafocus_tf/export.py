"""SavedModel export of a trained run for TF Serving.

``export_run`` writes one model version in TF Serving's layout::

  <model>/<version>/
    saved_model.pb
    variables/variables.{index,data-*}
    assets.extra/adafocus.json     config, class names, patch choice, GFLOPs,
                                   early-exit thresholds, signatures

Signatures (documented for clients in ``docs/SERVING.md``):

  ``serving_default``: ``frames`` uint8 [B, T, H, W, 3], any H and W (every
    video of a request has the same size); T is the run's ``num_frames``.
    The graph resizes the short side to ``eval_resize``, centre-crops
    ``frame_size`` and normalises, exactly as evaluation does.
  ``tf_example``: ``examples`` string [B], serialized SequenceExamples of
    the project's record format (``data/schema.py``; ``labels`` may be
    empty). The graph parses them, takes T frames by TSN centre sampling and
    decodes the JPEGs into the evaluation crop window.

Both return ``probabilities`` float32 [B, C] (at the exit step),
``top_k_indices`` int32 [B, k], ``top_k_probabilities`` float32 [B, k],
``top_k_classes`` string [B, k] (k = min(5, C)), ``patch_boxes`` float32
[B, T, 4] ((ymin, xmin, ymax, xmax) fractions of the network input frame)
and ``exit_step`` int32 [B] (T - 1 without early exit).

The graph holds only TensorFlow ops and variables: it loads with TF
Serving, ``saved_model_cli`` or ``tf.saved_model.load`` without this
package. It always computes in float32 (a mixed-precision run's variables
are float32 already; CPU serving has no fast float16).
"""
from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

import adafocus_tf
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import augment
from adafocus_tf.data import sampling
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.models import factory
from adafocus_tf.models import patches
from adafocus_tf.training import experiment
from adafocus_tf.training import run_dir

SERVING_DEFAULT = "serving_default"
EXAMPLE_SIGNATURE = "tf_example"
FRAMES_INPUT = "frames"
EXAMPLES_INPUT = "examples"
OUTPUTS = ("probabilities", "top_k_indices", "top_k_probabilities",
           "top_k_classes", "patch_boxes", "exit_step")
TOP_K = 5
METADATA_FILE = "adafocus.json"
METADATA_DIR = "assets.extra"
METADATA_VERSION = 1


# -- graph pieces ------------------------------------------------------------
def _checked(value, *assertions):
  """``value`` once every assertion op has run (no AutoGraph here)."""
  with tf.control_dependencies(assertions):
    return tf.identity(value)


def preprocess_frames(frames, data_cfg):
  """Raw uint8 videos to normalised network input (the evaluation transform).

  Args:
    frames: uint8 [B, T, H, W, 3].
    data_cfg: the run's ``DataConfig`` (eval_resize, frame_size, mean, std).

  Returns:
    float32 [B, T, S, S, 3], S = frame_size.
  """
  shape = tf.shape(frames)
  b, t, h, w = shape[0], shape[1], shape[2], shape[3]
  # TF Serving feeds whatever arrives, whatever the signature says: a slice
  # of 3 channels would silently drop the 4th (alpha) of RGBA frames.
  h = _checked(h, tf.debugging.assert_equal(
      shape[4], 3, message="frames must have 3 channels (RGB)"))
  h = _checked(h, tf.debugging.assert_positive(
      h, message="frames have height 0"))
  w = _checked(w, tf.debugging.assert_positive(
      w, message="frames have width 0"))
  window = augment.eval_window(h, w, data_cfg.eval_resize,
                               data_cfg.frame_size)
  crop = tf.slice(frames, tf.stack([0, 0, window[0], window[1], 0]),
                  tf.stack([b, t, window[2], window[3], 3]))
  flat = tf.reshape(crop, tf.stack([b * t, window[2], window[3], 3]))
  # As augment.decode_frames resizes each decoded crop.
  size = data_cfg.frame_size
  resized = tf.image.resize(flat, [size, size], antialias=True)
  out = tf.reshape(resized, tf.stack([b, t, size, size, 3]))
  out = tf.ensure_shape(out, [None, frames.shape[1], size, size, 3])
  return augment.normalize(out, data_cfg.mean, data_cfg.std)


def preprocess_example(serialized, data_cfg):
  """One serialized video to normalised network input, as evaluation reads it.

  Args:
    serialized: scalar string, a SequenceExample (``schema.py``).
    data_cfg: the run's ``DataConfig``.

  Returns:
    float32 [T, S, S, 3].
  """
  v = schema.parse_video(serialized)
  jpegs = _checked(v[schema.FRAMES], tf.debugging.assert_positive(
      tf.shape(v[schema.FRAMES])[0],
      message="the SequenceExample has no frames"))
  num = tf.shape(jpegs)[0]
  idx = sampling.sample_indices(num, data_cfg.num_frames, training=False,
                                dense=data_cfg.dense_sampling)
  height = tf.cast(v[schema.HEIGHT], tf.int32)
  width = tf.cast(v[schema.WIDTH], tf.int32)
  # The crop window comes from the context's size; a JPEG of another size
  # would be cropped wrongly (or fail obscurely), so say so instead. Every
  # frame, not only the first: reading a JPEG's header costs little.
  context = tf.stack([height, width])
  stored = tf.map_fn(lambda jpeg: tf.io.extract_jpeg_shape(jpeg)[:2], jpegs,
                     fn_output_signature=tf.int32)
  same = tf.reduce_all(tf.equal(stored, context), axis=1)
  first_bad = tf.argmin(tf.cast(same, tf.int32), output_type=tf.int32)
  height = _checked(height, tf.debugging.Assert(
      tf.reduce_all(same),
      [v[schema.VIDEO_ID], ": frame", first_bad, "is (height, width)",
       stored[first_bad], "but the context says", context]))
  window = augment.eval_window(height, width, data_cfg.eval_resize,
                               data_cfg.frame_size)
  frames = augment.decode_frames(tf.gather(jpegs, idx), window,
                                 data_cfg.frame_size)
  frames = tf.ensure_shape(frames, [data_cfg.num_frames, None, None, 3])
  return augment.normalize(frames, data_cfg.mean, data_cfg.std)


def early_exit(step_probs, thresholds):
  """AdaFocus+ early exit: the first step confident enough, else the last.

  Args:
    step_probs: float [B, T, C] the prediction after each frame.
    thresholds: float [T]; video b exits at the first t with
      max_c step_probs[b, t, c] >= thresholds[t], else at T - 1.

  Returns:
    (exit_step int32 [B], probabilities [B, C] at the exit step).
  """
  confidence = tf.reduce_max(step_probs, axis=-1)
  hit = confidence >= tf.cast(thresholds, confidence.dtype)[None, :]
  first = tf.argmax(tf.cast(hit, tf.int32), axis=1, output_type=tf.int32)
  last = tf.shape(step_probs)[1] - 1
  step = tf.where(tf.reduce_any(hit, axis=1), first, last)
  return step, tf.gather(step_probs, step, axis=1, batch_dims=1)


class _Untracked:
  """Holds Keras and tf-agents objects out of the SavedModel's object graph.

  Saving them as children would serialise their Python-side Keras
  metadata (slow, and useless to TF Serving); their variables are tracked
  as plain lists instead.

  Args:
    **objects: the objects, as attributes.
  """

  def __init__(self, **objects):
    self.__dict__.update(objects)


class ServingModule(tf.Module):
  """The exported graph: preprocessing, model, patch choice, outputs.

  Args:
    cfg: the run's config.
    model: the trained ``AdaFocus`` model.
    class_names: C class names.
    policy: the greedy tf-agents policy, or None for centre patches.
    policy_variables: the policy's variables (actor network).
    policy_glance: the glance net the policy was trained on, when its
      weights differ from ``model.glance`` (else None: shared).
    thresholds: early-exit thresholds [T], or None.
  """

  def __init__(self, cfg: ExperimentConfig, model, class_names: Sequence[str],
               policy=None, policy_variables=(), policy_glance=None,
               thresholds: Optional[np.ndarray] = None):
    super().__init__(name="adafocus_serving")
    d = cfg.data
    if len(class_names) != d.num_classes:
      raise ValueError(f"{len(class_names)} class names for "
                       f"{d.num_classes} classes")
    if thresholds is not None:
      thresholds = np.asarray(thresholds, np.float32)
      if thresholds.shape != (d.num_frames,):
        raise ValueError(f"thresholds have shape {thresholds.shape}, "
                         f"expected ({d.num_frames},)")
    self._refs = _Untracked(cfg=cfg, model=model, policy=policy,
                            policy_glance=policy_glance,
                            class_names=[str(c) for c in class_names],
                            thresholds=thresholds)
    # What the graph reads: tracked, so saved with it.
    extra = list(policy_glance.variables) if policy_glance else []
    self.model_variables = list(model.variables) + extra
    self.policy_variables = list(policy_variables)
    self.serve_frames = tf.function(
        self._serve_frames, autograph=False, input_signature=[
            tf.TensorSpec([None, d.num_frames, None, None, 3], tf.uint8,
                          name=FRAMES_INPUT)])
    self.serve_examples = tf.function(
        self._serve_examples, autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])

  def _serve_frames(self, frames):
    return self.predict(preprocess_frames(frames, self._refs.cfg.data))

  def _serve_examples(self, examples):
    d = self._refs.cfg.data
    frames = tf.map_fn(
        lambda s: preprocess_example(s, d), examples,
        fn_output_signature=tf.TensorSpec(
            [d.num_frames, d.frame_size, d.frame_size, 3], tf.float32))
    return self.predict(frames)

  def offsets(self, frames, glance_maps):
    """Patch offsets [B, T, 2]: the policy's argmax, or the centre."""
    d, m = self._refs.cfg.data, self._refs.cfg.model
    refs = self._refs
    if refs.policy is None:
      return patches.centre_offsets(tf.shape(frames)[:2], d.frame_size,
                                    m.patch_size)
    if refs.policy_glance is not None:
      shape = tf.shape(frames)
      maps, _ = refs.policy_glance(
          tf.reshape(frames, tf.concat([[-1], shape[2:]], 0)))
      glance_maps = tf.reshape(maps, tf.concat([shape[:2],
                                                tf.shape(maps)[1:]], 0))
    from adafocus_tf.policy import trainer  # pylint: disable=g-import-not-at-top
    return trainer.greedy_offsets_from_maps(refs.policy, glance_maps,
                                            refs.cfg)

  def predict(self, frames):
    """The serving outputs (``OUTPUTS``), a dict of tensors.

    Args:
      frames: float32 [B, T, S, S, 3] normalised network input.
    """
    d, m = self._refs.cfg.data, self._refs.cfg.model
    model = self._refs.model
    frames = _checked(frames, tf.debugging.assert_positive(
        tf.shape(frames)[0], message="empty batch: send at least one video"))
    glance_maps, pooled = model.glance_features(frames)
    offsets = self.offsets(frames, glance_maps)
    focus = model.focus_features(frames, offsets)
    logits = model.classifier(model.fuse(pooled, focus), None, training=False)
    step_probs = tf.cast(model.classifier.step_probs(logits), tf.float32)
    thresholds = self._refs.thresholds
    if thresholds is None:
      b = tf.shape(step_probs)[0]
      exit_step = tf.fill([b], d.num_frames - 1)
      probs = step_probs[:, -1]
    else:
      exit_step, probs = early_exit(step_probs, tf.constant(thresholds))
    k = min(TOP_K, d.num_classes)
    top_p, top_i = tf.math.top_k(probs, k)
    return {
        "probabilities": probs,
        "top_k_indices": top_i,
        "top_k_probabilities": top_p,
        "top_k_classes": tf.gather(tf.constant(self._refs.class_names),
                                   top_i),
        "patch_boxes": patches.offsets_to_boxes(offsets, d.frame_size,
                                                m.patch_size),
        "exit_step": tf.cast(exit_step, tf.int32),
    }

  def signatures(self):
    """The signature map to save: name -> concrete function."""
    return {SERVING_DEFAULT: self.serve_frames.get_concrete_function(),
            EXAMPLE_SIGNATURE: self.serve_examples.get_concrete_function()}


# -- what goes into the module ---------------------------------------------
def class_names_of(cfg: ExperimentConfig) -> list:
  """Class names from the run's data (``meta.json`` of its splits).

  Falls back to ``class_<i>`` (with a warning) when no split's meta is
  readable, e.g. after the data moved.
  """
  for split in (cfg.data.train_split, cfg.data.eval_split):
    if not cfg.data.data_dir:
      break
    try:
      names = shards.read_meta(io_utils.join(cfg.data.data_dir, split))[
          "class_names"]
    except (FileNotFoundError, ValueError, tf.errors.OpError) as e:
      logging.info("no class names from split %s: %s", split, e)
      continue
    if len(names) == cfg.data.num_classes:
      return list(names)
  logging.warning("no meta.json with %d class names under %r: the export "
                  "names classes class_<i>", cfg.data.num_classes,
                  cfg.data.data_dir)
  return [f"class_{i}" for i in range(cfg.data.num_classes)]


def _same_weights(a, b) -> bool:
  va, vb = a.variables, b.variables
  return len(va) == len(vb) and all(
      x.shape == y.shape and np.array_equal(x.numpy(), y.numpy())
      for x, y in zip(va, vb))


def _load_policy(cfg: ExperimentConfig, run: str, model):
  """The trained policy of ``run`` as ServingModule arguments and metadata."""
  from adafocus_tf.policy import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  t = trainer_lib.PolicyTrainer(cfg, tf.distribute.get_strategy(), run,
                                progress=False)
  t.initialize(None)
  # Stages 2 and 3 keep the glance net frozen, so the policy's glance is
  # normally the final model's and runs once; a run where they differ gets
  # both, so that the patches are the ones the policy would choose.
  shared = _same_weights(t.model.glance, model.glance)
  args = {"policy": t.agent.policy, "policy_variables": t.actor.variables,
          "policy_glance": None if shared else t.model.glance}
  return args, {"policy_checkpoint": t.ckpt.manager.latest_checkpoint,
                "policy_glance_shared": shared}


def load_thresholds(run: str) -> np.ndarray:
  """Early-exit thresholds of a run from ``adafocus_tf.early_exit``.

  Raises:
    RuntimeError: the early-exit module is not available, or the run has
      no calibrated thresholds.
  """
  try:
    from adafocus_tf import early_exit as early_exit_lib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise RuntimeError("--early_exit needs adafocus_tf/early_exit.py "
                       f"(AdaFocus+ calibration): {e}") from None
  thresholds = early_exit_lib.load_thresholds(run)
  if thresholds is None:
    raise RuntimeError(f"{run} has no early-exit thresholds: calibrate them "
                       "first (launch/calibrate_exit.py)")
  return np.asarray(thresholds, np.float32)


# -- writing -----------------------------------------------------------------
def _commit_local(tmp: str, export_dir: str) -> None:
  # A directory rename is atomic on one filesystem: a watcher sees the
  # version directory complete or not at all.
  os.rename(tmp, export_dir)


def _upload(local: str, export_dir: str) -> None:
  """Copies a finished export to a remote version directory, .pb last.

  Object stores have no directory rename, so the version appears file by
  file; TF Serving reads ``saved_model.pb`` first, and it comes last.
  """
  files = []
  for root, _, names in os.walk(local):
    files += [os.path.join(root, n) for n in names]
  pb = os.path.join(local, "saved_model.pb")
  for path in sorted(files, key=lambda p: p == pb):
    dest = io_utils.join(export_dir, os.path.relpath(path, local).replace(
        os.sep, "/"))
    io_utils.makedirs(dest.rsplit("/", 1)[0])
    tf.io.gfile.copy(path, dest, overwrite=True)


def _is_remote(path: str) -> bool:
  return "://" in path


def write_saved_model(module: ServingModule, export_dir: str,
                      metadata: dict) -> None:
  """Saves ``module`` to ``export_dir`` with its metadata, all or nothing.

  Args:
    module: the serving module.
    export_dir: the version directory (``<model>/<version>``); must not
      exist.
    metadata: JSON-able dict written to ``assets.extra/adafocus.json``.

  Raises:
    FileExistsError: ``export_dir`` exists (a served version is immutable).
  """
  if io_utils.exists(export_dir):
    raise FileExistsError(f"{export_dir} exists; export to a new version "
                          "directory")
  remote = _is_remote(export_dir)
  parent = export_dir.rstrip("/").rsplit("/", 1)[0] if remote else (
      os.path.dirname(os.path.abspath(export_dir)))
  if remote:
    tmp = tempfile.mkdtemp(prefix="adafocus-export-")
  else:
    os.makedirs(parent, exist_ok=True)
    # A sibling on the same filesystem (for the rename), whose name TF
    # Serving ignores (not a version number).
    tmp = os.path.join(parent, io_utils.temp_name(
        os.path.basename(export_dir.rstrip("/"))))
  try:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    io_utils.makedirs(os.path.join(tmp, METADATA_DIR))
    io_utils.write_json(os.path.join(tmp, METADATA_DIR, METADATA_FILE),
                        metadata)
    if remote:
      _upload(tmp, export_dir)
    else:
      _commit_local(tmp, export_dir)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def _signature_doc(cfg: ExperimentConfig, k: int) -> dict:
  t, c = cfg.data.num_frames, cfg.data.num_classes
  outputs = {
      "probabilities": ["float32", [-1, c]],
      "top_k_indices": ["int32", [-1, k]],
      "top_k_probabilities": ["float32", [-1, k]],
      "top_k_classes": ["string", [-1, k]],
      "patch_boxes": ["float32", [-1, t, 4]],
      "exit_step": ["int32", [-1]],
  }
  return {
      SERVING_DEFAULT: {"inputs": {FRAMES_INPUT: ["uint8", [-1, t, -1, -1, 3]]},
                        "outputs": outputs},
      EXAMPLE_SIGNATURE: {"inputs": {EXAMPLES_INPUT: ["string", [-1]]},
                          "outputs": outputs},
  }


def export_run(run: str, export_dir: str, early_exit_on: bool = False,
               thresholds: Optional[np.ndarray] = None,
               class_names: Optional[Sequence[str]] = None) -> dict:
  """Exports a trained run as a TF Serving model version.

  Args:
    run: the run directory (its config and latest stage checkpoint).
    export_dir: the version directory, ``<workspace>/exports/<model>/<N>``.
    early_exit_on: apply AdaFocus+ early exit with the run's calibrated
      thresholds (``adafocus_tf.early_exit.load_thresholds``).
    thresholds: early-exit thresholds [T] to use instead of the run's
      (implies early exit).
    class_names: class names to use instead of the data's ``meta.json``.

  Returns:
    The metadata written to ``assets.extra/adafocus.json``.

  Raises:
    FileExistsError: ``export_dir`` exists.
    FileNotFoundError: the run has no checkpoint.
    RuntimeError: early exit asked for but unavailable.
    ValueError: a two-stream (Something-Something) config.
  """
  cfg = run_dir.read_config(run)
  factory.require_one_stream(cfg, "export")
  if io_utils.exists(export_dir):
    raise FileExistsError(f"{export_dir} exists; export to a new version "
                          "directory")
  if early_exit_on and thresholds is None:
    thresholds = load_thresholds(run)
  saved_policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    model, ckpt = experiment.final_model(cfg, run)
    policy_args, policy_meta = {}, {}
    if experiment.has_policy(run):
      policy_args, policy_meta = _load_policy(cfg, run, model)
    else:
      logging.warning("%s has no trained policy (stage 2): the export uses "
                      "centre patches", run)
    names = list(class_names) if class_names else class_names_of(cfg)
    module = ServingModule(cfg, model, names, thresholds=thresholds,
                           **policy_args)
    from adafocus_tf import flops  # pylint: disable=g-import-not-at-top
    cost = flops.video_macs(cfg)
  finally:
    tf.keras.mixed_precision.set_global_policy(saved_policy)
  choice = "policy" if policy_args else "centre"
  k = min(TOP_K, cfg.data.num_classes)
  metadata = {
      "metadata_version": METADATA_VERSION,
      "run": run,
      "checkpoint": ckpt,
      "patches": choice,
      **policy_meta,
      "class_names": names,
      "num_frames": cfg.data.num_frames,
      "frame_size": cfg.data.frame_size,
      "eval_resize": cfg.data.eval_resize,
      "top_k": k,
      "early_exit": None if thresholds is None else {
          "thresholds": [float(x) for x in thresholds],
          "rule": "exit at the first step t whose max class probability >= "
                  "thresholds[t]; else the last step"},
      "gflops_per_video": flops.choice_gflops(cost, choice),
      "macs_per_frame": cost,
      "signatures": _signature_doc(cfg, k),
      "config": cfg.to_dict(),
      "made_by": {
          "command": " ".join(sys.argv),
          "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
          "adafocus_tf": adafocus_tf.__version__,
          "tensorflow": tf.__version__,
      },
  }
  write_saved_model(module, export_dir, metadata)
  return metadata


def read_metadata(export_dir: str) -> dict:
  """The ``assets.extra/adafocus.json`` of an export."""
  return io_utils.read_json(io_utils.join(export_dir, METADATA_DIR,
                                          METADATA_FILE))


def next_version_dir(model_dir: str) -> str:
  """``<model_dir>/<N+1>``, N the highest existing version (0 when none)."""
  versions = [0]
  if io_utils.exists(model_dir):
    versions += [int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_dir)
                 if n.rstrip("/").isdigit()]
  return io_utils.join(model_dir, str(max(versions) + 1))

"""Predictions of a trained run on video files and frame folders.

``Predictor`` loads a run once (its ``Recognizer``, class names, cost) and
then predicts any number of inputs, of either model family:

  predictor = Predictor(run)
  clip = predictor.read("clip.mp4")         # or a folder of image_00001.jpg...
  result = predictor.predict(clip, top_k=5)
  result.to_json()

What runs the recognizer (``backend``):

  * ``tflite``: the whole recognizer as one TensorFlow Lite model under
    XNNPACK (policy or centre patches of a V1 or two-stream run);
  * ``hybrid``: only the glance network as a TFLite model under XNNPACK;
    its outputs go to the rest (policy, patches, focus, classifier) in
    TensorFlow's compiled graph (``Recognizer.__call__``'s ``glance``), so
    every patch choice and model family runs;
  * ``tf``: TensorFlow's kernels throughout;
  * ``auto`` (the default): the fastest here, measured
    (``backend_calibration``): the first ``auto`` on a run times each
    backend that can run it on the run's own input shapes, at one video per
    call and at a batch (some seconds, once per machine: the choices are
    cached keyed by the CPU model and the thread count), and keeps the
    fastest for each, a near tie going to the order above (the fastest
    first on the CPU of docs/BENCHMARKS.md, issue 15); a call on N videos
    runs on the choice of the nearer batch size;
    ``tf`` on a GPU or under mixed precision. A forced backend never
    measures. ``prepare(run)`` does this (and the caching below) ahead of
    time.

The TFLite models are float32 (the same top-1 and patches, probabilities
within 1e-4), converted on first use and cached beside the run's
checkpoints (``serving/tflite_cache.py``).

Start-up. The run is read once (``runs.trained_run.TrainedRun``: its
config, weights, patch choice and thresholds). The first predictor on a
run builds its Keras recognizer, restores and folds it, traces its forward
pass and saves that compiled pass as the run's ready form
(``ready_form``: ``<run>/ready/``, or a local cache directory for an
``s3://`` or read-only run; keyed by the weights' content, the config, the
patch choice and the versions; one progress line says so). Later
predictors load the ready form instead: no Keras model is built (the
``recognizer`` attribute builds it on first use), no MACs counted, no
Python tracing.

Inputs are read as evaluation reads videos (``clips.py``). A prediction
(``prediction.Prediction``) gives its patch boxes in pixels of the original
frame.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.data import pipeline
from adafocus_tf.inference import backend_calibration
from adafocus_tf.inference import clips
from adafocus_tf.inference import prediction as prediction_lib
from adafocus_tf.inference import ready_form
from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.profiling import flops
from adafocus_tf.runs import trained_run
from adafocus_tf.serving import tflite_cache
from adafocus_tf.serving import tflite_model
from adafocus_tf.serving import tflite_runner

# Patch choices that need nothing but the frames (``oracle`` needs object
# boxes, which only prepared synthetic data has).
FILE_CHOICES = ("policy", "centre", "random")
AUTO = trained_run.AUTO
HYBRID = "hybrid"
TFLITE = "tflite"
TENSORFLOW = "tf"
BACKENDS = (AUTO, HYBRID, TFLITE, TENSORFLOW)
# ``auto`` measures these (those that run here) and TensorFlow's kernels,
# and keeps the fastest; a near tie keeps this order (the fastest first on
# the CPU of docs/BENCHMARKS.md, issue 15): ``backend_calibration``.
AUTO_ORDER = (TFLITE, HYBRID)
# The name seeding the calibration input's random patches.
CALIBRATION_INPUT = "calibration"
DEFAULT_BACKEND = AUTO


class Predictor:
  """A run loaded once for predictions on files or preprocessed frames.

  Args:
    run: the run directory (local or ``s3://``), or a
      ``trained_run.TrainedRun``.
    patches: ``auto`` (policy when stage 2 is done, else centre),
      ``policy``, ``centre`` or ``random`` (seeded by the run seed and the
      input's file name).
    early_exit: report the prediction at the step the run's AdaFocus+
      thresholds (fitted by launch/calibrate_exit.py) choose, and the cost
      of the exit steps up to it (``Recognizer.exit_step_macs``: what
      step-by-step inference runs; Uni-AdaFocus's exit step 0 is the glance
      alone); they compare the model's criterion
      (``exit_rule.criterion_of``: the steps' largest raw logits of an
      AdaFocusV2 or Uni-AdaFocus run, docs/METHOD.md V2-7, else the largest
      probability). Without
      thresholds, with thresholds of another criterion (each a warning) or
      without this, every clip runs all exit steps.
    backend: ``auto`` (the default: the fastest of those that run here,
      per batch size, measured once per machine and cached; see the
      module doc; with no
      TFLite form at all, ``tf``, logged as a warning), ``tflite`` (the
      recognizer as a TensorFlow Lite model under
      XNNPACK; not with random patches, drawn from per-input seeds it has no
      ops for, nor for sub-pixel patches, ``ModelFamily.fractional_patches``:
      AdaFocusV2, Uni-AdaFocus), ``hybrid`` (the
      glance network alone as a TFLite model, the rest TensorFlow's graph)
      or ``tf`` (TensorFlow's kernels). See the module doc.
    threads: CPU threads of the TFLite interpreter.
    allow_unfinished: use an unfinished later stage's weights
      (``final_weights.resolve``; said in ``warnings``).

  Attributes:
    run: the ``trained_run.TrainedRun``.
    cfg: the run's config.
    weights: the checkpoints used (``final_weights.FinalWeights``).
    recognizer: the run's ``Recognizer`` (final model, and its policy when
      ``patches`` is ``policy``), built on first use.
    checkpoint: the model checkpoint it was restored from.
    patches: the resolved patch choice.
    class_names: the class names, or None when the data's meta.json could
      not be read (predictions then name class indices only).
    class_names_source: the meta.json read, or why there are no names.
    frame_settings: how the data stored frames (applied to every input).
    step_macs: float [E] multiply-accumulates of each exit step.
    thresholds: float [E] early-exit thresholds in use, or None.
    warnings: things the user should know (missing names, thresholds).
    backend: ``tflite``, ``hybrid`` or ``tf``, the one a single video
      runs on.
    backends: {videos per call: backend}: ``auto``'s measured choice at
      each batch size of ``backend_calibration.BATCH_SIZES`` (a call on N
      videos runs on the nearest one's, ``backend_calibration.for_batch``),
      else ``{1: backend}`` for every N.
    backend_note: why ``auto`` passed over the backends before its choices
      in the order ``tflite``, ``hybrid``, ``tf`` (cannot run, or measured
      slower here), else "".

  Raises:
    FileNotFoundError: not a run directory, or no checkpoint in it.
    ValueError: a patch choice the run cannot make, or ``backend=tflite``
      or ``hybrid`` when the model cannot run there (the reason).
    final_weights.UnfinishedStageError: no stage of the run is finished.
    threshold_file.StaleThresholdsError: ``early_exit`` with thresholds fitted
      on other weights than the run's final ones.
  """

  def __init__(self, run, patches: str = AUTO, early_exit: bool = False,
               backend: str = DEFAULT_BACKEND,
               threads: int = tflite_runner.DEFAULT_THREADS,
               allow_unfinished: bool = False):
    if patches not in FILE_CHOICES + (AUTO,):
      raise ValueError(f"patches={patches!r}: choose one of "
                       f"{(AUTO,) + FILE_CHOICES}")
    if backend not in BACKENDS:
      raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")
    self.run = run = trained_run.TrainedRun.of(
        run, allow_unfinished=allow_unfinished)
    self.cfg = cfg = run.cfg
    self.weights = run.weights
    self.patches = run.resolve_patches(patches)
    self.checkpoint = self.weights.model_checkpoint
    self.warnings = []
    unfinished = self.weights.unfinished
    if unfinished is not None:
      self.warnings.append(
          f"stage {unfinished.stage} is unfinished: predicting with its "
          f"weights at {unfinished.progress()}, as asked")
    meta, where = clips.read_data_meta(cfg)
    self.class_names, self.class_names_source = clips.class_names_of(
        cfg, meta, where)
    if self.class_names is None:
      self.warnings.append("class names unavailable "
                           f"({self.class_names_source}): showing class "
                           "indices")
    self.frame_settings = clips.frame_settings_of(meta)
    if meta is None:
      self.warnings.append(
          "frames are stored with prepare's defaults (short side "
          f"{self.frame_settings.short_side}), not the data's own settings")
    # Read first: stale thresholds fail before anything is built.
    self.thresholds = run.thresholds() if early_exit else None
    d = cfg.data
    self._input_specs = {
        key: tf.TensorSpec([None, count, d.frame_size, d.frame_size, 3],
                           tf.float32)
        for key, count in clips.frame_streams(cfg).items()}
    self._threads = threads
    self._recognizer = None
    self._forms = {}
    self.backends, engines, self.backend_note = self._start(backend)
    self.backend = self.backends[min(self.backends)]
    self._engines = {b: engines[name] for b, name in self.backends.items()}
    # The facts below come from the ready form, not the Keras recognizer.
    facts = self._facts()
    self.step_macs = facts.step_macs
    num_steps = facts.num_exit_steps
    criterion = exit_rule.criterion_of(cfg)
    stored = (run.threshold_criterion() if self.thresholds is not None
              else criterion)
    if stored != criterion:
      # E.g. a V2 run calibrated before V2 exited on raw logits.
      self.thresholds = None
      self.warnings.append(
          f"{run.path}'s early-exit thresholds compare "
          f"{stored}, but this model exits on "
          f"{criterion} (refit them with launch/calibrate_exit.py): every "
          f"clip runs all {num_steps} steps")
    elif early_exit and self.thresholds is None:
      self.warnings.append(f"{run.path} has no early-exit thresholds (fit "
                           "them with launch/calibrate_exit.py): every clip "
                           f"runs all {num_steps} steps")

  @property
  def recognizer(self) -> recognizer_lib.Recognizer:
    """The run's ``Recognizer`` (final model, and its policy when
    ``patches`` is ``policy``), built on first use: predicting from a
    cached ready form does not need it."""
    if self._recognizer is None:
      self._recognizer = self.run.recognizer(
          with_policy=self.patches == "policy")
    return self._recognizer

  # -- backends ---------------------------------------------------------------
  def _form(self, variant: str, glance_specs=None, load: bool = True):
    """The run's ``ready_form`` of ``variant`` (built once per run)."""
    if variant not in self._forms:
      self._forms[variant] = ready_form.load_or_build(
          self.run, self.patches, variant, lambda: self.recognizer,
          self._input_specs, glance_specs, load=load)
    return self._forms[variant]

  def _facts(self) -> ready_form.ReadyForm:
    """A ready form, for what every variant knows alike (exit steps' MACs,
    glance frames, region layout)."""
    if self._forms:
      return next(iter(self._forms.values()))
    return self._form(ready_form.TF, load=False)

  def _start(self, backend: str):
    """Sets up ``backend`` (``auto``: the fastest here, measured).

    Args:
      backend: one of ``BACKENDS``.

    Returns:
      ({videos per call: the backend in use} (``backends``), {backend:
      its engine} for those in use, why ``auto`` passed over others or
      "").

    Raises:
      ValueError: ``tflite`` or ``hybrid`` that cannot run (why).
    """
    if backend == TENSORFLOW:
      return {1: TENSORFLOW}, {TENSORFLOW: self._tf_engine()}, ""
    if backend != AUTO:
      engine, note = self._try_engine(backend)
      if engine is None:
        raise ValueError(f"backend={backend}: {note}")
      return {1: backend}, {backend: engine}, ""
    return self._start_auto()

  def _start_auto(self):
    """Sets up the fastest backend here: the cached choice, else measured
    (``backend_calibration``); returns what ``_start`` does."""
    note = self._tflite_unavailable()
    notes = [note] if note else []
    order = []
    for candidate in () if note else AUTO_ORDER:
      why = self._tflite_obstacle(candidate)
      if why:
        notes.append(f"{candidate}: {why}")
      else:
        order.append(candidate)
    if not order:
      note = "; ".join(notes)
      logging.warning("TensorFlow kernels instead of TFLite (%s)", note)
      return {1: TENSORFLOW}, {TENSORFLOW: self._tf_engine()}, note
    order.append(TENSORFLOW)
    if not backend_calibration.measuring():
      return self._first_that_runs(order, notes)
    path = backend_calibration.choice_path(self.run, self.patches, order,
                                           self._threads)
    cached = backend_calibration.cached_choice(path, order)
    if cached is not None:
      choices, note = cached
      # Only the chosen backends are set up (a failed conversion measures
      # again below).
      engines = {name: (self._tf_engine() if name == TENSORFLOW
                        else self._try_engine(name)[0])
                 for name in set(choices.values())}
      if all(engine is not None for engine in engines.values()):
        return choices, engines, note
    engines = {}
    for candidate in order:
      engine, why = (self._tf_engine(), "") if candidate == TENSORFLOW else (
          self._try_engine(candidate))
      if engine is None:
        notes.append(f"{candidate}: {why}")
      else:
        engines[candidate] = engine
    if len(engines) > 1:
      choices, seconds = backend_calibration.choose(
          {batch: {name: functools.partial(self._calibrate, engine, batch)
                   for name, engine in engines.items()}
           for batch in backend_calibration.BATCH_SIZES}, list(engines),
          os.path.dirname(path))
      passed = backend_calibration.passed_over(choices, list(engines))
      if passed:
        notes.append(passed)
    else:  # Every TFLite conversion failed: nothing to measure.
      choices, seconds = {1: TENSORFLOW}, {}
    note = "; ".join(notes)
    if seconds:
      backend_calibration.store(path, choices, note, seconds, self._threads)
    else:
      logging.warning("TensorFlow kernels instead of TFLite (%s)", note)
    return choices, engines, note

  def _first_that_runs(self, order, notes):
    """What ``_start`` returns for the first backend of ``order`` that runs
    (``backend_calibration.ORDER``), ``notes`` saying why others did not.
    """
    for candidate in order[:-1]:
      engine, why = self._try_engine(candidate)
      if engine is not None:
        note = "; ".join(notes)
        if notes:
          logging.info("backend %s (%s)", candidate, note)
        return {1: candidate}, {candidate: engine}, note
      notes.append(f"{candidate}: {why}")
    note = "; ".join(notes)
    logging.warning("TensorFlow kernels instead of TFLite (%s)", note)
    return {1: TENSORFLOW}, {TENSORFLOW: self._tf_engine()}, note

  def _calibrate(self, engine, batch: int):
    """``engine`` on ``batch`` videos of zeros (the calibration input)."""
    d = self.cfg.data
    inputs = {key: np.zeros([batch, count, d.frame_size, d.frame_size, 3],
                            np.float32)
              for key, count in clips.frame_streams(self.cfg).items()}
    return engine(inputs, [CALIBRATION_INPUT] * batch)

  def _try_engine(self, backend: str):
    """(an engine running ``backend``, "") or (None, why it cannot run).

    Args:
      backend: ``tflite`` or ``hybrid``.
    """
    why = self._tflite_unavailable() or self._tflite_obstacle(backend)
    if why:
      return None, why
    part = tflite_model.GLANCE if backend == HYBRID else tflite_model.WHOLE
    try:
      # The recognizer is built only when the flatbuffer must be converted.
      blob = tflite_cache.flatbuffer(self.run, lambda: self.recognizer,
                                     self.patches, part)
    except tflite_model.ConversionError as e:
      return None, str(e)
    runner = tflite_runner.Runner(blob, self._threads)
    if backend == TFLITE:
      return functools.partial(self._tflite_outputs, runner), ""
    glance_specs = {k: tf.TensorSpec((None,) + shape[1:], tf.float32)
                    for k, shape in runner.output_shapes.items()}
    form = self._form(ready_form.HYBRID, glance_specs)
    return functools.partial(self._tf_outputs, form, runner), ""

  def _tf_engine(self):
    """The engine of ``tf``: the ready form, TensorFlow's kernels
    throughout."""
    return functools.partial(self._tf_outputs, self._form(ready_form.TF),
                             None)

  @staticmethod
  def _tflite_unavailable() -> str:
    """Why no TFLite model should run in this process, or ""."""
    if tf.config.list_physical_devices("GPU"):
      return "a GPU is visible: TensorFlow's kernels run on it"
    dtype = tf.keras.mixed_precision.global_policy().compute_dtype
    if dtype != "float32":
      return (f"the Keras policy computes in {dtype}; the TFLite models are "
              "float32")
    return ""

  def _tflite_obstacle(self, backend: str) -> str:
    """Why the run's model has no TFLite form of ``backend`` (``tflite``
    or ``hybrid``) for the patch choice, or "" (conversion may still
    fail)."""
    if backend == TFLITE and self.patches == "random":
      return ("random patches are drawn from per-input seeds, which the "
              "TFLite model has no ops for")
    family = self.run.family
    if backend == TFLITE and family.fractional_patches:
      return (f"{family.title} places its patches at sub-pixel positions "
              "(bilinear sampling), which the whole TFLite model has no ops "
              "for or gives rounded (int32 patch_offsets)")
    return ""

  def _tflite_outputs(self, runner, inputs, names):
    """``exit_outputs`` of the whole TFLite model."""
    del names  # No random patches: the model takes no seeds.
    out = runner(inputs)
    probs = out["step_probabilities"]
    # The largest probability: the whole TFLite model runs no AdaFocusV2
    # run, the one model family that exits on raw logits.
    return (probs, exit_rule.confidences(probs),
            out[tflite_model.PATCH_OFFSETS].astype(np.int32))

  def _tf_outputs(self, form, glance_runner, inputs, names):
    """``exit_outputs`` of a ready form (``glance_runner``: the TFLite
    glance of the hybrid, else None)."""
    ids = tf.constant([os.path.basename(os.path.normpath(n)) for n in names])
    seeds = tf.map_fn(lambda v: pipeline.video_seed(v, self.cfg.seed, 0), ids,
                      fn_output_signature=tf.int64)
    tensors = {k: tf.convert_to_tensor(v, tf.float32)
               for k, v in inputs.items()}
    if glance_runner is None:
      out = form.forward(tensors, seeds)
    else:
      key = self.run.family.glance_stream(self.cfg)
      glance = glance_runner({key: inputs[key]})
      out = form.forward(tensors, seeds,
                         {k: tf.constant(v) for k, v in glance.items()})
    return tuple(np.asarray(x) for x in out)

  def gflops_per_video(self) -> float:
    """G MACs of a whole video (every exit step) with the patch choice."""
    return float(np.sum(self.step_macs)) / flops.G

  def read(self, path: str) -> clips.Clip:
    """Reads and preprocesses one input (see ``clips.read_clip``)."""
    return clips.read_clip(path, self.cfg, self.frame_settings)

  def predict_frames(self, inputs, names: Sequence[str]):
    """Runs the recognizer on preprocessed frames.

    Args:
      inputs: see ``exit_outputs``.
      names: N names of the inputs (they seed random patches).

    Returns:
      ``(exit_probs float [N, E, C], offsets [N, K, D])`` (see
      ``exit_outputs``).
    """
    probs, _, offsets = self.exit_outputs(inputs, names)
    return probs, offsets

  def exit_outputs(self, inputs, names: Sequence[str]):
    """``predict_frames`` and what early-exit thresholds compare.

    Args:
      inputs: {input key: float32 [N, T_k, S, S, 3]} normalised network
        inputs (``clips.frame_streams``); a plain array is the V1 model's
        ``frames``.
      names: N names of the inputs (they seed random patches).

    Returns:
      ``(exit_probs float [N, E, C], confidences float [N, E]
      (``exit_rule.step_confidences``), offsets [N, K, D])``: int
      top-left offsets (D = 2), float sub-pixel ones of an AdaFocusV2 run,
      or a Uni-AdaFocus run's float focus plans (D = 5).
    """
    if not isinstance(inputs, dict):
      inputs = {"frames": inputs}
    batch = backend_calibration.for_batch(self._engines, len(names))
    return self._engines[batch](inputs, names)

  def exit_steps(self, confidences) -> np.ndarray:
    """The 0-based exit step each video stops at: [N].

    Args:
      confidences: float [N, E] (``exit_outputs``).
    """
    confidences = np.asarray(confidences)
    if self.thresholds is None:
      return np.full(confidences.shape[0], confidences.shape[1] - 1)
    return exit_rule.exit_steps_from_confidences(confidences,
                                                 self.thresholds)

  def predict(self, clip: clips.Clip, top_k: int = 5
              ) -> prediction_lib.Prediction:
    """Predicts one clip.

    Args:
      clip: from ``read``.
      top_k: classes to report.

    Returns:
      The prediction.
    """
    probs, confidences, offsets = self.exit_outputs(
        {k: v[None] for k, v in clip.inputs.items()}, [clip.path])
    exit_step = int(self.exit_steps(confidences)[0])
    probs, offsets = probs[0], offsets[0]
    final = probs[exit_step]
    order = np.argsort(-final, kind="stable")[:max(1, top_k)]
    names = self.class_names
    top = [(int(c), names[c] if names else None, float(final[c]))
           for c in order]
    facts, m = self._facts(), self.cfg
    glance_key = self.run.family.glance_stream(m)
    frames_of, regions = facts.patch_regions(offsets[None])
    regions = np.asarray(regions, np.float64)[0]
    stream = np.asarray(clip.patch_indices)
    if frames_of is None:
      # One region per frame, or the video's one region on every frame.
      positions = np.arange(len(stream))
      regions = np.broadcast_to(regions, (len(stream), 4))
      offsets = np.broadcast_to(offsets, (len(stream), offsets.shape[-1]))
    else:
      positions = np.asarray(frames_of)[0]
    stored, original = clips.region_boxes(
        regions, clip.window, m.data.frame_size, clip.stored_size,
        clip.original_size)
    crop_stored, crop_original = clips.patch_boxes(
        [[0, 0]], clip.window, m.data.frame_size, m.data.frame_size,
        clip.stored_size, clip.original_size)
    glance = clip.indices[glance_key][facts.glance_frame_positions]
    if (glance_key == clip.patch_key
        and len(glance) == len(clip.indices[glance_key])):
      glance = []  # The glance reads the sampled frames themselves.
    read_at = facts.patch_exit_steps
    return prediction_lib.Prediction(
        input=clip.path, kind=clip.kind, frame_size=clip.original_size,
        num_frames=len(clip.stored.jpegs),
        sampled_frames=[int(i) for i in stream],
        glance_frames=[int(i) for i in glance], top_k=top,
        exit_step=exit_step, num_steps=int(probs.shape[0]),
        early_exit=self.thresholds is not None,
        gflops=float(np.sum(self.step_macs[:exit_step + 1])) / flops.G,
        patches=self.patches, plan=facts.plan,
        offsets=(offsets if np.issubdtype(offsets.dtype, np.floating)
                 else offsets.astype(np.int64)),
        patch_positions=[int(i) for i in positions],
        patch_frames=[int(i) for i in stream[positions]],
        regions=regions, boxes=original, stored_boxes=stored,
        patch_steps=(None if read_at is None
                     else [int(e) for e in read_at]),
        crop_box=crop_original[0].tolist(),
        stored_crop_box=crop_stored[0].tolist(),
        step_top1=[int(c) for c in probs.argmax(-1)])


def prepare(run, patches: str = AUTO,
            threads: int = tflite_runner.DEFAULT_THREADS) -> Dict[int, str]:
  """Does ahead of time what the first ``Predictor(run)`` on this machine
  does: builds and caches the run's ready forms and TFLite models, and
  measures the backends and caches the fastest per batch size for
  ``auto`` (module doc; a choice cached before is measured again: run it
  on a quiet machine).

  Args:
    run: the run directory or a ``trained_run.TrainedRun``.
    patches: the patch choice to prepare (see ``Predictor``).
    threads: the TFLite interpreter's threads the choice is measured with.

  Returns:
    The backends ``auto`` uses on this machine (``Predictor.backends``).
  """
  run = trained_run.TrainedRun.of(run)
  backend_calibration.forget(run, run.resolve_patches(patches), threads)
  return Predictor(run, patches, backend=AUTO, threads=threads).backends

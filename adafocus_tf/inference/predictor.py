"""Predictions of a trained run on video files and frame folders.

``Predictor`` loads a run once (its ``Recognizer``, class names, cost) and
then predicts any number of inputs, of either model family:

  predictor = Predictor(run)
  clip = predictor.read("clip.mp4")         # or a folder of image_00001.jpg...
  result = predictor.predict(clip, top_k=5)
  result.to_json()

What runs the recognizer (``backend``; measured on a 2-core CPU in
docs/BENCHMARKS.md, issue 15):

  * ``tflite``: the whole recognizer as one TensorFlow Lite model under
    XNNPACK (policy or centre patches of a V1 or two-stream run);
  * ``hybrid``: only the glance network as a TFLite model under XNNPACK;
    its outputs go to the rest (policy, patches, focus, classifier) in
    TensorFlow's compiled graph (``Recognizer.__call__``'s ``glance``), so
    every patch choice and model family runs;
  * ``tf``: TensorFlow's kernels throughout;
  * ``auto`` (the default): the fastest that can run here, in that order
    (``tf`` on a GPU or under mixed precision).

The TFLite models are float32 (the same top-1 and patches, probabilities
within 1e-4), converted on first use and cached beside the run's
checkpoints (``serving/tflite_cache.py``).

The run is read once (``runs.trained_run.TrainedRun``: its config,
weights, patch choice and thresholds); the predictor keeps what predicting
needs: the recognizer, the backend running it, the class names and the
exit rule.

Inputs are read as evaluation reads videos (``clips.py``). A prediction
(``prediction.Prediction``) gives its patch boxes in pixels of the original
frame.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.data import pipeline
from adafocus_tf.inference import clips
from adafocus_tf.inference import glance_output
from adafocus_tf.inference import prediction as prediction_lib
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
# ``auto`` takes the first of these that runs, the fastest first (measured
# in process: docs/BENCHMARKS.md, issue 15), else TensorFlow's kernels.
AUTO_ORDER = (TFLITE, HYBRID)
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
    backend: ``auto`` (the default: ``tflite``, else ``hybrid``, else
      ``tf``, whichever runs first; a fallback to ``tf`` is logged as a
      warning), ``tflite`` (the recognizer as a TensorFlow Lite model under
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
      ``patches`` is ``policy``).
    checkpoint: the model checkpoint it was restored from.
    patches: the resolved patch choice.
    class_names: the class names, or None when the data's meta.json could
      not be read (predictions then name class indices only).
    class_names_source: the meta.json read, or why there are no names.
    frame_settings: how the data stored frames (applied to every input).
    step_macs: float [E] multiply-accumulates of each exit step.
    thresholds: float [E] early-exit thresholds in use, or None.
    warnings: things the user should know (missing names, thresholds).
    backend: ``tflite``, ``hybrid`` or ``tf``, the one in use.
    backend_note: why ``auto`` passed over the faster backends (else "").

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
    self.recognizer = run.recognizer(with_policy=self.patches == "policy")
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
    self.step_macs = self.recognizer.exit_step_macs(flops.video_macs(cfg),
                                                    self.patches)
    self.thresholds = run.thresholds() if early_exit else None
    num_steps = self.recognizer.num_exit_steps
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
    d = cfg.data
    specs = {key: tf.TensorSpec([None, count, d.frame_size, d.frame_size, 3],
                                tf.float32)
             for key, count in clips.frame_streams(cfg).items()}
    seed_spec = tf.TensorSpec([None, 2], tf.int64)
    self._forward = tf.function(self._forward_impl,
                                input_signature=[specs, seed_spec])
    self._lite = self._glance_lite = None
    self.backend, self.backend_note = TENSORFLOW, ""
    if backend != TENSORFLOW:
      self._start_tflite(backend, threads, [specs, seed_spec])

  def _start_tflite(self, backend: str, threads: int, signature):
    """Sets up the first of ``backend``'s TFLite forms that runs here.

    Args:
      backend: ``auto`` (``AUTO_ORDER``), ``tflite`` or ``hybrid``.
      threads: interpreter threads.
      signature: ``_forward``'s input signature (the hybrid's compiled rest
        takes it and the glance's outputs).

    Raises:
      ValueError: ``tflite`` or ``hybrid`` that cannot run (why).
    """
    note = self._tflite_unavailable()
    notes = [note] if note else []
    for wanted in () if note else (
        AUTO_ORDER if backend == AUTO else (backend,)):
      runner, note = self._tflite_runner(wanted, threads)
      if runner is None:
        notes.append(f"{wanted}: {note}")
        continue
      self.backend = wanted
      if wanted == TFLITE:
        self._lite = runner
      else:
        self._glance_lite = runner
        glance_specs = {k: tf.TensorSpec((None,) + shape[1:], tf.float32)
                        for k, shape in runner.output_shapes.items()}
        self._forward_given_glance = tf.function(
            self._forward_impl, input_signature=signature + [glance_specs])
      break
    self.backend_note = "; ".join(notes)
    if self.backend != TENSORFLOW:
      if notes:
        logging.info("backend %s (%s)", self.backend, self.backend_note)
    elif backend != AUTO:
      raise ValueError(f"backend={backend}: {note}")
    else:
      logging.warning("TensorFlow kernels instead of TFLite (%s)",
                      self.backend_note)

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

  def _tflite_runner(self, backend: str, threads: int):
    """(a ``tflite_runner.Runner``, "") or (None, why not).

    Args:
      backend: ``tflite`` (the whole recognizer) or ``hybrid`` (its glance).
      threads: interpreter threads.
    """
    if backend == TFLITE and self.patches == "random":
      return None, ("random patches are drawn from per-input seeds, which "
                    "the TFLite model has no ops for")
    family = self.run.family
    if backend == TFLITE and family.fractional_patches:
      return None, (f"{family.title} places its patches at sub-pixel "
                    "positions (bilinear sampling), which the whole TFLite "
                    "model has no ops for or gives rounded (int32 "
                    "patch_offsets)")
    part = tflite_model.GLANCE if backend == HYBRID else tflite_model.WHOLE
    try:
      blob = tflite_cache.flatbuffer(self.run, self.recognizer, self.patches,
                                     part)
      return tflite_runner.Runner(blob, threads), ""
    except tflite_model.ConversionError as e:
      return None, str(e)

  def _forward_impl(self, inputs, seeds, glance=None):
    """Exit probabilities, their early-exit confidences and offsets;
    ``glance``: its ``as_outputs``, or None to run the glance network here."""
    outputs = self.recognizer(
        {**inputs, "seed": seeds}, self.patches,
        glance=None if glance is None
        else glance_output.Glance.from_outputs(glance))
    return (self.recognizer.exit_probs(outputs),
            exit_rule.step_confidences(self.recognizer, outputs),
            outputs.offsets)

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
    if self._lite is not None:
      out = self._lite(inputs)
      probs = out["step_probabilities"]
      # The largest probability: the whole TFLite model runs no AdaFocusV2
      # run, the one model family that exits on raw logits.
      return (probs, exit_rule.confidences(probs),
              out[tflite_model.PATCH_OFFSETS].astype(np.int32))
    ids = tf.constant([os.path.basename(os.path.normpath(n)) for n in names])
    seeds = tf.map_fn(lambda v: pipeline.video_seed(v, self.cfg.seed, 0), ids,
                      fn_output_signature=tf.int64)
    tensors = {k: tf.convert_to_tensor(v, tf.float32)
               for k, v in inputs.items()}
    if self._glance_lite is None:
      out = self._forward(tensors, seeds)
    else:
      key = self.recognizer.glance_key
      glance = self._glance_lite({key: inputs[key]})
      out = self._forward_given_glance(
          tensors, seeds, {k: tf.constant(v) for k, v in glance.items()})
    return tuple(x.numpy() for x in out)

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
    rec, m = self.recognizer, self.cfg
    frames_of, regions = rec.patch_regions(offsets[None])
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
    glance = clip.indices[rec.glance_key][rec.glance_frame_positions()]
    if (rec.glance_key == clip.patch_key
        and len(glance) == len(clip.indices[rec.glance_key])):
      glance = []  # The glance reads the sampled frames themselves.
    read_at = rec.patch_exit_steps()
    return prediction_lib.Prediction(
        input=clip.path, kind=clip.kind, frame_size=clip.original_size,
        num_frames=len(clip.stored.jpegs),
        sampled_frames=[int(i) for i in stream],
        glance_frames=[int(i) for i in glance], top_k=top,
        exit_step=exit_step, num_steps=int(probs.shape[0]),
        early_exit=self.thresholds is not None,
        gflops=float(np.sum(self.step_macs[:exit_step + 1])) / flops.G,
        patches=self.patches, plan=rec.choice_label(self.patches),
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

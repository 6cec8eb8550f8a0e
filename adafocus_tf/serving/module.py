"""The exported graph: requests -> the run's ``Recognizer`` -> serving outputs.

Signatures (documented for clients in ``docs/SERVING.md``):

  ``serving_default``: ``frames`` uint8 [B, N, H, W, 3], any H and W (every
    video of a request has the same size). N is the run's ``num_frames``
    for the V1 model (and AdaFocusV2); any N >= 1 for the two-stream
    models, whose glance and focus frames the graph samples from the N
    given, and for Uni-AdaFocus, whose candidates the graph samples
    (``preprocess.request_frames``).
  ``tf_example``: ``examples`` string [B], serialized SequenceExamples of
    the project's record format (``docs/DATA_FORMAT.md``; ``labels`` may be
    empty), any number of stored frames.

Both return ``OUTPUTS``: ``probabilities`` float32 [B, C] (at the exit
step), ``step_probabilities`` float32 [B, E, C] (the prediction after each
exit step), ``top_k_indices`` int32 [B, k], ``top_k_probabilities``
float32 [B, k], ``top_k_classes`` string [B, k] (k = min(5, C)),
``patch_boxes`` float32 [B, K, 4] ((ymin, xmin, ymax, xmax) fractions of
the network input frame: each region at its own size,
``Recognizer.patch_regions``) and ``exit_step`` int32 [B] (E - 1 without
early exit). E and K are the recognizer's exit steps and patches per video:
T and T for the V1 model; 2 (glance alone, then glance and focus) and 1
(one patch, cut from every focus frame) for the two-stream model.
AdaFocusV2 runs serve the same signatures: their patches sit at
real-valued offsets, so ``patch_boxes`` are at sub-pixel positions, while
``patch_offsets`` (the TensorFlow Lite export's int32 output) are rounded
to the nearest pixel; their early exit compares each step's largest raw
logit with the thresholds (docs/METHOD.md V2-7).

A model whose plans also choose the frames (``Recognizer.chooses_frames``:
Uni-AdaFocus, K + 1 exit steps: the glance alone, then one per focus
frame) serves the same outputs, its ``patch_boxes`` at the deformable
regions' sizes, plus ``PATCH_FRAMES``: ``patch_frames`` int32 [B, K], the
frame of the request each region is cut from (an index into the N frames
of ``serving_default``, or the stored frames of ``tf_example``).

The graph holds only TensorFlow ops and variables: it loads with TF
Serving, ``saved_model_cli`` or ``tf.saved_model.load`` without this
package.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from adafocus_tf.inference import recognizer as recognizer_lib
from adafocus_tf.inference.early_exit import exit_rule
from adafocus_tf.policy import patch_choice
from adafocus_tf.serving import EXAMPLES_INPUT
from adafocus_tf.serving import EXAMPLE_SIGNATURE
from adafocus_tf.serving import FRAMES_INPUT
from adafocus_tf.serving import SERVING_DEFAULT
from adafocus_tf.serving import preprocess

OUTPUTS = ("probabilities", "step_probabilities", "top_k_indices",
           "top_k_probabilities", "top_k_classes", "patch_boxes", "exit_step")
TOP_K = 5
# The extra output of ``numeric_outputs`` (the TensorFlow Lite export's).
PATCH_OFFSETS = "patch_offsets"
# The extra output of a recognizer whose plans choose the frames.
PATCH_FRAMES = "patch_frames"


def region_boxes(regions, frame_size: int):
  """(ymin, xmin, ymax, xmax) fractions of the frame of regions [..., 4]
  (y, x, height, width) in pixels (``Recognizer.patch_regions``)."""
  r = tf.cast(regions, tf.float32) / frame_size
  return tf.concat([r[..., :2], r[..., :2] + r[..., 2:]], -1)


def early_exit(step_probs, thresholds, confidence=None):
  """AdaFocus+ early exit: the first step confident enough, else the last.

  The graph form of the rule of ``inference.early_exit.exit_rule.exit_steps``.

  Args:
    step_probs: float [B, E, C] the prediction after each exit step.
    thresholds: float [E]; video b exits at the first e with
      confidence[b, e] >= thresholds[e], else at E - 1.
    confidence: float [B, E] (``exit_rule.step_confidences``: an
      AdaFocusV2 run's steps' largest raw logits); default
      max_c step_probs[b, e, c].

  Returns:
    (exit_step int32 [B], probabilities [B, C] at the exit step).
  """
  if confidence is None:
    confidence = tf.reduce_max(step_probs, axis=-1)
  hit = confidence >= tf.cast(thresholds, confidence.dtype)[None, :]
  first = tf.argmax(tf.cast(hit, tf.int32), axis=1, output_type=tf.int32)
  last = tf.shape(step_probs)[1] - 1
  step = tf.where(tf.reduce_any(hit, axis=1), first, last)
  return step, tf.gather(step_probs, step, axis=1, batch_dims=1)


def integer_offsets(offsets):
  """int32 patch offsets: an AdaFocusV2 run's sub-pixel ones (or a
  Uni-AdaFocus run's plans) rounded.

  Args:
    offsets: [B, K, D] int32, or float32 (V2: real-valued, bilinear
      patches; Uni-AdaFocus: focus plans, D = 5).
  """
  if offsets.dtype.is_floating:
    offsets = tf.round(offsets)
  return tf.cast(offsets, tf.int32)


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
  """The exported graph: preprocessing, the recognizer, outputs.

  Args:
    recognizer: the run's ``Recognizer`` (``loading.from_checkpoints``);
      its default patch choice is used (the policy when it has one, else
      the centre). Its variables (model, policy actor, the policy's own
      glance net if any) are saved with the module.
    class_names: C class names.
    thresholds: early-exit thresholds [E] (``recognizer.num_exit_steps``),
      or None.

  Raises:
    ValueError: class names or thresholds that do not fit the run.
  """

  def __init__(self, recognizer: recognizer_lib.Recognizer,
               class_names: Sequence[str],
               thresholds: Optional[np.ndarray] = None):
    super().__init__(name="adafocus_serving")
    cfg = recognizer.cfg
    if len(class_names) != cfg.data.num_classes:
      raise ValueError(f"{len(class_names)} class names for "
                       f"{cfg.data.num_classes} classes (data.num_classes)")
    num_steps = recognizer.num_exit_steps
    if thresholds is not None:
      thresholds = np.asarray(thresholds, np.float32)
      if thresholds.shape != (num_steps,):
        raise ValueError(f"thresholds have shape {thresholds.shape}, "
                         f"expected ({num_steps},): one per exit step")
    self._refs = _Untracked(recognizer=recognizer, cfg=cfg,
                            class_names=[str(c) for c in class_names],
                            thresholds=thresholds)
    # What the graph reads: tracked, so saved with it.
    self.model_variables = list(recognizer.model.variables) + (
        list(recognizer.policy_glance.variables)
        if recognizer.policy_glance is not None else [])
    self.policy_variables = (list(recognizer.policy.variables)
                             if recognizer.policy is not None else [])
    self.serve_frames = tf.function(
        self._serve_frames, autograph=False, input_signature=[
            tf.TensorSpec([None, preprocess.request_frames(cfg), None, None,
                           3], tf.uint8, name=FRAMES_INPUT)])
    self.serve_examples = tf.function(
        self._serve_examples, autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])

  @property
  def cfg(self):
    """The run's config."""
    return self._refs.cfg

  @property
  def recognizer(self):
    """The run's recognizer."""
    return self._refs.recognizer

  @property
  def top_k(self) -> int:
    """k of the ``top_k_*`` outputs."""
    return min(TOP_K, self._refs.cfg.data.num_classes)

  def _serve_frames(self, frames):
    return self.predict(*preprocess.preprocess_frames(
        frames, self._refs.cfg, with_indices=True))

  def _serve_examples(self, examples):
    return self.predict(*preprocess.preprocess_examples(
        examples, self._refs.cfg, with_indices=True))

  def predict(self, inputs, frame_indices=None):
    """The serving outputs (``OUTPUTS``, and ``PATCH_FRAMES`` when the
    recognizer's plans choose the frames), a dict of tensors.

    Args:
      inputs: {stream key: float32 [B, T_k, S, S, 3]} normalised network
        inputs (``preprocess``).
      frame_indices: {stream key: int32 [B, T_k]} the request's frames each
        stream sampled (``preprocess``'s ``with_indices``), or None.
    """
    out = self.numeric_outputs(inputs, frame_indices)
    del out[PATCH_OFFSETS]
    out["top_k_classes"] = tf.gather(tf.constant(self._refs.class_names),
                                     out["top_k_indices"])
    return out

  def numeric_outputs(self, inputs, frame_indices=None):
    """``predict``'s outputs but ``top_k_classes``, plus ``patch_offsets``.

    What the TensorFlow Lite export computes (``tflite_model``: it holds no
    strings; clients name the classes from its metadata). ``patch_offsets``
    is int32 [B, K, D], the recognizer's offsets rounded: the top-left
    (y, x) pixels of the patches in the network input (D = 2), or
    Uni-AdaFocus's plans (candidate, y, x, height, width; D = 5).

    Args:
      inputs: see ``predict``.
      frame_indices: see ``predict``; None: ``patch_frames`` index the
        frames of ``inputs``' patch stream.
    """
    refs = self._refs
    rec, d = refs.recognizer, refs.cfg.data
    b = tf.shape(next(iter(inputs.values())))[0]
    nonempty = tf.debugging.assert_positive(
        b, message="empty batch: send at least one video")
    inputs = {k: preprocess.checked(v, nonempty) for k, v in inputs.items()}
    # A pipeline batch carries per-video seeds; the patch choices served
    # (policy, centre) draw nothing from them.
    outputs = rec({**inputs, "seed": tf.zeros([b, 2], tf.int64)})
    step_probs = rec.exit_probs(outputs)
    if refs.thresholds is None:
      exit_step = tf.fill([b], rec.num_exit_steps - 1)
      probs = step_probs[:, -1]
    else:
      exit_step, probs = early_exit(
          step_probs, tf.constant(refs.thresholds),
          exit_rule.step_confidences(rec, outputs))
    top_p, top_i = tf.math.top_k(probs, self.top_k)
    frames_of, regions = rec.patch_regions(outputs.offsets)
    out = {
        "probabilities": probs,
        "step_probabilities": step_probs,
        "top_k_indices": top_i,
        "top_k_probabilities": top_p,
        "patch_boxes": region_boxes(regions, d.frame_size),
        "exit_step": tf.cast(exit_step, tf.int32),
        PATCH_OFFSETS: integer_offsets(outputs.offsets),
    }
    if rec.chooses_frames:
      if frame_indices is not None:
        stream = frame_indices[patch_choice.patch_stream(refs.cfg)]
        frames_of = tf.gather(stream, frames_of, batch_dims=1)
      out[PATCH_FRAMES] = tf.cast(frames_of, tf.int32)
    return out

  def signatures(self):
    """The signature map to save: name -> concrete function."""
    return {SERVING_DEFAULT: self.serve_frames.get_concrete_function(),
            EXAMPLE_SIGNATURE: self.serve_examples.get_concrete_function()}

  def outputs_doc(self) -> dict:
    """The outputs of ``predict`` as {name: [dtype, shape]} (-1: any)."""
    cfg = self._refs.cfg
    c, k = cfg.data.num_classes, self.top_k
    rec = self._refs.recognizer
    e = rec.num_exit_steps
    patches_per_video = patch_choice.patch_steps(cfg)
    doc = {
        "probabilities": ["float32", [-1, c]],
        "step_probabilities": ["float32", [-1, e, c]],
        "top_k_indices": ["int32", [-1, k]],
        "top_k_probabilities": ["float32", [-1, k]],
        "top_k_classes": ["string", [-1, k]],
        "patch_boxes": ["float32", [-1, patches_per_video, 4]],
        "exit_step": ["int32", [-1]],
    }
    if rec.chooses_frames:
      doc[PATCH_FRAMES] = ["int32", [-1, patches_per_video]]
    return doc

  def signature_doc(self) -> dict:
    """The signatures' inputs and outputs as [dtype, shape] (-1: any)."""
    cfg = self._refs.cfg
    outputs = self.outputs_doc()
    n = preprocess.request_frames(cfg) or -1
    return {
        SERVING_DEFAULT: {"inputs": {FRAMES_INPUT: ["uint8",
                                                    [-1, n, -1, -1, 3]]},
                          "outputs": outputs},
        EXAMPLE_SIGNATURE: {"inputs": {EXAMPLES_INPUT: ["string", [-1]]},
                            "outputs": outputs},
    }

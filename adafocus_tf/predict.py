"""Predictions of a trained run on video files and frame folders.

``Predictor`` loads a run once (config, final model, policy, class names,
cost) and then predicts any number of inputs:

  predictor = Predictor(run)
  clip = predictor.read("clip.mp4")         # or a folder of image_00001.jpg...
  result = predictor.predict(clip, top_k=5)
  result.to_json()

An input goes through exactly the steps a video of the run's data goes
through in evaluation: it is stored the way ``datasets/prepare.py`` stored the
data (``video_decode``: PyAV or the frame files, short side resized with the
settings recorded in the data's ``meta.json``, JPEG), then the evaluation
transform of ``pipeline.make_video_fn`` reads it (TSN segment centres,
"resize the short side to eval_resize, centre-crop frame_size" as one crop
window, ImageNet normalisation). A video evaluated from its prepared shard and
the same video given to ``predict`` therefore reach the network as the same
tensor.

Patch boxes come back in pixels of the original frame: the patch's offset in
the network input is mapped through the crop window (in stored pixels) and
the storage resize. A box ``[x0, y0, x1, y1]`` covers ``x0 <= x < x1``,
``y0 <= y < y1`` in continuous pixel coordinates (pixel (0, 0) spans
[0, 1) x [0, 1)).
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from adafocus_tf import early_exit as early_exit_lib
from adafocus_tf import flops
from adafocus_tf import io_utils
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import augment
from adafocus_tf.data import pipeline
from adafocus_tf.data import sampling
from adafocus_tf.data import shards
from adafocus_tf.data import video_decode
from adafocus_tf.models import factory
from adafocus_tf.training import evaluation
from adafocus_tf.training import experiment
from adafocus_tf.training import patch_choice
from adafocus_tf.training import run_dir

# Patch choices that need nothing but the frames (``oracle`` needs object
# boxes, which only prepared synthetic data has).
FILE_CHOICES = ("policy", "centre", "random")
AUTO = "auto"

BadInput = video_decode.BadInput


def resolve_patches(run: str, requested: str) -> str:
  """The patch choice to use for a run.

  Args:
    run: run directory.
    requested: ``auto`` (the learned policy once stage 2 is done, else the
      centre patch) or an explicit choice.

  Returns:
    The choice.

  Raises:
    ValueError: ``policy`` asked for a run without a finished stage 2.
  """
  if requested == AUTO:
    return "policy" if experiment.has_policy(run) else "centre"
  if requested == "policy" and not experiment.has_policy(run):
    raise ValueError(f"{run} has no trained policy (stage 2 is not done); "
                     "use --patches=centre or random, or train stage 2")
  return requested


def read_data_meta(cfg: ExperimentConfig) -> Tuple[Optional[dict], str]:
  """The ``meta.json`` of the run's data (evaluation split, else training).

  Args:
    cfg: the run's config (``data.data_dir`` and the split names).

  Returns:
    ``(meta, where)``: the meta dict and its split directory, or ``(None,
    reason)`` when no split's meta.json can be read.
  """
  if not cfg.data.data_dir:
    return None, "the run's config names no data_dir"
  reasons = []
  for split in dict.fromkeys((cfg.data.eval_split, cfg.data.train_split)):
    where = pipeline.split_dir(cfg.data, split)
    try:
      return shards.read_meta(where), where
    except (FileNotFoundError, ValueError, tf.errors.OpError) as e:
      reasons.append(str(e))
  return None, "; ".join(reasons)


def class_names_of(cfg: ExperimentConfig, meta: Optional[dict],
                   where: str) -> Tuple[Optional[List[str]], str]:
  """The run's class names, or why there are none.

  Args:
    cfg: the run's config.
    meta: the data's meta.json (``read_data_meta``), or None.
    where: its split directory, or the reason it is missing.

  Returns:
    ``(names, source)``: the names and the meta.json they came from, or
    ``(None, reason)``.
  """
  if meta is None:
    return None, f"no readable meta.json ({where})"
  names = meta.get("class_names") or []
  if len(names) != cfg.data.num_classes:
    return None, (f"{where}/meta.json has {len(names)} class names but the "
                  f"run has {cfg.data.num_classes} classes")
  return [str(n) for n in names], io_utils.join(where, shards.META)


def frame_settings_of(meta: Optional[dict]) -> video_decode.FrameSettings:
  """How the run's data stored frames (``made_by`` of meta.json).

  Data prepared by ``datasets/prepare.py`` records its short side, frame
  rate and JPEG quality; data without a record (the synthetic set, hand-made
  test data) gets prepare's defaults.

  Args:
    meta: the data's meta.json, or None.
  """
  made_by = (meta or {}).get("made_by") or {}
  default = video_decode.FrameSettings()
  return video_decode.FrameSettings(
      short_side=int(made_by.get("short_side", default.short_side)),
      fps=float(made_by.get("fps", default.fps)),
      jpeg_quality=int(made_by.get("jpeg_quality", default.jpeg_quality)))


@dataclasses.dataclass
class Clip:
  """One input, stored and preprocessed as evaluation reads a video.

  Attributes:
    path: the input as given.
    kind: ``video`` or ``frames`` (a frame folder).
    original_size: (width, height) of the input's frames.
    stored: the frames as ``prepare`` would store them (resized JPEGs).
    indices: int [T] the sampled frames, 0-based indices into ``stored``
      (frame ``k`` of a folder is file number ``k + 1``).
    window: int [4] the crop window (offset_y, offset_x, height, width) in
      stored pixels.
    frames: float32 [T, S, S, 3] the network input (normalised).
  """
  path: str
  kind: str
  original_size: Tuple[int, int]
  stored: video_decode.Frames
  indices: np.ndarray
  window: np.ndarray
  frames: np.ndarray

  @property
  def stored_size(self) -> Tuple[int, int]:
    """(width, height) of the stored frames."""
    return self.stored.width, self.stored.height

  def stored_image(self, t: int) -> Image.Image:
    """Sampled frame ``t`` as stored (RGB), for drawing."""
    jpeg = self.stored.jpegs[int(self.indices[t])]
    with Image.open(io.BytesIO(jpeg)) as image:
      return image.convert("RGB")


def _original_size(kind: str, path: str) -> Tuple[int, int]:
  """(width, height) of a video's frames or of a folder's first frame."""
  if kind == "frames":
    found = video_decode.list_frame_folder(path)
    with Image.open(os.path.join(path, found.name_of(min(found.names)))) as im:
      return im.width, im.height
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    ctx = container.streams.video[0].codec_context
    return int(ctx.width), int(ctx.height)


def preprocess(stored: video_decode.Frames, cfg: ExperimentConfig):
  """The evaluation transform of ``pipeline.make_video_fn`` on stored frames.

  Args:
    stored: a video's stored JPEG frames.
    cfg: the run's config (frames, sizes, normalisation).

  Returns:
    ``(indices int [T], window int [4], frames float32 [T, S, S, 3])``.
  """
  d = cfg.data
  num = tf.constant(len(stored.jpegs))
  idx = sampling.sample_indices(num, d.num_frames, False, d.dense_sampling)
  window = augment.eval_window(tf.constant(stored.height),
                               tf.constant(stored.width), d.eval_resize,
                               d.frame_size)
  jpegs = tf.gather(tf.constant(stored.jpegs), idx)
  frames = augment.normalize(
      augment.decode_frames(jpegs, window, d.frame_size), d.mean, d.std)
  return idx.numpy(), window.numpy(), frames.numpy()


def read_clip(path: str, cfg: ExperimentConfig,
              settings: video_decode.FrameSettings) -> Clip:
  """Reads a video file or frame folder into a preprocessed ``Clip``.

  Args:
    path: a local video file (anything FFmpeg decodes) or a folder of
      ``image_00001.jpg``... frames.
    cfg: the run's config.
    settings: how the run's data stored frames (``frame_settings_of``).

  Returns:
    The clip.

  Raises:
    BadInput: missing, unreadable, undecodable, truncated or empty input
      (the message says why, without the path).
  """
  if os.path.isdir(path):
    kind = "frames"
    stored = video_decode.read_frame_folder(path, None, settings)
  elif os.path.isfile(path):
    kind = "video"
    stored = video_decode.decode_video_file(path, settings)
  else:
    raise BadInput("no such file or directory")
  try:
    original = _original_size(kind, path)
    indices, window, frames = preprocess(stored, cfg)
  except tf.errors.InvalidArgumentError as e:
    raise BadInput(f"frames do not decode: {e.message}") from None
  except (OSError, ValueError) as e:
    raise BadInput(str(e)) from None
  return Clip(path, kind, original, stored, indices, window, frames)


@dataclasses.dataclass
class Prediction:
  """What the run predicts for one clip.

  Attributes:
    input: the input path.
    kind: ``video`` or ``frames``.
    frame_size: (width, height) of the original frames.
    num_frames: frames stored (decoded) from the input.
    sampled_frames: the T frames the network saw, 0-based.
    top_k: ``(class index, class name or None, probability)``, best first,
      from the prediction at ``exit_step``.
    exit_step: 0-based step whose prediction is reported (T - 1 without
      early exit).
    num_steps: T.
    early_exit: whether early-exit thresholds chose ``exit_step``.
    gflops: G multiply-accumulates spent: ``(exit_step + 1)`` frames at the
      per-frame cost of the patch choice.
    patches: the patch choice.
    offsets: int [T, 2] top-left (y, x) of each patch in the network input.
    boxes: float [T, 4] each patch as ``[x0, y0, x1, y1]`` in original
      pixels.
    stored_boxes: float [T, 4] the same in stored pixels (for drawing).
    crop_box: ``[x0, y0, x1, y1]`` of the network's view (the crop window)
      in original pixels.
    stored_crop_box: the same in stored pixels.
    step_top1: int [T] the top class after each step.
  """
  input: str
  kind: str
  frame_size: Tuple[int, int]
  num_frames: int
  sampled_frames: List[int]
  top_k: List[Tuple[int, Optional[str], float]]
  exit_step: int
  num_steps: int
  early_exit: bool
  gflops: float
  patches: str
  offsets: np.ndarray
  boxes: np.ndarray
  stored_boxes: np.ndarray
  crop_box: List[float]
  stored_crop_box: List[float]
  step_top1: List[int]

  def to_json(self) -> dict:
    """A JSON-serialisable dict (pixel boxes rounded to 1/1000)."""
    return {
        "input": self.input,
        "ok": True,
        "kind": self.kind,
        "frame_width": self.frame_size[0],
        "frame_height": self.frame_size[1],
        "num_frames": self.num_frames,
        "sampled_frames": list(self.sampled_frames),
        "top_k": [{"class": c, "name": n, "prob": p}
                  for c, n, p in self.top_k],
        "exit_step": self.exit_step,
        "num_steps": self.num_steps,
        "early_exit": self.early_exit,
        "gflops": self.gflops,
        "patches": self.patches,
        "offsets": self.offsets.tolist(),
        "boxes": np.round(self.boxes, 3).tolist(),
        "crop_box": [round(v, 3) for v in self.crop_box],
        "step_top1": list(self.step_top1),
    }


def patch_boxes(offsets, window, frame_size: int, patch_size: int,
                stored_size: Tuple[int, int], original_size: Tuple[int, int]):
  """Maps patch offsets in the network input to stored and original pixels.

  The network input is the crop ``window`` resized to ``frame_size``; the
  stored frame is the original resized (per axis) to ``stored_size``.

  Args:
    offsets: int [T, 2] top-left (y, x) in network pixels.
    window: [4] (offset_y, offset_x, height, width) in stored pixels.
    frame_size: S, side of the network input.
    patch_size: P.
    stored_size: (width, height) of the stored frames.
    original_size: (width, height) of the original frames.

  Returns:
    ``(stored [T, 4], original [T, 4])`` float64 boxes ``[x0, y0, x1, y1]``.
  """
  off = np.asarray(offsets, np.float64).reshape(-1, 2)
  wy, wx, wh, ww = (float(v) for v in window)
  y0 = wy + off[:, 0] * wh / frame_size
  x0 = wx + off[:, 1] * ww / frame_size
  stored = np.stack([x0, y0, x0 + patch_size * ww / frame_size,
                     y0 + patch_size * wh / frame_size], 1)
  scale = np.array([original_size[0] / stored_size[0],
                    original_size[1] / stored_size[1]] * 2)
  return stored, stored * scale


class Predictor:
  """A run loaded once for predictions on files or preprocessed frames.

  Args:
    run: the run directory (local or ``s3://``).
    patches: ``auto`` (policy when stage 2 is done, else centre),
      ``policy``, ``centre`` or ``random`` (seeded by the run seed and the
      input's file name).
    early_exit: report the prediction at the step the run's AdaFocus+
      thresholds (``early_exit.load_thresholds``, fitted by
      launch/calibrate_exit.py) choose, and the cost of the frames up to
      it; without thresholds (a warning) or without this, every clip runs
      all T steps.

  Attributes:
    cfg: the run's config.
    model: the final ``AdaFocus`` model.
    checkpoint: the checkpoint it was restored from.
    patches: the resolved patch choice.
    class_names: the class names, or None when the data's meta.json could
      not be read (predictions then name class indices only).
    class_names_source: the meta.json read, or why there are no names.
    frame_settings: how the data stored frames (applied to every input).
    cost: ``flops.video_macs`` of the run's config.
    thresholds: float [T] early-exit thresholds in use, or None.
    warnings: things the user should know (missing names, thresholds).

  Raises:
    FileNotFoundError: not a run directory, or no checkpoint in it.
    ValueError: a patch choice the run cannot make.
  """

  def __init__(self, run: str, patches: str = AUTO, early_exit: bool = False):
    self.run = run
    self.cfg = cfg = run_dir.read_config(run)
    factory.require_one_stream(cfg, "prediction on files")
    if patches not in FILE_CHOICES + (AUTO,):
      raise ValueError(f"patches={patches!r}: choose one of "
                       f"{(AUTO,) + FILE_CHOICES}")
    self.patches = resolve_patches(run, patches)
    self.model, self.checkpoint = experiment.final_model(cfg, run)
    self.policy_fn = (experiment.load_policy(cfg, run)
                      if self.patches == "policy" else None)
    self.warnings = []
    meta, where = read_data_meta(cfg)
    self.class_names, self.class_names_source = class_names_of(cfg, meta,
                                                               where)
    if self.class_names is None:
      self.warnings.append("class names unavailable "
                           f"({self.class_names_source}): showing class "
                           "indices")
    self.frame_settings = frame_settings_of(meta)
    if meta is None:
      self.warnings.append(
          "frames are stored with prepare's defaults (short side "
          f"{self.frame_settings.short_side}), not the data's own settings")
    self.cost = flops.video_macs(cfg)
    self.thresholds = (early_exit_lib.load_thresholds(run) if early_exit
                       else None)
    if early_exit and self.thresholds is None:
      self.warnings.append(f"{run} has no early-exit thresholds (fit them "
                           "with launch/calibrate_exit.py): every clip runs "
                           f"all {cfg.data.num_frames} steps")
    d = cfg.data
    spec = tf.TensorSpec([None, d.num_frames, d.frame_size, d.frame_size, 3],
                         tf.float32)
    self._forward = tf.function(self._forward_impl, input_signature=[
        spec, tf.TensorSpec([None, 2], tf.int64)])

  def _forward_impl(self, frames, seeds):
    # The same computation as evaluation.predict_split's step.
    batch = {"frames": frames, "seed": seeds}
    offsets = patch_choice.choose_offsets(self.patches, batch, self.cfg,
                                          self.policy_fn)
    logits = self.model.batch_logits(batch, offsets, training=False)
    return self.model.classifier.step_probs(logits), offsets

  def per_frame_gflops(self) -> float:
    """G MACs per frame of the patch choice (``flops.choice_gflops`` / T)."""
    return (flops.choice_gflops(self.cost, self.patches)
            / self.cost["num_frames"])

  def read(self, path: str) -> Clip:
    """Reads and preprocesses one input (see ``read_clip``)."""
    return read_clip(path, self.cfg, self.frame_settings)

  def predict_frames(self, frames, names: Sequence[str]):
    """Runs the model on preprocessed frames.

    Args:
      frames: float32 [N, T, S, S, 3] normalised network inputs.
      names: N names of the inputs (they seed random patches).

    Returns:
      ``(step_probs float [N, T, C], offsets int [N, T, 2])``.
    """
    ids = tf.constant([os.path.basename(os.path.normpath(n)) for n in names])
    seeds = tf.map_fn(lambda v: pipeline.video_seed(v, self.cfg.seed, 0), ids,
                      fn_output_signature=tf.int64)
    probs, offsets = self._forward(tf.convert_to_tensor(frames, tf.float32),
                                   seeds)
    return probs.numpy(), offsets.numpy()

  def exit_steps(self, step_probs) -> np.ndarray:
    """The 0-based step each video stops at: [N]."""
    step_probs = np.asarray(step_probs)
    last = np.full(step_probs.shape[0], step_probs.shape[1] - 1)
    if self.thresholds is None:
      return last
    return early_exit_lib.exit_steps(step_probs, self.thresholds)

  def predict(self, clip: Clip, top_k: int = 5) -> Prediction:
    """Predicts one clip.

    Args:
      clip: from ``read``.
      top_k: classes to report.

    Returns:
      The prediction.
    """
    probs, offsets = self.predict_frames(clip.frames[None], [clip.path])
    probs, offsets = probs[0], offsets[0]
    exit_step = int(self.exit_steps(probs[None])[0])
    final = probs[exit_step]
    order = np.argsort(-final, kind="stable")[:max(1, top_k)]
    names = self.class_names
    top = [(int(c), names[c] if names else None, float(final[c]))
           for c in order]
    m = self.cfg
    stored, original = patch_boxes(offsets, clip.window, m.data.frame_size,
                                   m.model.patch_size, clip.stored_size,
                                   clip.original_size)
    crop_stored, crop_original = patch_boxes(
        [[0, 0]], clip.window, m.data.frame_size, m.data.frame_size,
        clip.stored_size, clip.original_size)
    return Prediction(
        input=clip.path, kind=clip.kind, frame_size=clip.original_size,
        num_frames=len(clip.stored.jpegs),
        sampled_frames=[int(i) for i in clip.indices], top_k=top,
        exit_step=exit_step, num_steps=int(probs.shape[0]),
        early_exit=self.thresholds is not None,
        gflops=(exit_step + 1) * self.per_frame_gflops(),
        patches=self.patches, offsets=offsets.astype(np.int64),
        boxes=original, stored_boxes=stored,
        crop_box=crop_original[0].tolist(),
        stored_crop_box=crop_stored[0].tolist(),
        step_top1=[int(c) for c in probs.argmax(-1)])


# ---------------------------------------------------------------------------
# Evaluation of a prepared split (launch/evaluate.py).

EVAL_CHOICES = patch_choice.CHOICES + (evaluation.GLANCE_ONLY,)


def split_has_boxes(split_dir: str) -> bool:
  """Whether a prepared split's records carry object boxes (oracle patches)."""
  from adafocus_tf.data import schema  # pylint: disable=g-import-not-at-top
  for raw in tf.data.TFRecordDataset(shards.list_records(split_dir)[:1]).take(
      1):
    example = tf.train.SequenceExample.FromString(raw.numpy())
    return schema.BOXES in example.feature_lists.feature_list
  return False


def resolve_eval_patches(cfg: ExperimentConfig, run: str, split_dir: str,
                         requested: str) -> str:
  """The patch choice of an evaluation, checked against the run and data.

  Args:
    cfg: the run's config.
    run: run directory.
    split_dir: the prepared split to evaluate.
    requested: ``auto`` or one of ``EVAL_CHOICES``.

  Returns:
    The choice.

  Raises:
    ValueError: the run or the data cannot provide the choice (no policy,
      no object boxes, no trained glance head).
  """
  if requested not in EVAL_CHOICES + (AUTO,):
    raise ValueError(f"patches={requested!r}: choose one of "
                     f"{(AUTO,) + EVAL_CHOICES}")
  choice = resolve_patches(run, requested)
  if choice == "oracle" and not split_has_boxes(split_dir):
    raise ValueError(f"oracle patches need object boxes, and the records of "
                     f"{split_dir} have none (only synthetic data has them)")
  if choice == evaluation.GLANCE_ONLY and not (
      run_dir.stage_done(run, 0) and "glance" in cfg.stage0.backbones):
    raise ValueError("glance_only needs the glance head of stage 0, which "
                     f"{run} has not trained")
  return choice


def evaluate_split(cfg: ExperimentConfig, run: str, split_dir: str,
                   choice: str, max_videos: int = 0,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   progress: bool = True):
  """Evaluates the run's final model on a prepared split.

  Args:
    cfg: the run's config.
    run: run directory.
    split_dir: the prepared split.
    choice: a choice from ``resolve_eval_patches``.
    max_videos: evaluate at most this many videos (0: all).
    strategy: None or the default strategy (one device) or a mirrored
      strategy (each batch split across its replicas).
    progress: progress bar.

  Returns:
    ``(row, pred)``: the figures (``evaluation.summarize``: top1, top5, mAP,
    mAP_per_step; plus gflops_per_video, num_videos, patches, split_dir,
    checkpoint, multi_label) and the per-video predictions they came from.
  """
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    model, ckpt = experiment.final_model(cfg, run)
    policy_fn = (experiment.load_policy(cfg, run, strategy)
                 if choice == "policy" else None)
  pred = evaluation.predict_split(model, cfg, split_dir, choice, policy_fn,
                                  max_videos=max_videos,
                                  progress=progress,
                                  strategy=strategy)
  try:
    multi_label = bool(shards.read_meta(split_dir).get("multi_label"))
  except (FileNotFoundError, ValueError):
    multi_label = False
  multi_label = multi_label or cfg.data.multi_label
  row = evaluation.summarize(pred, multi_label)
  row.update({
      "gflops_per_video": flops.choice_gflops(flops.video_macs(cfg), choice),
      "num_videos": int(len(pred["labels"])),
      "patches": choice,
      "split_dir": split_dir,
      "checkpoint": ckpt,
      "multi_label": multi_label,
  })
  return row, pred


def record_evaluation(run: str, key: str, row: dict) -> dict:
  """Stores ``row`` as ``evaluation[key]`` in the run's metrics.json.

  Other keys of the ``evaluation`` section (other splits or patch choices)
  and the other sections are kept.

  Args:
    run: run directory.
    key: e.g. ``val/policy``.
    row: the figures.

  Returns:
    The whole ``evaluation`` section as written.
  """
  path = io_utils.join(run, run_dir.METRICS)
  current = io_utils.read_json(path) if io_utils.exists(path) else {}
  section = dict(current.get("evaluation") or {})
  section[key] = row
  run_dir.update_metrics(run, evaluation=section)
  return section


def format_evaluation(key: str, row: dict) -> str:
  """One evaluation as a small text table."""
  lines = [f"{'evaluation':<18} {'top1':>7} {'top5':>7} {'mAP':>7} "
           f"{'GFLOPs':>8}",
           f"{key:<18} {row['top1']:7.2f} {row['top5']:7.2f} "
           f"{row['mAP']:7.2f} {row['gflops_per_video']:8.3f}",
           "mAP per step: " + " ".join(f"{x:.2f}"
                                       for x in row["mAP_per_step"]),
           f"{row['num_videos']} videos of {row['split_dir']}, checkpoint "
           f"{row['checkpoint']}"]
  return "\n".join(lines)

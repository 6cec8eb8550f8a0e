"""What a run predicts for one clip: ``Prediction`` (``Predictor.predict``).

Patch boxes are in pixels of the original frame: the patch's region in the
network input (a P x P patch, or a Uni-AdaFocus region of its own size,
``Recognizer.patch_regions``) is mapped through the crop window (in stored
pixels) and the storage resize. A box ``[x0, y0, x1, y1]`` covers
``x0 <= x < x1``, ``y0 <= y < y1`` in continuous pixel coordinates (pixel
(0, 0) spans [0, 1) x [0, 1)).
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np


@dataclasses.dataclass
class Prediction:
  """What the run predicts for one clip.

  Attributes:
    input: the input path.
    kind: ``video`` or ``frames``.
    frame_size: (width, height) of the original frames.
    num_frames: frames the input holds, as prepare would store them (only
      the sampled ones are decoded: ``clips.read_clip``).
    sampled_frames: the frames of the stream the patches are cut from
      (the T frames of the V1 model, the focus stream of the two-stream
      model, Uni-AdaFocus's N candidates), 0-based.
    glance_frames: the frames the glance network reads when they are not
      ``sampled_frames`` (the two-stream model's glance stream,
      Uni-AdaFocus's G of its candidates), else [].
    top_k: ``(class index, class name or None, probability)``, best first,
      from the prediction at ``exit_step``.
    exit_step: 0-based exit step whose prediction is reported (the last
      without early exit; ``Recognizer.num_exit_steps``).
    num_steps: E, the exit steps (T frames for the V1 model; 2 for the
      two-stream model: glance alone, then glance and focus; K + 1 for
      Uni-AdaFocus: glance alone, then one per focus frame).
    early_exit: whether early-exit thresholds chose ``exit_step``.
    gflops: G multiply-accumulates spent up to and including
      ``exit_step`` (``Recognizer.exit_step_macs``): what early-exit
      inference runs for the clip.
    patches: the patch choice.
    plan: how reports describe it (``Recognizer.choice_label``).
    offsets: the recognizer's offsets: int [K, 2] top-left (y, x) of the
      patch of each sampled frame in the network input; float32 sub-pixel
      positions for an AdaFocusV2 run (bilinear patches; ``boxes`` keep
      them, pictures round them); Uni-AdaFocus's focus plan float32
      [K, 5] (candidate, y, x, height, width).
    patch_positions: int [K] each region's frame among ``sampled_frames``
      (0-based): 0..T-1, or the candidates Uni-AdaFocus chose.
    patch_frames: int [K] the same as frame indices of the input.
    regions: float [K, 4] each region's (y, x, height, width) in network
      input pixels (P x P, or a deformable region's own size).
    boxes: float [K, 4] each region as ``[x0, y0, x1, y1]`` in original
      pixels.
    stored_boxes: float [K, 4] the same in stored pixels (for drawing).
    patch_steps: int [K] the exit step that reads each region, when the
      recognizer says (``Recognizer.patch_exit_steps``), else None.
    crop_box: ``[x0, y0, x1, y1]`` of the network's view (the crop window)
      in original pixels.
    stored_crop_box: the same in stored pixels.
    step_top1: int [E] the top class after each exit step.
  """
  input: str
  kind: str
  frame_size: Tuple[int, int]
  num_frames: int
  sampled_frames: List[int]
  glance_frames: List[int]
  top_k: List[Tuple[int, Optional[str], float]]
  exit_step: int
  num_steps: int
  early_exit: bool
  gflops: float
  patches: str
  plan: str
  offsets: np.ndarray
  patch_positions: List[int]
  patch_frames: List[int]
  regions: np.ndarray
  boxes: np.ndarray
  stored_boxes: np.ndarray
  patch_steps: Optional[List[int]]
  crop_box: List[float]
  stored_crop_box: List[float]
  step_top1: List[int]

  @property
  def patches_read(self) -> List[bool]:
    """[K] whether each region was read by the exit step (all of them
    when the recognizer does not say which step reads it)."""
    if self.patch_steps is None:
      return [True] * len(self.patch_frames)
    return [s <= self.exit_step for s in self.patch_steps]

  def to_json(self) -> dict:
    """A JSON-serialisable dict (pixel boxes rounded to 1/1000; offsets
    and regions as the network gave them)."""
    return {
        "input": self.input,
        "ok": True,
        "kind": self.kind,
        "frame_width": self.frame_size[0],
        "frame_height": self.frame_size[1],
        "num_frames": self.num_frames,
        "sampled_frames": list(self.sampled_frames),
        "glance_frames": list(self.glance_frames),
        "top_k": [{"class": c, "name": n, "prob": p}
                  for c, n, p in self.top_k],
        "exit_step": self.exit_step,
        "num_steps": self.num_steps,
        "early_exit": self.early_exit,
        "gflops": self.gflops,
        "patches": self.patches,
        "plan": self.plan,
        "offsets": self.offsets.tolist(),
        "patch_positions": list(self.patch_positions),
        "patch_frames": list(self.patch_frames),
        "regions": np.asarray(self.regions, np.float64).tolist(),
        "boxes": np.round(self.boxes, 3).tolist(),
        "patch_steps": (None if self.patch_steps is None
                        else list(self.patch_steps)),
        "patches_read": self.patches_read,
        "crop_box": [round(v, 3) for v in self.crop_box],
        "step_top1": list(self.step_top1),
    }

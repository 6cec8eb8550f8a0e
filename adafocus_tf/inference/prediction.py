"""What a run predicts for one clip: ``Prediction`` (``Predictor.predict``).

Patch boxes are in pixels of the original frame: the patch's offset in the
network input is mapped through the crop window (in stored pixels) and the
storage resize. A box ``[x0, y0, x1, y1]`` covers ``x0 <= x < x1``,
``y0 <= y < y1`` in continuous pixel coordinates (pixel (0, 0) spans
[0, 1) x [0, 1)).
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
    sampled_frames: the frames the patches were cut from (the T frames of
      the V1 model, the focus stream of the two-stream model), 0-based.
    glance_frames: the glance stream's frames (two-stream model), else [].
    top_k: ``(class index, class name or None, probability)``, best first,
      from the prediction at ``exit_step``.
    exit_step: 0-based exit step whose prediction is reported (the last
      without early exit; ``Recognizer.num_exit_steps``).
    num_steps: E, the exit steps (T frames for the V1 model; 2 for the
      two-stream model: glance alone, then glance and focus).
    early_exit: whether early-exit thresholds chose ``exit_step``.
    gflops: G multiply-accumulates spent up to and including
      ``exit_step`` (``Recognizer.exit_step_macs``).
    patches: the patch choice.
    offsets: int [K, 2] top-left (y, x) of the patch of each sampled frame
      in the network input; float32 sub-pixel positions for an AdaFocusV2
      run (bilinear patches; ``boxes`` keep them, pictures round them).
    boxes: float [K, 4] each patch as ``[x0, y0, x1, y1]`` in original
      pixels.
    stored_boxes: float [K, 4] the same in stored pixels (for drawing).
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
        "glance_frames": list(self.glance_frames),
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

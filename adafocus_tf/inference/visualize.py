"""Pictures of a prediction: a PNG contact sheet and an animated GIF.

Both show the frames the focus network read as stored (the input's frames
resized as the run's data was): the T sampled frames, or the K candidates
a Uni-AdaFocus run chose. Each has the network's view (the evaluation crop
window, a thin yellow outline) and the region the focus network saw (a
thick red outline, at the region's own size: P x P, or a deformable
region; grey when an early exit stopped before reading it), and a caption
with the step, the frame index (and the candidate it is) and the top
class after the step that read it; the sheet's title gives the final
prediction.

Layout of the sheet (``tile_origin``): a title band of ``TITLE_HEIGHT``
pixels; when the run chose its frames among the sampled ones, a timeline
band of ``TIMELINE_HEIGHT`` pixels (``timeline``: the video's stored
frames left to right, the sampled candidates as grey ticks, the glance
frames yellow, the chosen frames red); then tiles in rows of ``columns``,
each tile the frame resized to ``tile_height`` pixels high (bilinear) with
a caption band of ``CAPTION_HEIGHT`` below it, ``MARGIN`` pixels around
and between tiles.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from PIL import Image
from PIL import ImageDraw

TITLE_HEIGHT = 36
TIMELINE_HEIGHT = 18
CAPTION_HEIGHT = 16
MARGIN = 6
PATCH_COLOUR = (255, 40, 40)
PATCH_WIDTH = 3
# A region an early exit stopped before reading.
UNREAD_COLOUR = (150, 150, 150)
CANDIDATE_COLOUR = (120, 120, 120)
WINDOW_COLOUR = (255, 220, 0)
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)


def tile_size(frame_size: Tuple[int, int], tile_height: int
              ) -> Tuple[int, int]:
  """(width, height) of a tile for frames of ``frame_size`` (width, height)."""
  width, height = frame_size
  return max(1, round(width * tile_height / height)), tile_height


def tile_origin(index: int, tile: Tuple[int, int], columns: int,
                timeline: bool = False) -> Tuple[int, int]:
  """Top-left (x, y) of tile ``index`` in the sheet.

  Args:
    index: 0-based tile (step) number.
    tile: (width, height) of a tile's frame, from ``tile_size``.
    columns: tiles per row.
    timeline: the sheet has a timeline band.
  """
  row, col = divmod(index, columns)
  x = MARGIN + col * (tile[0] + MARGIN)
  y = (_top(timeline) + MARGIN
       + row * (tile[1] + CAPTION_HEIGHT + MARGIN))
  return x, y


def _top(timeline: bool) -> int:
  return TITLE_HEIGHT + (TIMELINE_HEIGHT if timeline else 0)


def timeline_x(frame: int, num_frames: int, width: int) -> int:
  """The x of stored frame ``frame`` (of ``num_frames``) on the timeline of
  a sheet ``width`` pixels wide: the frames' centres spread evenly between
  the margins."""
  span = width - 2 * MARGIN - 1
  return MARGIN + round((frame + 0.5) / max(1, num_frames) * span)


def draw_timeline(draw: ImageDraw.ImageDraw, width: int, num_frames: int,
                  candidates: Sequence[int], glance: Sequence[int],
                  chosen: Sequence[int]) -> None:
  """The timeline band below the title (module doc): grey ticks at the
  candidates, yellow at the glance frames, red at the chosen frames."""
  y0 = TITLE_HEIGHT + 2
  y1 = TITLE_HEIGHT + TIMELINE_HEIGHT - 3
  mid = (y0 + y1) // 2
  draw.line([(MARGIN, mid), (width - MARGIN - 1, mid)], fill=TEXT_COLOUR)
  for frames, colour, half, line_width in (
      (candidates, CANDIDATE_COLOUR, 3, 1), (glance, WINDOW_COLOUR, 5, 1),
      (chosen, PATCH_COLOUR, mid - y0, 2)):
    for k in frames:
      x = timeline_x(k, num_frames, width)
      draw.line([(x, mid - half), (x, mid + half)], fill=colour,
                width=line_width)


def scale_box(box: Sequence[float], frame_size: Tuple[int, int],
              tile: Tuple[int, int]) -> List[float]:
  """A ``[x0, y0, x1, y1]`` box in frame pixels -> tile pixels."""
  sx, sy = tile[0] / frame_size[0], tile[1] / frame_size[1]
  return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def _outline(draw: ImageDraw.ImageDraw, box, colour, width: int) -> None:
  # A box covers [x0, x1) x [y0, y1); PIL's rectangle includes both corner
  # pixels, so the last covered pixel is x1 - 1.
  x0, y0 = round(box[0]), round(box[1])
  x1, y1 = max(x0, round(box[2]) - 1), max(y0, round(box[3]) - 1)
  draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)


def annotate_tile(frame: Image.Image, tile: Tuple[int, int],
                  patch_box: Sequence[float],
                  window_box: Optional[Sequence[float]] = None,
                  read: bool = True) -> Image.Image:
  """The frame resized to a tile with the crop window and patch drawn.

  Args:
    frame: the stored frame (RGB).
    tile: (width, height) of the tile.
    patch_box: the patch ``[x0, y0, x1, y1]`` in ``frame`` pixels.
    window_box: the network's view in ``frame`` pixels, or None.
    read: whether the focus network read the patch (else it is outlined
      in ``UNREAD_COLOUR``: an early exit stopped before it).

  Returns:
    A new RGB image of size ``tile``.
  """
  image = frame.convert("RGB").resize(tile, Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(image)
  if window_box is not None:
    _outline(draw, scale_box(window_box, frame.size, tile), WINDOW_COLOUR, 1)
  _outline(draw, scale_box(patch_box, frame.size, tile),
           PATCH_COLOUR if read else UNREAD_COLOUR, PATCH_WIDTH)
  return image


def contact_sheet(frames: Sequence[Image.Image],
                  patch_boxes: Sequence[Sequence[float]],
                  captions: Sequence[str], title: Sequence[str],
                  window_box: Optional[Sequence[float]] = None,
                  tile_height: int = 160, columns: int = 4,
                  read: Optional[Sequence[bool]] = None,
                  timeline: Optional[dict] = None) -> Image.Image:
  """The frames side by side with their patches.

  Args:
    frames: the K stored frames (RGB, all one size).
    patch_boxes: K patch boxes ``[x0, y0, x1, y1]`` in frame pixels.
    captions: K captions, one under each tile.
    title: up to two lines for the title band.
    window_box: the crop window in frame pixels, drawn on every tile.
    tile_height: height of a tile in pixels.
    columns: tiles per row.
    read: K flags, whether the focus network read each patch (default:
      all).
    timeline: None, or the timeline band's ``num_frames``, ``candidates``,
      ``glance`` and ``chosen`` (stored frame indices; ``draw_timeline``).

  Returns:
    The sheet (RGB); see the module docstring for the layout.
  """
  read = [True] * len(frames) if read is None else list(read)
  tile = tile_size(frames[0].size, tile_height)
  columns = max(1, min(columns, len(frames)))
  rows = -(-len(frames) // columns)
  width = MARGIN + columns * (tile[0] + MARGIN)
  height = (_top(timeline is not None) + MARGIN
            + rows * (tile[1] + CAPTION_HEIGHT + MARGIN))
  sheet = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  for i, line in enumerate(list(title)[:2]):
    draw.text((MARGIN, 3 + 15 * i), line, fill=TEXT_COLOUR)
  if timeline is not None:
    draw_timeline(draw, width, **timeline)
  for i, (frame, box, caption) in enumerate(zip(frames, patch_boxes,
                                                captions)):
    x, y = tile_origin(i, tile, columns, timeline is not None)
    sheet.paste(annotate_tile(frame, tile, box, window_box, read[i]), (x, y))
    draw.text((x + 2, y + tile[1] + 2), caption, fill=TEXT_COLOUR)
  return sheet


def animation(frames: Sequence[Image.Image],
              patch_boxes: Sequence[Sequence[float]],
              captions: Sequence[str],
              window_box: Optional[Sequence[float]] = None,
              tile_height: int = 240,
              read: Optional[Sequence[bool]] = None) -> List[Image.Image]:
  """One annotated picture per frame, caption below, for a GIF."""
  read = [True] * len(frames) if read is None else list(read)
  tile = tile_size(frames[0].size, tile_height)
  out = []
  for i, (frame, box, caption) in enumerate(zip(frames, patch_boxes,
                                                captions)):
    image = Image.new("RGB", (tile[0], tile[1] + CAPTION_HEIGHT), BACKGROUND)
    image.paste(annotate_tile(frame, tile, box, window_box, read[i]), (0, 0))
    ImageDraw.Draw(image).text((2, tile[1] + 2), caption, fill=TEXT_COLOUR)
    out.append(image)
  return out


def save_gif(pictures: Sequence[Image.Image], path: str,
             frame_ms: int = 400) -> None:
  """Writes pictures as an endlessly looping animated GIF."""
  first, *rest = pictures
  first.save(path, format="GIF", save_all=True, append_images=rest,
             duration=frame_ms, loop=0)


def captions_of(prediction, class_name) -> List[str]:
  """One caption per region of a prediction: its step, the frame (and the
  candidate it is, when the run chose its frames) and the top class after
  the step that read it (when known)."""
  chosen = not _reads_every_sampled_frame(prediction)
  steps = prediction.patch_steps
  if steps is None and len(prediction.step_top1) == len(
      prediction.patch_frames):
    # A prediction after every frame (the V1 model).
    steps = list(range(len(prediction.patch_frames)))
  out = []
  for t, (k, position) in enumerate(zip(prediction.patch_frames,
                                        prediction.patch_positions)):
    text = (f"t{t + 1} cand {position} frame {k}" if chosen
            else f"t{t + 1} frame {k}")
    if steps is not None:
      if steps[t] <= prediction.exit_step:
        text += f": {class_name(prediction.step_top1[steps[t]])}"
      else:
        text += " (not read)"
    out.append(text)
  return out


def _reads_every_sampled_frame(prediction) -> bool:
  return list(prediction.patch_positions) == list(range(len(
      prediction.sampled_frames)))


def write_prediction(out_dir: str, stem: str, clip, prediction,
                     class_name) -> Tuple[str, str]:
  """Writes ``<out_dir>/<stem>.png`` (sheet) and ``<stem>.gif``.

  Both show the frames of ``prediction.patch_frames`` (the sheet in tiles,
  the GIF one per picture) with their regions; the sheet has a timeline
  when the run chose its frames among the sampled ones.

  Args:
    out_dir: output folder (created).
    stem: file name without extension.
    clip: the ``clips.Clip`` predicted.
    prediction: its ``prediction.Prediction``.
    class_name: function class index -> display name.

  Returns:
    The paths (png, gif).
  """
  os.makedirs(out_dir, exist_ok=True)
  frames = [clip.stored_frame(k) for k in prediction.patch_frames]
  captions = captions_of(prediction, class_name)
  read = prediction.patches_read
  best, _, prob = prediction.top_k[0]
  title = [f"{os.path.basename(os.path.normpath(clip.path))}: "
           f"{class_name(best)} ({prob:.2f})",
           f"exit after step {prediction.exit_step + 1}/"
           f"{prediction.num_steps}, {prediction.gflops:.3f} GFLOPs, "
           f"{prediction.plan}"]
  timeline = None
  if not _reads_every_sampled_frame(prediction):
    timeline = {"num_frames": prediction.num_frames,
                "candidates": prediction.sampled_frames,
                "glance": prediction.glance_frames,
                "chosen": prediction.patch_frames}
  boxes = [list(b) for b in prediction.stored_boxes]
  png = os.path.join(out_dir, stem + ".png")
  gif = os.path.join(out_dir, stem + ".gif")
  contact_sheet(frames, boxes, captions, title, prediction.stored_crop_box,
                read=read, timeline=timeline).save(png)
  save_gif(animation(frames, boxes, captions, prediction.stored_crop_box,
                     read=read), gif)
  return png, gif

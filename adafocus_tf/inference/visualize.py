"""Pictures of a prediction: a PNG contact sheet and an animated GIF.

Both show the T sampled frames as stored (the input's frames resized as the
run's data was), each with the network's view (the evaluation crop window,
a thin yellow outline) and the patch the focus network saw (a thick red
outline), a caption with the step, the frame index and the top class after
that step; the sheet's title gives the final prediction.

Layout of the sheet (``tile_origin``): a title band of ``TITLE_HEIGHT``
pixels, then tiles in rows of ``columns``, each tile the frame resized to
``tile_height`` pixels high (bilinear) with a caption band of
``CAPTION_HEIGHT`` below it, ``MARGIN`` pixels around and between tiles.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from PIL import Image
from PIL import ImageDraw

TITLE_HEIGHT = 36
CAPTION_HEIGHT = 16
MARGIN = 6
PATCH_COLOUR = (255, 40, 40)
PATCH_WIDTH = 3
WINDOW_COLOUR = (255, 220, 0)
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)


def tile_size(frame_size: Tuple[int, int], tile_height: int
              ) -> Tuple[int, int]:
  """(width, height) of a tile for frames of ``frame_size`` (width, height)."""
  width, height = frame_size
  return max(1, round(width * tile_height / height)), tile_height


def tile_origin(index: int, tile: Tuple[int, int], columns: int
                ) -> Tuple[int, int]:
  """Top-left (x, y) of tile ``index`` in the sheet.

  Args:
    index: 0-based tile (step) number.
    tile: (width, height) of a tile's frame, from ``tile_size``.
    columns: tiles per row.
  """
  row, col = divmod(index, columns)
  x = MARGIN + col * (tile[0] + MARGIN)
  y = TITLE_HEIGHT + MARGIN + row * (tile[1] + CAPTION_HEIGHT + MARGIN)
  return x, y


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
                  window_box: Optional[Sequence[float]] = None
                  ) -> Image.Image:
  """The frame resized to a tile with the crop window and patch drawn.

  Args:
    frame: the stored frame (RGB).
    tile: (width, height) of the tile.
    patch_box: the patch ``[x0, y0, x1, y1]`` in ``frame`` pixels.
    window_box: the network's view in ``frame`` pixels, or None.

  Returns:
    A new RGB image of size ``tile``.
  """
  image = frame.convert("RGB").resize(tile, Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(image)
  if window_box is not None:
    _outline(draw, scale_box(window_box, frame.size, tile), WINDOW_COLOUR, 1)
  _outline(draw, scale_box(patch_box, frame.size, tile), PATCH_COLOUR,
           PATCH_WIDTH)
  return image


def contact_sheet(frames: Sequence[Image.Image],
                  patch_boxes: Sequence[Sequence[float]],
                  captions: Sequence[str], title: Sequence[str],
                  window_box: Optional[Sequence[float]] = None,
                  tile_height: int = 160, columns: int = 4) -> Image.Image:
  """The sampled frames side by side with their patches.

  Args:
    frames: the T stored frames (RGB, all one size).
    patch_boxes: T patch boxes ``[x0, y0, x1, y1]`` in frame pixels.
    captions: T captions, one under each tile.
    title: up to two lines for the title band.
    window_box: the crop window in frame pixels, drawn on every tile.
    tile_height: height of a tile in pixels.
    columns: tiles per row.

  Returns:
    The sheet (RGB); see the module docstring for the layout.
  """
  tile = tile_size(frames[0].size, tile_height)
  columns = max(1, min(columns, len(frames)))
  rows = -(-len(frames) // columns)
  width = MARGIN + columns * (tile[0] + MARGIN)
  height = TITLE_HEIGHT + MARGIN + rows * (tile[1] + CAPTION_HEIGHT + MARGIN)
  sheet = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  for i, line in enumerate(list(title)[:2]):
    draw.text((MARGIN, 3 + 15 * i), line, fill=TEXT_COLOUR)
  for i, (frame, box, caption) in enumerate(zip(frames, patch_boxes,
                                                captions)):
    x, y = tile_origin(i, tile, columns)
    sheet.paste(annotate_tile(frame, tile, box, window_box), (x, y))
    draw.text((x + 2, y + tile[1] + 2), caption, fill=TEXT_COLOUR)
  return sheet


def animation(frames: Sequence[Image.Image],
              patch_boxes: Sequence[Sequence[float]],
              captions: Sequence[str],
              window_box: Optional[Sequence[float]] = None,
              tile_height: int = 240) -> List[Image.Image]:
  """One annotated picture per sampled frame, caption below, for a GIF."""
  tile = tile_size(frames[0].size, tile_height)
  out = []
  for frame, box, caption in zip(frames, patch_boxes, captions):
    image = Image.new("RGB", (tile[0], tile[1] + CAPTION_HEIGHT), BACKGROUND)
    image.paste(annotate_tile(frame, tile, box, window_box), (0, 0))
    ImageDraw.Draw(image).text((2, tile[1] + 2), caption, fill=TEXT_COLOUR)
    out.append(image)
  return out


def save_gif(pictures: Sequence[Image.Image], path: str,
             frame_ms: int = 400) -> None:
  """Writes pictures as an endlessly looping animated GIF."""
  first, *rest = pictures
  first.save(path, format="GIF", save_all=True, append_images=rest,
             duration=frame_ms, loop=0)


def write_prediction(out_dir: str, stem: str, clip, prediction,
                     class_name) -> Tuple[str, str]:
  """Writes ``<out_dir>/<stem>.png`` (sheet) and ``<stem>.gif``.

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
  frames = [clip.stored_image(t) for t in range(len(clip.patch_indices))]
  if len(prediction.step_top1) == len(frames):
    # A prediction after every frame (the V1 model): its top class.
    captions = [f"t{t + 1} frame {k}: {class_name(c)}" for t, (k, c) in
                enumerate(zip(prediction.sampled_frames,
                              prediction.step_top1))]
  else:
    captions = [f"t{t + 1} frame {k}"
                for t, k in enumerate(prediction.sampled_frames)]
  best, _, prob = prediction.top_k[0]
  title = [f"{os.path.basename(os.path.normpath(clip.path))}: "
           f"{class_name(best)} ({prob:.2f})",
           f"exit after step {prediction.exit_step + 1}/"
           f"{prediction.num_steps}, {prediction.gflops:.3f} GFLOPs, "
           f"{prediction.patches} patches"]
  boxes = [list(b) for b in prediction.stored_boxes]
  png = os.path.join(out_dir, stem + ".png")
  gif = os.path.join(out_dir, stem + ".gif")
  contact_sheet(frames, boxes, captions, title,
                prediction.stored_crop_box).save(png)
  save_gif(animation(frames, boxes, captions, prediction.stored_crop_box),
           gif)
  return png, gif

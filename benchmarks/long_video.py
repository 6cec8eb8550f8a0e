"""Time and peak memory of reading one long video for prediction (issue 23).

  python benchmarks/long_video.py [--minutes=15] [--fps=30] [--gop=250]

Encodes a 320x240 video (H.264, a moving textured picture; ``--gop`` frames
between keyframes, 250 being x264's default), then reads one clip of it for
prediction, each way in a fresh process (``timing.peak_memory_mb``):

  * ``full``: every frame decoded and stored first, as prediction read before
    issue 23 (``video_decode.decode_video_file``, then the evaluation
    transform, ``clips.preprocess``);
  * ``sparse``: what ``Predictor.read`` does now (``clips.read_clip``: a demux
    pass counts the frames, only the sampled ones are decoded).

Both store frames with prepare's defaults (short side 360, JPEG quality 90)
and sample ``--num_frames`` frames (TSN centres). Prints one table row per
way: seconds of the read, peak memory of the process and the part of it the
read added over the imports, frames stored and frames decoded.
"""
import json
import os
import sys
import time

# The repo root replaces this script's folder on the path, so that no
# script here can shadow a standard module (launch/profile.py would).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import av
import numpy as np

from benchmarks import scratch
from benchmarks import timing

FLAGS = flags.FLAGS
flags.DEFINE_float("minutes", 15, "Length of the video.")
flags.DEFINE_integer("fps", 30, "Its frame rate.")
flags.DEFINE_integer("gop", 250, "Frames from one keyframe to the next.")
flags.DEFINE_integer("num_frames", 8, "T, frames sampled for the network.")
flags.DEFINE_string("video", "", "Read this video instead of encoding one "
                    "(kept between runs with --keep).")
flags.DEFINE_bool("keep", False, "Keep the encoded video (its path is "
                  "printed).")
flags.DEFINE_string("variant", "", "Internal: read --video one way (full or "
                    "sparse) in this process and print its row.")
WAYS = ("full", "sparse")
WIDTH, HEIGHT = 320, 240


def write_video(path, minutes, fps, gop):
  """Encodes the benchmark video: a textured picture panning right."""
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:HEIGHT, 0:2 * WIDTH]
  base = 127 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0)
  texture = np.clip(base[..., None] + rng.normal(0, 12, (HEIGHT, 2 * WIDTH,
                                                         3)),
                    0, 255).astype(np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"preset": "ultrafast", "g": str(gop)}
    for t in range(int(minutes * 60 * fps)):
      shift = (2 * t) % WIDTH
      frame = av.VideoFrame.from_ndarray(
          np.ascontiguousarray(texture[:, shift:shift + WIDTH]),
          format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def read_one_way(way, path, num_frames):
  """Reads one clip of ``path`` for prediction; returns its table row."""
  from adafocus_tf import config  # pylint: disable=g-import-not-at-top
  from adafocus_tf.data import video_decode  # pylint: disable=g-import-not-at-top
  from adafocus_tf.inference import clips  # pylint: disable=g-import-not-at-top
  cfg = config.ExperimentConfig()
  cfg.data.num_frames = num_frames
  settings = video_decode.FrameSettings()
  # TensorFlow's kernels start on first use: start them on one frame, so
  # that what the read adds is the read's.
  black = av.VideoFrame(WIDTH, HEIGHT, "rgb24").to_image()
  jpeg, height, width = video_decode.encode_frame(black, settings)
  clips.preprocess(video_decode.Frames([jpeg], height, width), cfg)
  before_mb = timing.peak_memory_mb()
  start = time.perf_counter()
  if way == "sparse":
    stored = clips.read_clip(path, cfg, settings).stored
    decoded = stored.jpegs.decoded
  else:
    stored = video_decode.decode_video_file(path, settings)
    clips.preprocess(stored, cfg)
    decoded = len(stored.jpegs)
  seconds = time.perf_counter() - start
  peak_mb = timing.peak_memory_mb()
  return {"way": way, "seconds": seconds, "peak_mb": peak_mb,
          "read_mb": peak_mb - before_mb, "stored": len(stored.jpegs),
          "decoded": decoded}


def main(argv):
  del argv
  if FLAGS.variant:
    row = read_one_way(FLAGS.variant, FLAGS.video, FLAGS.num_frames)
    print(timing.ROWS_PREFIX + json.dumps([row]))
    return
  path = FLAGS.video
  if not path:
    path = os.path.join(scratch.folder("long_video-"), "long.mp4")
    start = time.perf_counter()
    write_video(path, FLAGS.minutes, FLAGS.fps, FLAGS.gop)
    print(f"encoded {path} ({os.path.getsize(path) / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - start:.1f} s")
  args = [f"--video={path}", f"--num_frames={FLAGS.num_frames}"]
  rows = [row for way in WAYS
          for row in timing.variant_rows(__file__, way, args)]
  print(f"\n{FLAGS.minutes:g} min of {WIDTH}x{HEIGHT} at {FLAGS.fps} fps, "
        f"keyframe every {FLAGS.gop} frames, T={FLAGS.num_frames}\n")
  print("| read | seconds | peak MiB | MiB added by the read | frames stored "
        "| frames decoded |\n| --- | --- | --- | --- | --- | --- |")
  for row in rows:
    if "error" in row:
      print(f"| {row['variant']} | error: {row['error']} |")
      continue
    print(f"| {row['way']} | {row['seconds']:.2f} | {row['peak_mb']:.0f} | "
          f"{row['read_mb']:.0f} | {row['stored']} | {row['decoded']} |")
  if not FLAGS.video and not FLAGS.keep:
    os.remove(path)
    os.rmdir(os.path.dirname(path))


if __name__ == "__main__":
  app.run(main)

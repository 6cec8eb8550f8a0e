"""Reading only the sampled frames of a video (issue 23): the same frames as
the full decode, memory and decoding that follow the frames needed, not the
video's length."""
import fractions
import json
import os
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import av
import numpy as np
import pytest

import helpers
import video_fixtures as vf
from adafocus_tf.data import frame_folders
from adafocus_tf.data import video_decode
from adafocus_tf.data import video_seek
from adafocus_tf.inference import clips
from adafocus_tf.serving import client as serving_client

SMALL = video_decode.FrameSettings(short_side=32)
# Encoders with B-frames and short GOPs, so that reading seeks across GOPs,
# reuses the decoder within one, and meets reordered (and, for MPEG-4 part 2,
# open-GOP leading) frames.
H264_B = ("libx264", {"preset": "veryfast", "g": "7", "bf": "3"})
MPEG4_B = ("mpeg4", {"g": "5", "bf": "2", "qscale": "3"})
VP8_ALTREF = ("libvpx", {"g": "7", "auto-alt-ref": "1", "lag-in-frames": "10",
                         "b": "1M"})
VP9 = ("libvpx-vp9", {"g": "9", "crf": "30", "b": "0",
                      "deadline": "realtime"})
# name -> (encoder, options, frames, frame rate). .h264 (an elementary
# stream: no packet timestamps) and MPEG-PS do not seek: they are decoded in
# one pass (two for --fps on the .h264, whose count is only known then).
VIDEOS = {
    "h264_b.mp4": (*H264_B, 40, 10),
    "h264_b.mkv": (*H264_B, 40, 10),
    "h264_ntsc.mp4": ("libx264", {"preset": "veryfast", "g": "12",
                                  "bf": "3", "b_pyramid": "normal"}, 60,
                      fractions.Fraction(30000, 1001)),
    "mpeg4_b.avi": (*MPEG4_B, 40, 10),
    "mpeg4_b.mkv": (*MPEG4_B, 33, 7),
    "vp8_altref.webm": (*VP8_ALTREF, 40, 10),
    "vp9.webm": (*VP9, 50, 25),
    "h264_b.ts": (*H264_B, 30, 10),
    "h264_b.h264": (*H264_B, 30, 10),
    "mpeg2_b.mpg": ("mpeg2video", {"g": "7", "bf": "2"}, 30, 25),
}
# A long video of 320x240: a noise picture (JPEGs of ~100 KB, as of real
# frames) with a moving square, one keyframe a second.
LONG_FPS, LONG_GOP = 12, 12


def _frame(rng_picture, t):
  img = rng_picture.copy()
  x = (4 * t) % (img.shape[1] - 16)
  img[8:24, x:x + 16] = (37 * t) % 256
  return img


def _write(path, encoder, options, num_frames, fps, width=64, height=48,
           seed=0):
  """Encodes a textured, moving video with PyAV and the given options."""
  picture = np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                                 dtype=np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream(encoder, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = dict(options)
    for t in range(num_frames):
      frame = av.VideoFrame.from_ndarray(_frame(picture, t), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def _long_video(path, seconds):
  return _write(path, "libx264", {"preset": "ultrafast", "crf": "30",
                                  "g": str(LONG_GOP)},
                seconds * LONG_FPS, LONG_FPS, width=320, height=240)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  return {name: _write(str(root / name), *spec)
          for name, spec in VIDEOS.items()}


def _picks(count):
  """Stored indices to read: TSN centres of 8 and of 3, ends, a repeat."""
  rng = np.random.default_rng(count)
  return sorted(set(serving_client.tsn_centre_indices(count, 8).tolist() +
                    serving_client.tsn_centre_indices(count, 3).tolist() +
                    [0, count - 1] +
                    rng.choice(count, min(count, 5), replace=False).tolist()))


@pytest.mark.parametrize("fps", [0, 3, 4.5])
@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_sparse_frames_are_the_full_decode_frames(videos, name, fps):
  settings = video_decode.FrameSettings(short_side=32, fps=fps)
  full = video_decode.decode_video_file(videos[name], settings)
  counts = []

  def choose(count):
    counts.append(count)
    return _picks(count) + _picks(count)[:2]  # repeats are read once

  sparse = video_seek.read_video_frames(videos[name], settings, choose)
  count = len(full.jpegs)
  assert len(sparse.jpegs) == count and counts[-1] == count
  assert (sparse.height, sparse.width) == (full.height, full.width)
  assert sparse.jpegs.indices == _picks(count)
  for i in _picks(count):
    assert sparse.jpegs[i] == full.jpegs[i], (name, fps, i)
  for unread in sorted(set(range(count)) - set(_picks(count)))[:1]:
    with pytest.raises(KeyError, match=f"frame {unread} was not read"):
      sparse.jpegs[unread]  # pylint: disable=pointless-statement
  with pytest.raises(IndexError):
    sparse.jpegs[count]  # pylint: disable=pointless-statement


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_seeking_decodes_only_the_gop_of_a_frame(videos, name):
  encoder, options, num_frames, _ = VIDEOS[name]
  for pick in (num_frames // 2, num_frames - 2):
    frames = video_seek.read_video_frames(videos[name], SMALL,
                                          lambda count: [pick])
    assert len(frames.jpegs) == num_frames
    if name.endswith((".h264", ".mpg")):
      assert frames.jpegs.decoded == num_frames, encoder  # one pass
    else:
      assert frames.jpegs.decoded <= int(options["g"]), (encoder, pick)


def test_bad_videos_give_the_full_decode_reasons(tmp_path):
  good = vf.write_video(str(tmp_path / "long.mkv"), 24, "h264")
  webm = vf.write_video(str(tmp_path / "long.webm"), 24, "vp8")
  text = str(tmp_path / "text.mp4")
  with open(text, "w", encoding="utf-8") as f:
    f.write("not a video\n" * 32)
  open(str(tmp_path / "zero.mp4"), "wb").close()
  reasons = {
      vf.corrupt_copy(good, str(tmp_path / "trunc.mkv"), keep_fraction=0.7):
          "truncated: frames cover 1.30 s of the 2.40 s",
      vf.corrupt_copy(webm, str(tmp_path / "trunc.webm"), keep_fraction=0.6):
          "truncated: frames cover",
      str(tmp_path / "zero.mp4"): "empty file",
      text: "cannot open",
      str(tmp_path / "missing.mp4"): "cannot open",
  }
  for path, reason in reasons.items():
    with pytest.raises(video_decode.BadInput, match=reason) as full:
      video_decode.decode_video_file(path, SMALL)
    with pytest.raises(video_decode.BadInput) as sparse:
      video_seek.read_video_frames(path, SMALL, lambda count: [0])
    assert str(sparse.value) == str(full.value), path
  # Damage inside frames that are not read may go unnoticed; damage the
  # demux pass sees is still reported.
  for seed in range(3):
    garbled = vf.corrupt_copy(good, str(tmp_path / f"g{seed}.mkv"),
                              garble=100, seed=seed)
    with pytest.raises(video_decode.BadInput):
      video_decode.decode_video_file(garbled, SMALL)
    with pytest.raises(video_decode.BadInput):
      video_seek.read_video_frames(garbled, SMALL, lambda count: [0])


def test_frame_folders_read_only_the_chosen_files(tmp_path):
  folder = vf.write_frame_folder(str(tmp_path / "f"), 10, width=40,
                                 height=30)
  full = frame_folders.read_frame_folder(folder, None, SMALL)
  # A damaged file that is not chosen is never opened.
  with open(os.path.join(folder, "image_00004.jpg"), "wb") as f:
    f.write(b"not a jpeg")
  with pytest.raises(video_decode.BadInput, match="image_00004.jpg"):
    frame_folders.read_frame_folder(folder, None, SMALL)
  sparse = frame_folders.read_frame_folder(folder, None, SMALL,
                                           lambda count: [count - 1, 1, 1])
  assert len(sparse.jpegs) == 10 and sparse.jpegs.indices == [1, 9]
  assert sparse.jpegs.decoded == 2
  assert [sparse.jpegs[i] for i in (1, 9)] == [full.jpegs[1], full.jpegs[9]]
  # Gaps are still found from the listing.
  os.remove(os.path.join(folder, "image_00006.jpg"))
  with pytest.raises(video_decode.BadInput, match="missing frame"):
    frame_folders.read_frame_folder(folder, None, SMALL, lambda count: [0])


@pytest.mark.parametrize("two_stream", [False, True])
def test_clips_read_as_from_every_frame(videos, tmp_path, two_stream):
  cfg = (helpers.tiny_two_stream_config() if two_stream
         else helpers.tiny_config())
  folder = vf.write_frame_folder(str(tmp_path / "f"), 23, width=40,
                                 height=30)
  for path in (videos["h264_b.mp4"], videos["vp8_altref.webm"], folder):
    clip = clips.read_clip(path, cfg, SMALL)
    every = (frame_folders.read_frame_folder(path, None, SMALL)
             if os.path.isdir(path) else
             video_decode.decode_video_file(path, SMALL))
    indices, window, inputs = clips.preprocess(every, cfg)
    assert len(clip.stored.jpegs) == len(every.jpegs)
    assert clip.stored_size == (every.width, every.height)
    np.testing.assert_array_equal(clip.window, window)
    for key, idx in indices.items():
      np.testing.assert_array_equal(clip.indices[key], idx)
      np.testing.assert_array_equal(clip.inputs[key], inputs[key])
    assert clip.stored.jpegs.indices == sorted(
        set(np.concatenate(list(indices.values())).tolist()))
    for t, k in enumerate(clip.patch_indices):
      assert clip.stored.jpegs[k] == every.jpegs[k]
      assert clip.stored_image(t).size == clip.stored_size


def test_serving_client_reads_only_the_frames_it_sends(videos, tmp_path):
  folder = vf.write_frame_folder(str(tmp_path / "f"), 11)
  for path in (videos["h264_b.mkv"], folder):
    sent = serving_client.frames_to_send(path, 4)
    want = serving_client.sample_frames(serving_client.read_video(path), 4)
    assert sent.jpegs == want.jpegs
    assert (sent.height, sent.width) == (want.height, want.width)
    every = serving_client.frames_to_send(path, serving_client.ALL_FRAMES)
    assert every.jpegs == serving_client.read_video(path).jpegs


# Reads one clip the way Predictor.read does, in a fresh process, and reports
# its peak memory; "full" stores every frame first, as prediction did before
# issue 23 (decode_video_file, then the evaluation transform). The peak is
# /proc's VmHWM, the process's own: getrusage's ru_maxrss carries over the
# peak of the process that started it (Linux keeps it across fork and exec),
# which for a test worker holding trained runs is gigabytes.
_MEASURE = """
import json, sys
from adafocus_tf import config
from adafocus_tf.data import video_decode
from adafocus_tf.inference import clips
mode, path = sys.argv[1:]
cfg, settings = config.ExperimentConfig(), video_decode.FrameSettings()
if mode == "sparse":
  stored = clips.read_clip(path, cfg, settings).stored
  decoded = stored.jpegs.decoded
else:
  stored = video_decode.decode_video_file(path, settings)
  clips.preprocess(stored, cfg)
  decoded = len(stored.jpegs)
with open("/proc/self/status") as f:
  hwm_kb = next(int(line.split()[1]) for line in f
                if line.startswith("VmHWM:"))
print(json.dumps({"count": len(stored.jpegs), "decoded": decoded,
                  "peak_mb": hwm_kb / 1024}))
"""


def _measure(mode, path):
  out = subprocess.run([sys.executable, "-c", _MEASURE, mode, path],
                       capture_output=True, text=True, timeout=300,
                       check=True, cwd=helpers.REPO)
  return json.loads(out.stdout.splitlines()[-1])


def test_a_long_video_costs_what_a_short_one_does(tmp_path):
  short = _long_video(str(tmp_path / "short.mp4"), 10)
  long_ = _long_video(str(tmp_path / "long.mp4"), 150)
  sparse_short = _measure("sparse", short)
  sparse_long = _measure("sparse", long_)
  full_long = _measure("full", long_)
  assert sparse_long["count"] == full_long["count"] == 150 * LONG_FPS
  # T = 16 frames, each needing at most its GOP decoded: not the 1800.
  assert sparse_long["decoded"] <= 16 * LONG_GOP
  growth = sparse_long["peak_mb"] - sparse_short["peak_mb"]
  assert growth < 40, (sparse_short, sparse_long)
  # Holding every frame (what this test would see before issue 23) costs
  # far more than the bound above.
  assert full_long["peak_mb"] - sparse_short["peak_mb"] > 4 * 40, full_long

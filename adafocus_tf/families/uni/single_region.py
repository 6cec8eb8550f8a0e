"""What the Uni-AdaFocus families with one region per video (TSM, X3D)
read of the data: two frame streams, G glance frames and N candidates of
which K are focused on, one position drawn per video for the random
branch (docs/METHOD.md V2-11.4)."""
from adafocus_tf.families import model_family
from adafocus_tf.families.two_stream import family as two_stream


class SingleRegionFamily(model_family.ModelFamily):
  """The frame streams and steps of ``models/uni/single_region.py``'s
  networks; a subclass gives the rest of a family."""

  def frame_streams(self, cfg):
    return two_stream.two_streams(cfg)

  def frames_read(self, cfg):
    return cfg.data.glance_frames, cfg.uni.focus_frames

  def patch_steps(self, cfg):
    return cfg.uni.focus_frames

  def random_position_steps(self, cfg):
    return 1  # One random position per video, as the one region.

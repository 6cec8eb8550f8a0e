"""What the Uni-AdaFocus families with one region per video share
(docs/METHOD.md V2-11.4): the TSM family (``uni_tsm.py``) and the X3D
family (``uni_x3d.py``) differ in their nets and heads only.

The spatial policy gives one deformable region per video (its last
convolution spans all G glance maps), cut from every frame the temporal
policy selects among the N candidates and resampled to P x P; it learns
through ``aux_head`` on its region of the stopped glance maps. The
policies are built in full precision (``models/precision.py``), and so is
the cut of the glance maps, as the official code runs them with autocast
off.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import precision
from adafocus_tf.models.uni import deformable_regions as regions_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import spatial_policy
from adafocus_tf.models.uni import temporal_policy


def cut_maps(maps, actions, patch_size: int, min_side: float,
             max_side: float, grid: int):
  """Each video's region of its glance maps, [B, G, grid, grid, C].

  Args:
    maps: [B, G, h, w, C] glance maps.
    actions: [B, 4] one action per video (the same region on every map).
    patch_size: P (the region's side in map cells is ``grid / P`` of its
      side in frame pixels).
    min_side: L_min in frame pixels.
    max_side: L_max in frame pixels.
    grid: the output side (``deformable_regions.map_grid``).
  """
  shape = tf.shape(maps)
  b, g = shape[0], shape[1]
  boxes = regions_lib.regions(actions, float(maps.shape[2]), min_side,
                              max_side, grid / patch_size)
  boxes = tf.reshape(tf.repeat(boxes[:, None], g, axis=1), [-1, 4])
  flat = tf.reshape(maps, tf.concat([[b * g], shape[2:]], 0))
  cut = regions_lib.resample(flat, boxes, grid)
  return tf.reshape(cut, tf.concat([[b, g], tf.shape(cut)[1:]], 0))


class SingleRegionUni(tf.keras.Model):
  """The policies, plan, regions and patches of a Uni-AdaFocus network
  with one region per video; a subclass builds the nets and heads, then
  calls ``add_policies``.

  Args:
    cfg: the experiment config (``data.glance_frames`` G,
      ``data.focus_frames`` N candidates, ``uni.focus_frames`` K, the
      region range and the policies' widths).
    name: the model's name.
  """

  def __init__(self, cfg: ExperimentConfig, name: str):
    super().__init__(name=name)
    m, d, u = cfg.model, cfg.data, cfg.uni
    self.frame_size, self.patch_size = d.frame_size, m.patch_size
    self.num_glance, self.num_candidates = d.glance_frames, d.focus_frames
    self.num_focus = u.focus_frames
    self.min_region, self.max_region = u.min_region, u.max_region
    self.rate = m.head_dropout
    self.mc_draws, self.norm_ratio, self.kl_ratio = (u.mc_draws, u.norm_ratio,
                                                     u.kl_ratio)

  def add_policies(self, cfg: ExperimentConfig, map_side: int) -> None:
    """Builds both policies for glance maps of ``map_side`` cells.

    Args:
      cfg: the experiment config.
      map_side: the glance maps' side h = w.
    """
    u = cfg.uni
    # The official ``global_feat_map_patch_size``: round(h P / S).
    self.map_grid = regions_lib.map_grid(self.patch_size, self.frame_size,
                                         map_side)
    self.spatial_policy = spatial_policy.SpatialPolicy(
        u.spatial_hidden, self.num_glance, map_side)
    self.temporal_policy = temporal_policy.TemporalPolicy(u.temporal_hidden)

  # -- policies ---------------------------------------------------------------
  def video_actions(self, maps, training=False):
    """One spatial action [B, 4] per video, from the stopped glance maps."""
    return self.spatial_policy(tf.stop_gradient(maps), training=training)[:, 0]

  def temporal_weights(self, pooled, training=False):
    """The temporal weights w [B, G] of stopped pooled glance features."""
    return self.temporal_policy(tf.stop_gradient(pooled), training=training)

  def regions(self, actions):
    """Regions (y, x, L_y, L_x) in frame pixels of actions [..., 4]."""
    return regions_lib.regions(actions, self.frame_size, self.min_region,
                               self.max_region)

  def plan_of(self, weights, actions, frame_draws=None):
    """The plan [B, K, 5] of temporal weights [B, G] and one action [B, 4]
    per video: the selected candidates, each with the video's region."""
    idx = frame_selection.select(weights, self.num_candidates, self.num_focus,
                                 frame_draws)
    region = self.regions(tf.stop_gradient(actions))
    return focus_plan.make(idx, tf.repeat(region[:, None], self.num_focus,
                                          axis=1))

  def policy_plan(self, maps, pooled, training=False, frame_draws=None):
    """The policies' plan [B, K, 5] (``focus_plan``).

    Args:
      maps: [B, G, h, w, C] glance maps.
      pooled: [B, G, C] pooled glance features.
      training: batch-norm mode of the policies.
      frame_draws: [B, K] the selection's u_i (training), or None.
    """
    return self.plan_of(self.temporal_weights(pooled, training),
                        self.video_actions(maps, training), frame_draws)

  def spatial_aux_logits(self, maps, actions):
    """The spatial policy's auxiliary prediction [B, C]: the video's region
    of each stopped glance map resampled to the grid a patch spans,
    averaged over space and frames, through ``aux_head``; trained through
    the actions [B, 4]."""
    # Full precision, as the official cut (autocast off).
    cut = cut_maps(precision.to_full_precision(tf.stop_gradient(maps)),
                   actions, self.patch_size, self.min_region,
                   self.max_region, self.map_grid)
    return self.aux_head(tf.reduce_mean(cut, axis=[1, 2, 3]))

  # -- patches ----------------------------------------------------------------
  def patches(self, candidates, plan):
    """[B * K, P, P, 3] the plan's regions resampled, video-major.

    Args:
      candidates: [B, N, S, S, 3] the candidate frames.
      plan: [B, K, 5].
    """
    picked = tf.gather(candidates, focus_plan.indices(plan), batch_dims=1)
    shape = tf.shape(picked)
    flat = tf.reshape(picked, tf.concat([[-1], shape[2:]], 0))
    return regions_lib.resample(flat, tf.reshape(focus_plan.regions(plan),
                                                 [-1, 4]), self.patch_size)

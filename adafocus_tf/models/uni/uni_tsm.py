"""The Uni-AdaFocus network, TSM family (docs/METHOD.md V2-6, V2-11.4).

Two frame streams, as V2-TSM's: a TSM glance net reads the G frames of
``glance_frames``; ``focus_frames`` holds N candidate frames (TSN segments
of the same video, sampled on their own), of which the temporal policy
picks K for a TSM focus net. The spatial policy gives one deformable region
per video (its last convolution spans all G glance maps), cut from every
selected frame and resampled to P x P.

Each net has V2-TSM's two heads after one dropout: ``head`` (the official
``new_fc``) on the pooled feature with its gradient stopped, and
``*_aux_head`` (``new_new_fc``) on the feature itself. The prediction is
the mean over frames of the glance ``head`` plus the mean over patches of
the focus ``head``; the glance-only exit is the mean of the glance
``aux_head``'s per-frame logits. The temporal policy reads the (dropped,
as the official net's) pooled glance features with their gradient stopped,
and its Monte-Carlo objective the stopped per-frame ``aux_head`` logits;
the spatial policy learns through ``aux_head`` (the official ``aux_fc``)
on its region of the stopped glance maps. The policies' training is
``families/uni_tsm/loss.py``'s.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import precision
from adafocus_tf.models import two_stream
from adafocus_tf.models.adafocus_v2 import head_dropout
from adafocus_tf.models.uni import deformable_regions as regions_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import spatial_policy
from adafocus_tf.models.uni import temporal_policy

# Added to a video's seed for the glance and focus dropout masks (V2-TSM's).
GLANCE_DROPOUT_STREAM = 2
FOCUS_DROPOUT_STREAM = 3


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


class UniAdaFocusTSM(tf.keras.Model):
  """TSM glance and focus nets with two heads each, both policies and the
  spatial policy's auxiliary head (module doc).

  Args:
    cfg: the experiment config (``model.variant = uni_tsm``;
      ``data.glance_frames`` G, ``data.focus_frames`` N candidates,
      ``uni.focus_frames`` K).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d, u = cfg.model, cfg.data, cfg.uni
    self.frame_size, self.patch_size = d.frame_size, m.patch_size
    self.num_glance, self.num_candidates = d.glance_frames, d.focus_frames
    self.num_focus = u.focus_frames
    self.min_region, self.max_region = u.min_region, u.max_region
    self.rate = m.head_dropout
    self.mc_draws, self.norm_ratio, self.kl_ratio = (u.mc_draws, u.norm_ratio,
                                                     u.kl_ratio)
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(
        m.focus_backbone, d.num_classes, m.focus_weights,
        **two_stream.temporal_shift_args(m, u.focus_frames))
    out = precision.output_dtype()
    self.glance_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=out, name="glance_aux_head")
    self.focus_aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=out, name="focus_aux_head")
    # The spatial policy's auxiliary classifier (the official ``aux_fc``).
    self.aux_head = tf.keras.layers.Dense(d.num_classes, dtype=out,
                                          name="aux_head")
    map_side = self.glance.map_shape[0]
    self.map_grid = regions_lib.map_grid(m.patch_size, d.frame_size, map_side)
    self.spatial_policy = spatial_policy.SpatialPolicy(
        u.spatial_hidden, d.glance_frames, map_side)
    self.temporal_policy = temporal_policy.TemporalPolicy(u.temporal_hidden)

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    maps, pooled = self.glance_features(
        tf.zeros([1, self.num_glance, s, s, 3]))
    plan = self.policy_plan(maps, pooled)
    self.glance_logits(pooled)
    self.spatial_aux_logits(maps, self.video_actions(maps))
    self.focus_logits(tf.zeros([1, self.num_candidates, s, s, 3]), plan)

  # -- glance -----------------------------------------------------------------
  def glance_features(self, glance_frames, training=False):
    """Maps [B, G, h, w, C] and pooled [B, G, C] of the glance frames."""
    return adafocus.video_glance(self.glance, glance_frames, training)

  def glance_dropout(self, pooled, seeds=None, training=False):
    """The glance features after the heads' dropout (training only): what
    both glance heads and, in training, the temporal policy read."""
    return head_dropout(pooled, self.rate, seeds, GLANCE_DROPOUT_STREAM,
                        training)

  def glance_heads(self, dropped):
    """(mean ``head`` logits on the stopped features [B, C], the
    ``glance_aux_head``'s per-frame logits [B, G, C]) of dropped features.
    """
    head = tf.reduce_mean(self.glance.head(tf.stop_gradient(dropped)), 1)
    return head, self.glance_aux_head(dropped)

  def glance_logits(self, pooled, seeds=None, training=False):
    """[B, C]: the glance ``head``'s logits averaged over the glance frames
    (the prediction's glance summand)."""
    return self.glance_heads(self.glance_dropout(pooled, seeds, training))[0]

  def glance_only_logits(self, pooled):
    """[B, C]: the glance-only exit, the mean of the ``glance_aux_head``'s
    per-frame logits (the one trained with the glance net)."""
    return tf.reduce_mean(self.glance_aux_head(pooled), axis=1)

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
    cut = cut_maps(tf.stop_gradient(maps), actions, self.patch_size,
                   self.min_region, self.max_region, self.map_grid)
    return self.aux_head(tf.reduce_mean(cut, axis=[1, 2, 3]))

  # -- focus ------------------------------------------------------------------
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

  def focus_features(self, candidates, plan, training=False):
    """Focus features [B, K, D] of the plan's patches."""
    feats = self.focus(self.patches(candidates, plan), training=training)
    return tf.reshape(feats, [tf.shape(plan)[0], -1, feats.shape[-1]])

  def focus_heads(self, feats, seeds=None, training=False):
    """(mean ``head`` logits on the stopped features, mean
    ``focus_aux_head`` logits), each [B, C], of focus features [B, K, D]."""
    dropped = head_dropout(feats, self.rate, seeds, FOCUS_DROPOUT_STREAM,
                           training)
    return (tf.reduce_mean(self.focus.head(tf.stop_gradient(dropped)), 1),
            tf.reduce_mean(self.focus_aux_head(dropped), 1))

  def focus_logits(self, candidates, plan, seeds=None, training=False,
                   train_focus=None):
    """[B, C]: the focus ``head``'s logits averaged over the plan's patches
    (the prediction's focus summand)."""
    train_focus = training if train_focus is None else train_focus
    feats = self.focus_features(candidates, plan, training=train_focus)
    return self.focus_heads(feats, seeds, training)[0]

  def head_logits(self, pooled, candidates, plan, seeds=None, training=False,
                  train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's
    (glance ``head`` mean + focus ``head`` mean)."""
    prediction = (self.glance_logits(pooled, seeds, training)
                  + self.focus_logits(candidates, plan, seeds, training,
                                      train_focus))
    glance_only = self.glance_only_logits(pooled)
    return tf.stack([tf.cast(glance_only, prediction.dtype), prediction], 1)

  def call(self, glance_frames, candidates, training=False):
    """[B, 2, C] (``head_logits``) of the policies' plan (Keras' entry)."""
    maps, pooled = self.glance_features(glance_frames)
    return self.head_logits(pooled, candidates,
                            self.policy_plan(maps, pooled))

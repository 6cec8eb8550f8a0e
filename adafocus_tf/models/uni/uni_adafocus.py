"""The Uni-AdaFocus network, ActivityNet family (docs/METHOD.md V2-11.2).

Of N candidate frames per video the glance net reads G (one per group);
the temporal policy weighs them and picks K frames for the focus net; the
spatial policy gives a deformable region per glance frame, interpolated in
time to the candidates; each selected frame's region is resampled to
P x P for the focus net; the pooling classifier predicts after every
glance and every focus frame. The policies learn through auxiliary
predictions (``families/uni/loss.py``), not through the focus net.

Under mixed precision only the two backbones compute in half precision, as
in the official semi-AMP model (``uni_adafocus_semiAMP.py``): their
outputs are read in full precision (``glance_features``,
``patch_features``) and every other part is built in it
(``models/precision.py``; docs/METHOD.md V2-11.4).
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.models import adafocus
from adafocus_tf.models import focus as focus_lib
from adafocus_tf.models import glance as glance_lib
from adafocus_tf.models import precision
from adafocus_tf.models.adafocus_v2 import head_dropout
from adafocus_tf.models.uni import deformable_regions as regions_lib
from adafocus_tf.models.uni import focus_plan
from adafocus_tf.models.uni import frame_selection
from adafocus_tf.models.uni import pooling_classifier
from adafocus_tf.models.uni import spatial_policy
from adafocus_tf.models.uni import temporal_policy

# Added to a video's seed for the glance and focus heads' dropout masks
# (as V2's), independent of the classifier's (the seed itself).
_GLANCE_HEAD_STREAM = 2
_FOCUS_HEAD_STREAM = 3


class UniAdaFocus(tf.keras.Model):
  """Glance net, temporal and spatial policies, focus net and classifier.

  Args:
    cfg: the experiment config (``model.variant = uni``; ``data.num_frames``
      candidates, ``uni.glance_frames`` G and ``uni.focus_frames`` K).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(name=name)
    m, d, u = cfg.model, cfg.data, cfg.uni
    self.frame_size, self.patch_size = d.frame_size, m.patch_size
    self.num_candidates = d.num_frames
    self.num_glance, self.num_focus = u.glance_frames, u.focus_frames
    self.min_region, self.max_region = u.min_region, u.max_region
    self.head_rate = m.head_dropout
    self.mc_draws, self.norm_ratio, self.kl_ratio = (u.mc_draws, u.norm_ratio,
                                                     u.kl_ratio)
    self.glance = glance_lib.from_config(cfg)
    self.focus = focus_lib.FocusNet(m.focus_backbone, d.num_classes,
                                    m.focus_weights)
    map_side = self.glance.map_shape[0]
    self.map_grid = regions_lib.map_grid(m.patch_size, d.frame_size, map_side)
    self.spatial_policy = spatial_policy.SpatialPolicy(u.spatial_hidden, 1,
                                                       map_side)
    self.temporal_policy = temporal_policy.TemporalPolicy(u.temporal_hidden)
    self.aux_head = tf.keras.layers.Dense(
        d.num_classes, dtype=precision.output_dtype(), name="aux_head")
    self.classifier = pooling_classifier.PoolingClassifier(
        d.num_classes, m.classifier_hidden, u.glance_frames, u.focus_frames,
        m.dropout)

  def build_all(self):
    """Creates every variable (for checkpoint restore before any step)."""
    s = self.frame_size
    frames = tf.zeros([1, self.num_candidates, s, s, 3])
    maps, pooled = self.glance_features(frames)
    plan = self.policy_plan(maps, pooled)
    self.glance_head_logits(pooled)
    self.spatial_aux_logits(maps, self.spatial_policy(maps))
    self.head_logits(pooled, frames, plan)
    self.focus.logits(self.focus_features(frames, plan))

  # -- glance -----------------------------------------------------------------
  def glance_indices(self, batch: int, draws=None):
    """[B, G] candidates the glance reads (``frame_selection``)."""
    return frame_selection.glance_indices(batch, self.num_candidates,
                                          self.num_glance, draws)

  def glance_features(self, frames, training=False, draws=None):
    """Glance maps [B, G, h, w, C] and pooled [B, G, C], in full precision.

    Args:
      frames: [B, N, S, S, 3] the candidates, chronological.
      training: batch-norm mode of the glance backbone.
      draws: the frame within each group (training), or None (the middle).
    """
    idx = self.glance_indices(tf.shape(frames)[0], draws)
    return precision.to_full_precision(adafocus.video_glance(
        self.glance, tf.gather(frames, idx, batch_dims=1), training))

  def glance_head_logits(self, pooled, seeds=None, training=False):
    """The glance head on every glance frame [B, G, C]."""
    return self.glance.logits(head_dropout(
        pooled, self.head_rate, seeds, _GLANCE_HEAD_STREAM, training))

  # -- policies ---------------------------------------------------------------
  def frame_actions(self, maps, training=False):
    """Spatial actions [B, G, 4] per glance frame, from stopped maps."""
    return self.spatial_policy(tf.stop_gradient(maps), training=training)

  def regions(self, actions):
    """Regions (y, x, L_y, L_x) in frame pixels of actions [..., 4]."""
    return regions_lib.regions(actions, self.frame_size, self.min_region,
                               self.max_region)

  def policy_plan(self, maps, pooled, training=False, frame_draws=None):
    """The policies' plan [B, K, 5] (``focus_plan``), actions stopped.

    Args:
      maps: [B, G, h, w, C] glance maps.
      pooled: [B, G, C] pooled glance features.
      training: batch-norm mode of the policies.
      frame_draws: [B, K] the selection's u_i (training), or None.
    """
    weights = self.temporal_policy(pooled, training=training)
    actions = self.frame_actions(maps, training)
    return self.plan_of(weights, actions, frame_draws)

  def plan_of(self, weights, actions, frame_draws=None):
    """The plan of temporal weights [B, G] and per-glance-frame actions
    [B, G, 4]: the selected candidates and the actions interpolated there.
    """
    idx = frame_selection.select(weights, self.num_candidates,
                                 self.num_focus, frame_draws)
    candidates = frame_selection.interpolate_in_time(actions,
                                                     self.num_candidates)
    chosen = tf.stop_gradient(tf.gather(candidates, idx, batch_dims=1))
    return focus_plan.make(idx, self.regions(chosen))

  def spatial_aux_logits(self, maps, actions):
    """The spatial policy's auxiliary prediction [B, C]: each glance map's
    region (stopped map, trained actions) resampled to the grid a patch
    spans, averaged over space and frames, through ``aux_head``."""
    shape = tf.shape(maps)
    b, g = shape[0], shape[1]
    side = maps.shape[2]
    scale = self.map_grid / self.patch_size
    boxes = regions_lib.regions(actions, float(side), self.min_region,
                                self.max_region, scale)
    flat = tf.reshape(tf.stop_gradient(maps),
                      tf.concat([[b * g], shape[2:]], 0))
    cut = regions_lib.resample(flat, tf.reshape(boxes, [-1, 4]),
                               self.map_grid)
    feature = tf.reduce_mean(tf.reshape(
        cut, [b, -1, maps.shape[-1]]), axis=1)
    return self.aux_head(feature)

  # -- focus and classifier ---------------------------------------------------
  def patches(self, frames, plan):
    """[B * K, P, P, 3] the plan's regions resampled, video-major."""
    picked = tf.gather(frames, focus_plan.indices(plan), batch_dims=1)
    shape = tf.shape(picked)
    flat = tf.reshape(picked, tf.concat([[-1], shape[2:]], 0))
    return regions_lib.resample(flat, tf.reshape(focus_plan.regions(plan),
                                                 [-1, 4]), self.patch_size)

  def patch_features(self, patches, training=False):
    """Focus features [n, D] of patches [n, P, P, 3], in full precision.

    Args:
      patches: the patches, video-major.
      training: batch-norm mode of the focus backbone.
    """
    return precision.to_full_precision(self.focus(patches, training=training))

  def focus_features(self, frames, plan, training=False):
    """Focus features [B, K, D] of the plan's patches."""
    feats = self.patch_features(self.patches(frames, plan), training)
    return tf.reshape(feats, [tf.shape(plan)[0], -1, feats.shape[-1]])

  def focus_head_logits(self, feats, seeds=None, training=False):
    """The focus head on every patch [B, K, C]."""
    return self.focus.logits(head_dropout(
        feats, self.head_rate, seeds, _FOCUS_HEAD_STREAM, training))

  def head_logits(self, pooled, frames, plan, seeds=None, training=False,
                  train_focus=None):
    """Every step's logits [B, G + K, C] (the recognizer's form)."""
    train_focus = training if train_focus is None else train_focus
    feats = self.focus_features(frames, plan, training=train_focus)
    return self.classifier(pooled, feats, seeds, training=training)

  def call(self, frames, training=False):
    """Every step's logits [B, G + K, C] of the policies' plan."""
    maps, pooled = self.glance_features(frames)
    return self.head_logits(pooled, frames, self.policy_plan(maps, pooled))

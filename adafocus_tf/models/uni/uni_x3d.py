"""The Uni-AdaFocus network, X3D family (docs/METHOD.md V2-11.4, V2-11.5).

The TSM family's structure (``single_region.py``'s policies, plan and
regions, shared with ``uni_tsm.py``) with X3D clip networks: X3D-S reads
the G glance frames, resized to ``model.glance_size``, as one clip; the temporal
policy picks K of the N candidates and the spatial policy one deformable
region per video, cut from every selected frame and resampled to P x P;
X3D-L reads the K patches as one clip (official ``archs/uni_adafocus_X3D.py``
``AdaFocus``).

Each net has two heads, as the official's:

  * its own X3D head (``lin_5``, dropout, ``projection``) on the mean of
    its feature map with the gradient stopped (``X3D.get_featmap`` pools a
    detached map): the prediction is the glance head's logits plus the
    focus head's;
  * a per-frame head (``global_CNN_head`` / ``local_CNN_head``: dense to
    the X3D head's hidden width without bias, ReLU, dropout, dense to the
    classes) on each frame's spatial mean, trained with the net: the mean
    of the glance one over the G frames is the glance-only exit; the
    temporal policy's Monte-Carlo objective reads its per-frame logits
    stopped.

The temporal policy reads the stopped per-frame glance features (no
dropout, unlike the TSM family); the spatial policy learns through
``aux_head`` on its region of the stopped glance maps. Under mixed
precision only the X3D nets (their heads included) compute in half
precision, as the official autocast around ``get_featmap``; their maps
are read in full precision (``models/precision.py``). Training:
``families/uni_x3d/loss.py``.
"""
from __future__ import annotations

import tensorflow as tf

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.convert import x3d as x3d_convert
from adafocus_tf.models import bilinear_resize
from adafocus_tf.models import precision
from adafocus_tf.models.adafocus_v2 import head_dropout
from adafocus_tf.models.uni import single_region
from adafocus_tf.models.uni import uni_tsm
from adafocus_tf.models.x3d import backbone as x3d_lib
from adafocus_tf.models.x3d import settings as x3d_settings

# Added to a video's seed for the dropout masks of the glance and focus
# nets' X3D heads and per-frame heads.
GLANCE_DROPOUT_STREAM = uni_tsm.GLANCE_DROPOUT_STREAM
FOCUS_DROPOUT_STREAM = uni_tsm.FOCUS_DROPOUT_STREAM
GLANCE_FRAME_DROPOUT_STREAM = 8
FOCUS_FRAME_DROPOUT_STREAM = 9


class FrameHead(tf.keras.layers.Layer):
  """Per-frame logits [..., C] of features [..., F]: dense ``hidden``
  units without bias, ReLU, dropout (seeded per video), dense C (the
  official ``global_CNN_head`` / ``local_CNN_head``, initialised from the
  X3D head's ``lin_5`` and ``projection``: ``copy_from``).

  Args:
    hidden: the hidden units (the X3D head's ``dim_c5``).
    num_classes: C.
    rate: dropout rate.
    stream: added to the video seeds for its dropout mask.
    name: layer name.
  """

  def __init__(self, hidden: int, num_classes: int, rate: float,
               stream: int, name: str = None):
    # In full precision: the official heads run outside the backbones'
    # autocast.
    with precision.full_precision():
      super().__init__(name=name)
      self.rate, self.stream = rate, stream
      self.lin = tf.keras.layers.Dense(hidden, use_bias=False, name="lin")
      self.projection = tf.keras.layers.Dense(num_classes, name="projection")

  def call(self, feats, seeds=None, training=False):
    hidden = tf.nn.relu(self.lin(feats))
    return self.projection(head_dropout(hidden, self.rate, seeds,
                                        self.stream, training))

  def copy_from(self, head) -> None:
    """Sets the weights to an ``X3DHead``'s ``lin_5`` and ``projection``."""
    self.lin.kernel.assign(head.lin_5.kernel)
    self.projection.kernel.assign(head.projection.kernel)
    self.projection.bias.assign(head.projection.bias)


class UniAdaFocusX3D(single_region.SingleRegionUni):
  """X3D glance and focus nets with two heads each, both policies and the
  spatial policy's auxiliary head (module doc).

  The policies, plan, regions and patches are ``SingleRegionUni``'s.

  Args:
    cfg: the experiment config (``model.variant = uni_x3d``;
      ``model.glance_backbone`` / ``focus_backbone`` ``x3d_<preset>``, and
      optionally ``glance_weights`` / ``focus_weights`` their SlowFast
      checkpoint files;
      ``data.glance_frames`` G, ``data.focus_frames`` N candidates,
      ``uni.focus_frames`` K).
  """

  def __init__(self, cfg: ExperimentConfig, name: str = "adafocus"):
    super().__init__(cfg, name)
    m, d = cfg.model, cfg.data
    self.glance_size = m.glance_size
    self.weight_files = (m.glance_weights, m.focus_weights)
    glance_settings = x3d_settings.preset(m.glance_backbone)
    focus_settings = x3d_settings.preset(m.focus_backbone)
    self.glance = x3d_lib.X3D(glance_settings, d.num_classes, self.rate,
                              m.glance_size, name="glance")
    self.focus = x3d_lib.X3D(focus_settings, d.num_classes, self.rate,
                             m.patch_size, name="focus")
    self.glance_frame_head = FrameHead(
        glance_settings.dim_c5, d.num_classes, self.rate,
        GLANCE_FRAME_DROPOUT_STREAM, name="glance_frame_head")
    self.focus_frame_head = FrameHead(
        focus_settings.dim_c5, d.num_classes, self.rate,
        FOCUS_FRAME_DROPOUT_STREAM, name="focus_frame_head")
    # The spatial policy's auxiliary classifier (the official ``aux_head``).
    with precision.full_precision():
      self.aux_head = tf.keras.layers.Dense(d.num_classes, name="aux_head")
    self.add_policies(cfg, self.glance.map_shape[0])

  def build_all(self):
    """Creates every variable, fills the X3D nets from
    ``model.glance_weights`` / ``focus_weights`` when set (SlowFast X3D
    files, the official ``load_pretrain``) and sets the per-frame heads to
    the X3D heads' weights (the official ``share_head_params``)."""
    s = self.frame_size
    maps, pooled = self.glance_features(
        tf.zeros([1, self.num_glance, s, s, 3]))
    plan = self.policy_plan(maps, pooled)
    self.glance_only_logits(pooled)
    self.spatial_aux_logits(maps, self.video_actions(maps))
    self.head_logits(maps, pooled, tf.zeros([1, self.num_candidates, s, s, 3]),
                     plan)
    for net, path in zip((self.glance, self.focus), self.weight_files):
      if path:
        x3d_convert.load_file(net, path)
    self.copy_heads()

  def copy_heads(self) -> None:
    """Per-frame heads <- the X3D heads' ``lin_5`` and ``projection`` (after
    loading pretrained X3D weights)."""
    self.glance_frame_head.copy_from(self.glance.head)
    self.focus_frame_head.copy_from(self.focus.head)

  # -- glance -----------------------------------------------------------------
  def glance_features(self, glance_frames, training=False):
    """Maps [B, G, h, w, F] and per-frame features [B, G, F] of the glance
    frames [B, G, S, S, 3], resized to the glance size (bilinear, half-pixel
    centres: the official ``F.interpolate``; in the frames' dtype) and read
    as one clip."""
    shape = tf.shape(glance_frames)
    frames = tf.reshape(glance_frames, tf.concat([[-1], shape[2:]], 0))
    frames = bilinear_resize.resize(frames, [self.glance_size] * 2)
    clip = tf.reshape(frames, [shape[0], self.num_glance, self.glance_size,
                               self.glance_size, 3])
    maps = self.glance.features(clip, training=training)
    # Read in full precision (the official ``.float()`` after autocast).
    return precision.to_full_precision((maps,
                                        self.glance.frame_features(maps)))

  def glance_logits(self, maps, seeds=None, training=False):
    """[B, C]: the glance X3D head on the stopped maps (the prediction's
    glance summand)."""
    head = self.glance.head
    hidden = head.hidden(tf.stop_gradient(maps))
    return head.projection(head_dropout(hidden, self.rate, seeds,
                                        GLANCE_DROPOUT_STREAM, training))

  def glance_frame_logits(self, pooled, seeds=None, training=False):
    """[B, G, C]: the per-frame glance head's logits."""
    return self.glance_frame_head(pooled, seeds, training=training)

  def glance_only_logits(self, pooled):
    """[B, C]: the glance-only exit, the per-frame glance head's logits
    averaged over the glance frames."""
    return tf.reduce_mean(self.glance_frame_logits(pooled), axis=1)

  # -- focus ------------------------------------------------------------------
  def focus_clip(self, candidates, plan):
    """[B, K, P, P, 3]: the plan's patches of each video, as a clip.

    Args:
      candidates: [B, N, S, S, 3] the candidate frames.
      plan: [B, K, 5].
    """
    patches = self.patches(candidates, plan)
    return tf.reshape(patches, [tf.shape(plan)[0], self.num_focus,
                                self.patch_size, self.patch_size, 3])

  def focus_clip_features(self, clips, training=False):
    """Focus maps [n, K, h, w, F] of clips [n, K, P, P, 3], in full
    precision."""
    return precision.to_full_precision(self.focus.features(
        clips, training=training))

  def focus_features(self, candidates, plan, training=False):
    """Focus maps [B, K, h, w, F] of the plan's patches, read as one clip."""
    return self.focus_clip_features(self.focus_clip(candidates, plan),
                                    training=training)

  def focus_heads(self, maps, seeds=None, training=False):
    """(the focus X3D head's logits on the stopped maps, the mean
    per-frame focus logits), each [B, C], of focus maps [B, K, h, w, F]."""
    head = self.focus.head
    hidden = head.hidden(tf.stop_gradient(maps))
    logits = head.projection(head_dropout(hidden, self.rate, seeds,
                                          FOCUS_DROPOUT_STREAM, training))
    frames = self.focus_frame_head(self.focus.frame_features(maps), seeds,
                                   training=training)
    return logits, tf.reduce_mean(frames, axis=1)

  def focus_logits(self, candidates, plan, seeds=None, training=False,
                   train_focus=None):
    """[B, C]: the focus X3D head's logits (the prediction's focus
    summand)."""
    train_focus = training if train_focus is None else train_focus
    maps = self.focus_features(candidates, plan, training=train_focus)
    return self.focus_heads(maps, seeds, training)[0]

  def head_logits(self, maps, pooled, candidates, plan, seeds=None,
                  training=False, train_focus=None):
    """[B, 2, C]: the glance-only exit's logits and the prediction's
    (glance X3D head + focus X3D head).

    Args:
      maps: [B, G, h, w, F] glance maps.
      pooled: [B, G, F] per-frame glance features.
      candidates: [B, N, S, S, 3].
      plan: [B, K, 5].
      seeds: video seeds of the dropout masks (training).
      training: dropout on.
      train_focus: batch-norm mode of the focus net (default ``training``).
    """
    prediction = (self.glance_logits(maps, seeds, training)
                  + self.focus_logits(candidates, plan, seeds, training,
                                      train_focus))
    glance_only = self.glance_only_logits(pooled)
    return tf.stack([tf.cast(glance_only, prediction.dtype), prediction], 1)

  def call(self, glance_frames, candidates, training=False):
    """[B, 2, C] (``head_logits``) of the policies' plan (Keras' entry)."""
    maps, pooled = self.glance_features(glance_frames)
    return self.head_logits(maps, pooled, candidates,
                            self.policy_plan(maps, pooled))

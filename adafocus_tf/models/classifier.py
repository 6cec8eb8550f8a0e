"""Classifiers fusing glance and focus features over time (docs/METHOD.md 2).

The recurrent ("gru") and per-frame ("fc") classifiers of the V1 model
expose the same interface:

  ``call(features [B, T, D], seeds, training) -> logits [B, T, C]``
  ``step_probs(logits) -> [B, T, C]``: the prediction after each frame
  ``loss(logits, targets) -> [B]``: per-video training loss
  ``step(x [B, D], state) -> (logits [B, C], state)``: one frame at a time

``LogitMeanClassifier`` ("logit_mean", the two-stream Something-Something
model of docs/METHOD.md section 3) makes one prediction per video, returned
with a time axis of 1 so that ``step_probs`` and ``loss`` read the same way.

Dropout draws its mask statelessly from each video's seed, so a step is
reproducible whatever replica runs it and after a resume.
"""
import tensorflow as tf

from adafocus_tf.models import gru_inference
from adafocus_tf.models import precision


def per_video_dropout(x, rate: float, seeds):
  """Inverted dropout whose mask for video i depends only on ``seeds[i]``.

  Args:
    x: [B, ...] activations.
    rate: fraction dropped.
    seeds: int [B, 2] stateless seeds.

  Returns:
    ``x`` with dropped entries zeroed and the rest scaled by 1 / (1 - rate).
  """
  if rate <= 0.0:
    return x
  shape = tf.shape(x)[1:]
  keep = tf.map_fn(
      lambda s: tf.random.stateless_uniform(shape, s) >= rate, seeds,
      fn_output_signature=tf.bool)
  return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def soft_cross_entropy(logits, targets):
  """Cross-entropy against a distribution over classes, per leading index."""
  return -tf.reduce_sum(tf.cast(targets, logits.dtype)
                        * tf.nn.log_softmax(logits), axis=-1)


def per_step_loss(logits, targets):
  """[B]: cross-entropy of every step's logits [B, T, C], averaged over steps.

  Args:
    logits: [B, T, C].
    targets: [B, C] target distributions, the same at every step.
  """
  t = tf.shape(logits)[1]
  tiled = tf.repeat(targets[:, None, :], t, axis=1)
  return tf.reduce_mean(soft_cross_entropy(logits, tiled), axis=1)


class RecurrentClassifier(tf.keras.Model):
  """"gru": a GRU over the fused features and a linear layer at every step.

  Trained with cross-entropy on every step's logits; the prediction is the
  last step's (or step t's, for early exit).

  Args:
    num_classes: C.
    hidden: GRU units.
    dropout: dropout rate before the output layer.
  """

  def __init__(self, num_classes: int, hidden: int, dropout: float,
               name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    # reset_after=True is PyTorch's GRU formulation (and cuDNN's).
    self.gru = tf.keras.layers.GRU(hidden, return_sequences=True,
                                   reset_after=True, name="gru")
    self.fc = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(), name="fc")
    self.hidden = hidden

  def call(self, features, seeds=None, training=False):
    if gru_inference.applies(features, training):  # the same GRU, faster
      if not self.gru.built:
        self.gru.build(features.shape)
      h, _ = gru_inference.gru_sequence(
          self.gru.cell, features, self.initial_state(tf.shape(features)[0]))
    else:
      h = self.gru(features)
    if training:
      h = per_video_dropout(h, self.rate, seeds)
    return self.fc(h)

  def initial_state(self, batch_size):
    return tf.zeros([batch_size, self.hidden], self.gru.cell.compute_dtype)

  def step(self, x, state):
    """One frame: [B, D] fused features and [B, H] state -> logits, state."""
    h, _ = self.gru.cell(x, [state])
    return self.fc(h), h

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

  def loss(self, logits, targets):
    """Mean over steps of the cross-entropy; ``targets`` [B, C] distributions."""
    return per_step_loss(logits, targets)


class LinearClassifier(tf.keras.Model):
  """"fc": a per-frame linear layer; softmax averaged over frames, NLL loss.

  Args:
    num_classes: C.
    dropout: dropout rate before the linear layer.
  """

  def __init__(self, num_classes: int, dropout: float,
               name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    self.fc = tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(), name="fc")

  def call(self, features, seeds=None, training=False):
    if training:
      features = per_video_dropout(features, self.rate, seeds)
    return self.fc(features)

  def initial_state(self, batch_size):
    """The running sum of probabilities and the frame count."""
    return tf.zeros([batch_size, self.fc.units + 1])

  def step(self, x, state):
    probs = tf.nn.softmax(self.fc(x))
    total = state[:, :-1] + probs
    count = state[:, -1:] + 1.0
    # Logits whose softmax is the running mean of the frames' softmaxes.
    return tf.math.log(total / count + 1e-12), tf.concat([total, count], 1)

  def step_probs(self, logits):
    probs = tf.nn.softmax(logits, axis=-1)
    steps = tf.cast(tf.range(1, tf.shape(logits)[1] + 1), probs.dtype)
    return tf.cumsum(probs, axis=1) / steps[None, :, None]

  def loss(self, logits, targets):
    mean = self.step_probs(logits)[:, -1]
    return -tf.reduce_sum(targets * tf.math.log(mean + 1e-12), axis=-1)


class LogitMeanClassifier(tf.keras.Model):
  """"logit_mean": mean focus logits + mean glance logits (METHOD.md sec. 3).

  Each stream's head is applied to every frame's pooled features and its
  logits are averaged over that stream's frames; the prediction is the sum
  of the two means. The heads are the glance and focus nets' own linear
  heads (those stage 0 fine-tunes), shared with them, so this model owns no
  weights of its own and its ``trainable_variables`` are the two heads'.
  In training, the focus head's features go through dropout; the glance
  head's do not: the official code's glance logits come from the frozen
  glance net in evaluation mode (Something-Something ``GFV.forward``, its
  glancer under ``no_grad``), and its supervised stages train the focus
  head alone (``training/tasks/patch_task.py``).

  Args:
    glance_head: the glance net's linear head (``GlanceNet.head``).
    focus_head: the focus net's linear head (``FocusNet.head``).
    dropout: dropout rate before the focus head in training.
  """

  def __init__(self, glance_head, focus_head, dropout: float,
               name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    self.glance_head = glance_head
    self.focus_head = focus_head

  def glance_logits(self, pooled):
    """[B, C]: the glance head's logits averaged over the frames.

    Args:
      pooled: [B, Tg, D] pooled glance features of every frame.
    """
    return tf.reduce_mean(self.glance_head(pooled), axis=1)

  def focus_logits(self, pooled, seeds=None, training=False):
    """[B, C]: the focus head's logits averaged over the patches.

    Args:
      pooled: [B, Tf, D] pooled focus features of every patch.
      seeds: int [B, 2] per-video seeds, needed when ``training``.
      training: dropout on.
    """
    if training:
      pooled = per_video_dropout(pooled, self.rate, seeds)
    return tf.reduce_mean(self.focus_head(pooled), axis=1)

  def combine(self, glance_logits, focus_logits):
    """The prediction [B, 1, C] from the two [B, C] means."""
    return (glance_logits + focus_logits)[:, None, :]

  def call(self, glance_pooled, focus_pooled, seeds=None, training=False):
    """Logits [B, 1, C] from pooled glance [B, Tg, Dg] and focus [B, Tf, Df]."""
    return self.combine(
        self.glance_logits(glance_pooled),
        self.focus_logits(focus_pooled, seeds, training=training))

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

  def loss(self, logits, targets):
    """Cross-entropy of the summed logits [B, 1, C]; ``targets`` [B, C]."""
    return tf.reduce_mean(soft_cross_entropy(logits, targets[:, None, :]),
                          axis=1)


def build_classifier(kind: str, num_classes: int, hidden: int,
                     dropout: float) -> tf.keras.Model:
  """Builds the V1 model's ``gru`` or ``fc`` classifier (see above).

  ``logit_mean`` is built by the two-stream model itself, from the heads of
  its glance and focus nets (``models.factory.build_model``).
  """
  if kind == "gru":
    return RecurrentClassifier(num_classes, hidden, dropout)
  if kind == "fc":
    return LinearClassifier(num_classes, dropout)
  if kind == "logit_mean":
    raise ValueError("the logit_mean classifier belongs to the two-stream "
                     "model (data.glance_frames and data.focus_frames set; "
                     "models.factory.build_model builds it)")
  raise ValueError(f"unknown classifier {kind!r}; choose gru, fc or "
                   "logit_mean")

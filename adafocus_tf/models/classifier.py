"""Classifiers that fuse glance and focus features over time (SPEC.md sec. 2).

Both expose the same interface:

  ``call(features [B, T, D], seeds, training) -> logits [B, T, C]``
  ``step_probs(logits) -> [B, T, C]``: the prediction after each frame
  ``loss(logits, targets) -> [B]``: per-video training loss
  ``step(x [B, D], state) -> (logits [B, C], state)``: one frame at a time

Dropout draws its mask statelessly from each video's seed, so a step is
reproducible whatever replica runs it and after a resume.
"""
import tensorflow as tf


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
  return -tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=-1)


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
    self.fc = tf.keras.layers.Dense(num_classes, dtype="float32", name="fc")
    self.hidden = hidden

  def call(self, features, seeds=None, training=False):
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
    t = tf.shape(logits)[1]
    tiled = tf.repeat(targets[:, None, :], t, axis=1)
    return tf.reduce_mean(soft_cross_entropy(logits, tiled), axis=1)


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
    self.fc = tf.keras.layers.Dense(num_classes, dtype="float32", name="fc")

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


def build_classifier(kind: str, num_classes: int, hidden: int,
                     dropout: float) -> tf.keras.Model:
  """Builds the ``gru`` or ``fc`` classifier (see the classes above)."""
  if kind == "gru":
    return RecurrentClassifier(num_classes, hidden, dropout)
  if kind == "fc":
    return LinearClassifier(num_classes, dropout)
  raise ValueError(f"unknown classifier {kind!r}; choose gru or fc")

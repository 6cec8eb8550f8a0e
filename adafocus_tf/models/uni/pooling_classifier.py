"""Uni-AdaFocus's classifier (docs/METHOD.md V2-11.2): a prediction after each
glance frame and after each focus frame."""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision


def _running_max(z):
  """[B, T, H] -> the element-wise maximum of steps 0..t at each t."""
  return tf.transpose(tf.scan(tf.maximum, tf.transpose(z, [1, 0, 2])),
                      [1, 0, 2])


class PoolingClassifier(tf.keras.Model):
  """Two MLPs, running maxima and a head per step.

  Glance features go through one MLP and focus features through another
  (dense, batch norm over all frames, ReLU). Glance step g's head reads the
  running max of the glance MLP over frames 0..g; focus step k's head reads
  the running max of the focus MLP over frames 0..k beside the glance
  maximum over every glance frame. G + K step outputs; the prediction is
  the last. Built in full precision (``precision.full_precision``): float32
  under mixed precision, as in the official semi-AMP model, which runs only
  the backbones in half precision (docs/METHOD.md V2-11.4).

  Args:
    num_classes: C.
    hidden: width of the MLPs (4096 in the paper).
    num_glance: G.
    num_focus: K.
    dropout: before every step head, in training.
    name: model name.
  """

  def __init__(self, num_classes: int, hidden: int, num_glance: int,
               num_focus: int, dropout: float, name: str = "classifier"):
    with precision.full_precision():
      super().__init__(name=name)
      self.rate, self.hidden = dropout, hidden
      self.num_glance, self.num_focus = num_glance, num_focus
      bn = precise_batchnorm.TORCH_DEFAULTS
      dense = tf.keras.layers.Dense
      self.glance_mlp = dense(hidden, name="glance_mlp")
      self.glance_bn = precise_batchnorm.PreciseBatchNormalization(
          name="glance_bn", **bn)
      self.focus_mlp = dense(hidden, name="focus_mlp")
      self.focus_bn = precise_batchnorm.PreciseBatchNormalization(
          name="focus_bn", **bn)
      self.glance_heads = [dense(num_classes, name=f"glance_head_{g}")
                           for g in range(num_glance)]
      self.focus_heads = [dense(num_classes, name=f"focus_head_{k}")
                          for k in range(num_focus)]

  def _embed(self, mlp, bn, x, training):
    shape = tf.shape(x)
    z = tf.nn.relu(bn(mlp(tf.reshape(x, [-1, x.shape[-1]])),
                      training=training))
    return tf.reshape(z, [shape[0], shape[1], self.hidden])

  def glance_state(self, glance, training=False):
    """Running maxima [B, G, H] of the glance MLP over glance features
    [B, G, Cg]."""
    return _running_max(self._embed(self.glance_mlp, self.glance_bn,
                                    glance, training))

  def glance_logits(self, running, seeds=None, training=False):
    """Logits [B, G, C] of the glance steps from ``glance_state``."""
    if training:
      running = classifier_lib.per_video_dropout(running, self.rate, seeds)
    return tf.stack([head(running[:, g]) for g, head in
                     enumerate(self.glance_heads)], 1)

  def focus_logits(self, glance_max, focus, seeds=None, training=False,
                   batchnorm=None):
    """Logits [B, K', C] of the first K' focus steps.

    Args:
      glance_max: [B, H] the glance MLP's maximum over every glance frame.
      focus: [B, K', Cf] focus features of the first K' selected frames.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: batch norm on batch statistics, dropout on.
      batchnorm: the batch norm's mode when not ``training``'s.
    """
    batchnorm = training if batchnorm is None else batchnorm
    running = _running_max(self._embed(self.focus_mlp, self.focus_bn, focus,
                                       batchnorm))
    glance_max = tf.cast(glance_max, running.dtype)
    x = tf.concat([running, tf.repeat(glance_max[:, None],
                                      tf.shape(running)[1], axis=1)], -1)
    if training:
      x = classifier_lib.per_video_dropout(x, self.rate, seeds + tf.constant(
          [1, 0], seeds.dtype))
    return tf.stack([head(x[:, k]) for k, head in
                     enumerate(self.focus_heads[:focus.shape[1]])], 1)

  def focus_step(self, focus, running, glance_max, k: int):
    """Focus step ``k`` alone (inference): features [n, Cf] and the running
    max [n, H] before it (zeros before step 0) -> (logits, running max)."""
    z = self._embed(self.focus_mlp, self.focus_bn, focus[:, None], False)
    running = tf.maximum(running, tf.cast(z[:, 0], running.dtype))
    x = tf.concat([running, tf.cast(glance_max, running.dtype)], -1)
    return self.focus_heads[k](x), running

  def call(self, glance, focus, seeds=None, training=False, batchnorm=None):
    """Every step's logits [B, G + K, C]; the batch norms in ``batchnorm``'s
    mode when given (dropout follows ``training``)."""
    batchnorm = training if batchnorm is None else batchnorm
    running = self.glance_state(glance, batchnorm)
    return tf.concat([
        self.glance_logits(running, seeds, training),
        self.focus_logits(running[:, -1], focus, seeds, training,
                          batchnorm)], 1)

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

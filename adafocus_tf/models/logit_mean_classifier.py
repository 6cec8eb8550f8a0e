"""The two-stream model's "logit_mean" classifier (docs/METHOD.md section 3).

``LogitMeanClassifier`` sums the glance and focus heads' mean logits: one
prediction per video, returned with a time axis of 1 so that ``step_probs``
and ``loss`` read as the V1 classifiers' do (``classifier.py``).
"""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib


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
      pooled = classifier_lib.per_video_dropout(pooled, self.rate, seeds)
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
    return tf.reduce_mean(
        classifier_lib.soft_cross_entropy(logits, targets[:, None, :]), axis=1)

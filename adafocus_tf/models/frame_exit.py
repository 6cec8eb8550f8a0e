"""AdaFocusV2's classifier: a prediction after every step (docs/METHOD.md V2-3).

Each step's fused features (glance pooled, then focus pooled) go through
one shared MLP (dense + batch norm + ReLU, batch norm over all B * T
frames); an element-wise running maximum carries what the steps so far
saw, m_1 = z_1, m_t = max(m_(t-1), z_t); step t has its own dropout +
linear head on m_t. Training puts cross-entropy on every step's logits;
the video's prediction is the last step's, or an earlier one's when a
video exits early.

Interface shared with the V1 classifiers (``classifier.py``): ``call``,
``step_probs``, ``loss``, ``initial_state``; ``step`` also takes the step
index (each step has its own head).
"""
import tensorflow as tf

from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import precise_batchnorm
from adafocus_tf.models import precision


class FrameExitClassifier(tf.keras.Model):
  """"frame_exit": shared MLP, running max over steps, a head per step.

  Args:
    num_classes: C.
    hidden: width of the MLP (4096 in the paper).
    num_steps: T, the number of step heads.
    dropout: dropout rate before each step head in training.
    name: model name.
  """

  def __init__(self, num_classes: int, hidden: int, num_steps: int,
               dropout: float, name: str = "classifier"):
    super().__init__(name=name)
    self.rate = dropout
    self.hidden = hidden
    self.mlp = tf.keras.layers.Dense(hidden, name="mlp")
    self.mlp_bn = precise_batchnorm.PreciseBatchNormalization(
        name="mlp_bn", **precise_batchnorm.TORCH_DEFAULTS)
    self.heads = [tf.keras.layers.Dense(num_classes, dtype=precision.output_dtype(),
                                        name=f"head_{t}")
                  for t in range(num_steps)]

  def embed(self, features, training=False):
    """z = ReLU(BN(dense(x))) of features [N, D] -> [N, hidden]."""
    return tf.nn.relu(self.mlp_bn(self.mlp(features), training=training))

  def call(self, features, seeds=None, training=False, batchnorm=None):
    """Logits [B, T, C] of fused features [B, T, D].

    Args:
      features: [B, T, D], step-major in the order the steps are taken.
      seeds: int [B, 2] per-video seeds (dropout), needed when ``training``.
      training: batch norm on batch statistics, dropout on.
      batchnorm: batch norm on batch statistics; default ``training``.
    """
    shape = tf.shape(features)
    z = self.embed(tf.reshape(features, [-1, features.shape[-1]]),
                   training=training if batchnorm is None else batchnorm)
    z = tf.reshape(z, [shape[0], shape[1], self.hidden])
    running = tf.scan(tf.maximum, tf.transpose(z, [1, 0, 2]))
    running = tf.transpose(running, [1, 0, 2])
    if training:
      running = classifier_lib.per_video_dropout(running, self.rate, seeds)
    return tf.stack([head(running[:, t]) for t, head in
                     enumerate(self.heads[:features.shape[1]])], 1)

  def initial_state(self, batch_size):
    """The running maximum before step 0: zeros (z >= 0 after the ReLU)."""
    return tf.zeros([batch_size, self.hidden], self.mlp.compute_dtype)

  def step(self, x, state, t: int):
    """Step ``t``: fused features [n, D], running max [n, H] -> logits, state.
    """
    running = tf.maximum(state, self.embed(x))
    return self.heads[t](running), running

  def step_probs(self, logits):
    return tf.nn.softmax(logits, axis=-1)

  def loss(self, logits, targets):
    """Mean over steps of the cross-entropy; ``targets`` [B, C] distributions.
    """
    return classifier_lib.per_step_loss(logits, targets)

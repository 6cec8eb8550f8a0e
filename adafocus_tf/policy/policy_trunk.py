"""The encoder and GRU under the policy's actor and critic (METHOD.md 2, 3).

  observation (a glance map [h, w, C]: of frame t, or of all glance frames
               stacked on channels when there is one patch per video)
    -> 1x1 conv to ``conv_channels`` (no bias) [-> batch norm] -> ReLU
    -> flatten -> dense ``hidden`` [-> batch norm] -> ReLU
    -> GRU (``hidden`` units; its state is the tf-agents network state,
       carried from frame to frame and reset to zeros at ``StepType.FIRST``)

The batch norms are the Something-Something encoder's (section 3); the V1
encoder (section 2) has none.

The reference implementation has one encoder and GRU under both heads, so
the value loss also shapes the shared features; ``PolicyTrunk`` is that
shared part, held by both networks (tf-agents keeps separate actor and value
networks with separate states, so with a shared trunk each network unrolls
the same GRU over the same frames; the policy is cheap next to the backbones).
``trunk_and_head.TrunkAndHead`` is what the two networks
(``actor_network.py``, ``value_network.py``) share: the trunk under one
dense head.

tf-agents' stock recurrent networks are LSTM-based, and the
``rnn_construction_fn`` route to a Keras GRU loses the reset at episode
starts, so the GRU here is a ``GRUCell`` under tf-agents' ``DynamicUnroll``
with a reset mask, as ``LSTMEncodingNetwork`` does for its LSTM.
"""
from __future__ import annotations

import tensorflow as tf
from tf_agents.keras_layers import dynamic_unroll_layer
from tf_agents.networks import utils as network_utils
from tf_agents.trajectories import time_step as ts

from adafocus_tf.models import gru_inference
from adafocus_tf.models import precise_batchnorm


class PolicyTrunk(tf.keras.layers.Layer):
  """Encoder and GRU shared by the actor and the critic.

  Args:
    conv_channels: output channels of the 1x1 convolution.
    hidden: units of the dense layer and of the GRU.
    batchnorm: batch norm after the convolution and the dense layer.
    name: layer name.
  """

  def __init__(self, conv_channels: int, hidden: int,
               batchnorm: bool = False, name: str = "policy_trunk"):
    super().__init__(name=name, dtype=tf.float32)
    self.hidden = hidden
    f32 = dict(dtype=tf.float32)

    def norm(name):
      return ([precise_batchnorm.PreciseBatchNormalization(
          name=name, **precise_batchnorm.TORCH_DEFAULTS, **f32)]
              if batchnorm else [])
    self.encoder = tf.keras.Sequential(
        [tf.keras.layers.Conv2D(conv_channels, 1, use_bias=False,
                                name="conv1x1", **f32)]
        + norm("conv_bn") + [
            tf.keras.layers.ReLU(**f32),
            tf.keras.layers.Flatten(**f32),
            tf.keras.layers.Dense(hidden, name="fc", **f32)]
        + norm("fc_bn") + [tf.keras.layers.ReLU(**f32)], name="encoder")
    # reset_after=True is PyTorch's GRU formulation.
    self.rnn = dynamic_unroll_layer.DynamicUnroll(
        tf.keras.layers.GRUCell(hidden, reset_after=True, dtype=tf.float32,
                                name="gru"), dtype=tf.float32)

  @property
  def state_spec(self) -> tf.TensorSpec:
    return tf.TensorSpec([self.hidden], tf.float32, name="gru_state")

  def call(self, observation, step_type, network_state, training=False):
    """Encodes a sequence of observations and runs the GRU over it.

    Args:
      observation: float [B, T, h, w, C] glance feature maps.
      step_type: int [B, T] tf-agents step types; the GRU state is reset to
        zeros before every ``StepType.FIRST`` step.
      network_state: [B, hidden] GRU state before the first step.
      training: Keras training flag (batch norm, when there is one, uses
        the batch's statistics).

    Returns:
      (outputs [B, T, hidden], final state [B, hidden]).
    """
    squash = network_utils.BatchSquash(2)
    x = self.encoder(squash.flatten(tf.cast(observation, tf.float32)),
                     training=training)
    x = squash.unflatten(x)
    reset = tf.equal(step_type, ts.StepType.FIRST)
    if not gru_inference.applies(x, training):
      return self.rnn(x, initial_state=network_state, reset_mask=reset,
                      training=training)
    # Whole videos at inference: the same GRU, faster.
    if not self.rnn.cell.built:
      self.rnn.cell.build(x.shape[-1:])
    return gru_inference.gru_sequence(self.rnn.cell, x, network_state, reset)

"""Float32 training-mode forwards against float64, layer by layer (issue 24).

  python benchmarks/batchnorm_precision.py [--preset=actnet] [--videos=2]
      [--parts=mobilenet_v2,mobilenet_v2_torch,resnet50,policy,classifier]

For the preset's V2 shapes (``--videos`` videos of T frames: the glance
backbones on T frames of the glance size, the focus ResNet-50 on T patches,
the position policy on T glance maps, the classifier on T fused feature
vectors), random weights (seed 0) with random batch-norm scales and offsets
(the training-mode forward reads those and the batch's moments, not the
moving statistics), runs the training-mode forward (batch statistics) in
float32 three ways:

  * ``keras_fused``: ``tf.keras`` ``BatchNormalization`` as the models built
    it before issue 24 (the fused kernel for 4-D inputs);
  * ``keras_unfused``: the same with ``fused=False`` (``tf.nn.moments``);
  * ``precise``: ``PreciseBatchNormalization``, what the models build now;

and the same network, weights and input in float64 (built with Keras'
floatx at float64, so its batch norms are the precise layer in float64;
a layer that pins its own dtype keeps it). Prints one JSON document: per
part and variant, the relative error ``max|y32 - y64| / max|y64|`` after
every batch norm and of the output (for the policy and the classifier,
after each step of their forward); for the backbones also each batch
norm's and its convolution's own error (``own_bn``, ``own_conv``: the
float32 layer, precise, on the float64 run's input rounded to float32),
which tells the error a layer adds from the error it inherits; and a
Markdown table of a selection of rows.
"""
import json
import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import adafocus_tf  # pylint: disable=g-bad-import-order,unused-import,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.models import backbones
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import frame_exit
from adafocus_tf.models import precise_batchnorm
from adafocus_tf.policy import recurrent_position_policy

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "actnet", "V2 preset whose shapes are used.")
flags.DEFINE_integer("videos", 2, "Videos in the batch (T frames each).")
flags.DEFINE_list("parts", ["mobilenet_v2", "mobilenet_v2_torch", "resnet50",
                            "policy", "classifier"], "Parts measured.")
flags.DEFINE_integer("table_rows", 10, "Rows of each part in the table.")

_BN = tf.keras.layers.BatchNormalization
# Training-mode batch norm of each variant, from a batch norm's config.
VARIANTS = {
    "keras_fused": _BN.from_config,
    "keras_unfused": lambda config: _BN(fused=False, **config),
    "precise": precise_batchnorm.PreciseBatchNormalization.from_config,
}


def relative_error(got, want):
  """max|got - want| / max|want|.

  Args:
    got: the float32 run's values.
    want: the float64 run's.
  """
  want = np.asarray(want, np.float64)
  return float(np.abs(np.asarray(got, np.float64) - want).max()
               / np.abs(want).max())


def randomize_affine(layers, seed):
  """Random scales and offsets for the batch norms among ``layers``.

  Args:
    layers: layers of a model; the others are left alone.
    seed: numpy seed.
  """
  rng = np.random.default_rng(seed)
  for layer in layers:
    if isinstance(layer, _BN):
      n = layer.gamma.shape[0]
      layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
      layer.beta.assign(rng.normal(0.0, 0.25, n).astype(np.float32))


def in_float64(build):
  """``build()`` with Keras' default float type set to float64.

  Args:
    build: builds a model or layer, no arguments.
  """
  tf.keras.backend.set_floatx("float64")
  try:
    return build()
  finally:
    tf.keras.backend.set_floatx("float32")


def normalized(bn, variant, x):
  """``x`` through a training-mode batch norm of ``variant``.

  Args:
    bn: a model's ``PreciseBatchNormalization``, whose config and weights
      the variant's layer takes (``precise``: ``bn`` itself).
    variant: a key of ``VARIANTS``.
    x: its input.
  """
  if variant != "precise":
    weights = bn.get_weights()
    bn = VARIANTS[variant](bn.get_config())
    bn.build(x.shape)
    bn.set_weights(weights)
  return bn(x, training=True)


def backbone_part(name, size, frames):
  """A backbone's taps: after every batch norm, and the output.

  Args:
    name: ``backbones.build_backbone``'s name.
    size: input side.
    frames: images in the batch.

  Returns:
    (variant -> its float32 taps, the float64 taps, {"bn": .., "conv": ..}:
    each batch norm's and its convolution's own error, the precise float32
    layer run on the float64 run's input rounded to float32).
  """
  model = backbones.build_backbone(name, size)
  randomize_affine(model.layers, seed=0)
  reference = in_float64(lambda: backbones.build_backbone(name, size))
  reference.set_weights(model.get_weights())
  norms = [l.name for l in model.layers if isinstance(l, _BN)]
  names = norms + [model.layers[-1].name]
  images = tf.random.stateless_normal([frames, size, size, 3], [0, 1])

  def outputs(net, x):
    taps = tf.keras.Model(net.input, [net.get_layer(n).output for n in names])
    return dict(zip(names, taps(x, training=True)))

  def run(variant):
    net = model if variant == "precise" else (
        precise_batchnorm.replace_batch_norms(model, VARIANTS[variant]))
    return outputs(net, images)
  want = outputs(reference, tf.cast(images, tf.float64))

  convs = [reference.get_layer(n).inbound_nodes[0].inbound_layers.name
           for n in norms]
  inputs = tf.keras.Model(reference.input, [
      reference.get_layer(c).input for c in convs])(
          tf.cast(images, tf.float64), training=True)
  own = {"bn": {}, "conv": {}}
  for bn, conv, x in zip(norms, convs, inputs):
    conv_out = reference.get_layer(conv)(x)
    own["conv"][bn] = relative_error(
        model.get_layer(conv)(tf.cast(x, tf.float32)), conv_out)
    own["bn"][bn] = relative_error(model.get_layer(bn)(
        tf.cast(conv_out, tf.float32), training=True), want[bn])
  return run, want, own


def policy_part(cfg, frames, videos, map_shape):
  """The V2 position policy's forward, step by step, per variant.

  Its ``conv_bn`` is built ``fused=False`` (oneDNN has no fused kernel
  for batch norm then tanh at inference), so ``keras_unfused`` is that
  layer as it was before issue 24; its dense layer's is unfused anyway.

  Args:
    cfg: the V2 config (the policy's sizes).
    frames: glance maps in the batch.
    videos: videos they belong to.
    map_shape: (h, w, C) of a glance map.

  Returns:
    (variant -> its float32 taps, the float64 taps).
  """
  m = cfg.model

  def build():
    return recurrent_position_policy.RecurrentPositionPolicy(
        m.policy_conv_channels, m.policy_hidden)
  policy, reference = build(), in_float64(build)
  # Glance maps as MobileNetV2's last ReLU6 leaves them: non-negative, many
  # zeros, at most 6.
  maps = tf.nn.relu6(2.0 * tf.random.stateless_normal(
      [videos, frames // videos, *map_shape], [0, 2]))
  policy(maps, training=True)
  reference(tf.cast(maps, tf.float64), training=True)
  randomize_affine(policy.encoder.submodules, seed=1)
  reference.set_weights(policy.get_weights())

  def walk(net, x, variant):
    # recurrent_position_policy's RecurrentPositionPolicy.call and
    # position_policy's _Encoder.call, with every intermediate kept.
    enc, out = net.encoder, {}
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    out["conv"] = x = enc.conv(x)
    out["conv_bn"] = x = normalized(enc.conv_bn, variant, x)
    out["conv_tanh"] = x = tf.tanh(x)
    x = enc.flatten(x)
    for dense, bn in zip(enc.dense, enc.dense_bn):
      out[dense.name] = x = dense(x)
      out[bn.name] = x = normalized(bn, variant, x)
      out[f"{dense.name}_tanh"] = x = tf.tanh(x)
    x = tf.reshape(x, [shape[0], shape[1], net.hidden])
    out["gru"] = x = net.gru(x)
    out["positions"] = tf.sigmoid(net.out(x))
    return out

  want = policy(maps, training=True)
  got = walk(policy, maps, "precise")["positions"]
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # walk == call
  return (lambda variant: walk(policy, maps, variant),
          walk(reference, tf.cast(maps, tf.float64), "precise"))


def classifier_part(cfg, frames, videos, feature_dim):
  """The V2 classifier's forward and loss, step by step, per variant.

  Args:
    cfg: the V2 config (classes, MLP width, steps).
    frames: fused feature vectors in the batch.
    videos: videos they belong to.
    feature_dim: glance plus focus feature width.

  Returns:
    (variant -> its float32 taps, the float64 taps).
  """
  m, d = cfg.model, cfg.data
  steps = frames // videos

  def build():
    return frame_exit.FrameExitClassifier(d.num_classes, m.classifier_hidden,
                                          steps, m.dropout)
  clf, reference = build(), in_float64(build)
  # Fused features as pooled ReLU outputs leave them: non-negative.
  features = tf.nn.relu(tf.random.stateless_normal(
      [videos, steps, feature_dim], [0, 3]))
  targets = tf.one_hot(tf.range(videos) % d.num_classes, d.num_classes)
  clf(features, batchnorm=True)
  reference(tf.cast(features, tf.float64), batchnorm=True)
  randomize_affine([clf.mlp_bn], seed=2)
  reference.set_weights(clf.get_weights())

  def walk(net, x, variant):
    # FrameExitClassifier.call without dropout, then the loss it trains on.
    out = {}
    x = tf.reshape(x, [-1, x.shape[-1]])
    out["mlp"] = x = net.mlp(x)
    out["mlp_bn"] = x = normalized(net.mlp_bn, variant, x)
    z = tf.reshape(tf.nn.relu(x), [videos, steps, net.hidden])
    running = tf.transpose(tf.scan(tf.maximum, tf.transpose(z, [1, 0, 2])),
                           [1, 0, 2])
    out["running_max"] = running
    out["logits"] = logits = tf.stack(
        [head(running[:, t]) for t, head in enumerate(net.heads)], 1)
    out["loss"] = classifier_lib.per_step_loss(logits,
                                               tf.cast(targets, logits.dtype))
    return out

  want = clf(features, batchnorm=True)
  np.testing.assert_allclose(walk(clf, features, "precise")["logits"], want,
                             rtol=0, atol=1e-6)  # walk == call
  return (lambda variant: walk(clf, features, variant),
          walk(reference, tf.cast(features, tf.float64), "precise"))


def measure(run, reference, own=None):
  """{variant: {tap: relative error}}, and ``own`` errors if given.

  Args:
    run: variant -> its float32 taps.
    reference: the float64 taps.
    own: {"bn": .., "conv": ..} of a backbone, or None.
  """
  errors = {variant: {name: relative_error(value, reference[name])
                      for name, value in run(variant).items()}
            for variant in VARIANTS}
  if own:
    errors.update({f"own_{kind}": values for kind, values in own.items()})
  return errors


def table(rows, selected):
  """Markdown rows (one per tap) of every part's errors, all variants.

  Args:
    rows: part -> ``measure``'s errors.
    selected: taps shown per part, evenly spaced, first and last included.
  """
  columns = list(VARIANTS) + ["own_bn", "own_conv"]
  lines = []
  for part, errors in rows.items():
    taps = list(errors["precise"])
    picks = sorted(set(np.linspace(0, len(taps) - 1, selected).round()
                       .astype(int)))
    for i in picks:
      tap = taps[i]
      lines.append(f"| {part} | {tap} | " + " | ".join(
          f"{errors[c][tap]:.1e}" if tap in errors.get(c, {}) else ""
          for c in columns) + " |")
  header = ["| part | after | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns)]
  return "\n".join(header + lines)


def main(_):
  cfg = config_lib.get_preset(FLAGS.preset, "v2")
  frames = FLAGS.videos * cfg.data.num_frames
  parts = {}
  m = cfg.model
  glance = backbones.build_backbone(m.glance_backbone, m.glance_size)
  focus_dim = backbones.build_backbone(m.focus_backbone, None).output_shape[-1]
  for part in FLAGS.parts:
    tf.keras.utils.set_random_seed(0)  # the same weights on every run
    if part == "policy":
      parts[part] = measure(*policy_part(cfg, frames, FLAGS.videos,
                                         glance.output_shape[1:]))
    elif part == "classifier":
      parts[part] = measure(*classifier_part(
          cfg, frames, FLAGS.videos, glance.output_shape[-1] + focus_dim))
    else:
      size = m.patch_size if part == m.focus_backbone else m.glance_size
      parts[part] = measure(*backbone_part(part, size, frames))
    print(json.dumps({part: {v: max(e.values()) for v, e in
                             parts[part].items()}}), flush=True)
  print(json.dumps({"preset": FLAGS.preset, "videos": FLAGS.videos,
                    "frames": frames, "errors": parts}, indent=1))
  print(table(parts, FLAGS.table_rows))


if __name__ == "__main__":
  app.run(main)

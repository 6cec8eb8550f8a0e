"""Supervised stages 0, 1 and 3 under any tf.distribute strategy.

  stage 0: each backbone alone on whole frames, per-frame logits averaged
           (with two frame streams, each on its own stream's frames).
  stage 1: random patches; glance frozen; focus net and classifier trained.
  stage 3: patches from a policy (or the centre); classifier trained, and the
           focus net too with ``stage3.train_focus``.

Both models of ``models.factory`` train here: the V1 ``AdaFocus`` (its
classifier is the GRU or linear layer) and the two-stream model (its
classifier sums the glance and focus heads' mean logits; stages 1 and 3
train the focus head, the glance head staying with the frozen glance net).

One loop serves every strategy: the global batch is split by the input
pipeline's input context, losses are summed over the replica's videos and
divided by the global batch, and the optimizer all-reduces the gradients.
Checkpoints (model, optimizer, step) are written every
``checkpoint_every`` steps and at each epoch's end; a restarted stage
continues from the latest one, at the same step of the same epoch, with
the same data (the pipeline's randomness is keyed by video and epoch).
"""
from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.config import ExperimentConfig, StageConfig
from adafocus_tf.data import pipeline
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.inference import loading
from adafocus_tf.models import classifier as classifier_lib
from adafocus_tf.models import factory
from adafocus_tf.policy import greedy
from adafocus_tf.policy import patch_choice
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.training import loop
from adafocus_tf.training import optim
from adafocus_tf.training import step_loss
from adafocus_tf.training import strategy as strategy_lib
from adafocus_tf.training import summaries

SUPERVISED_STAGES = (0, 1, 3)


def stage_config(cfg: ExperimentConfig, stage: int) -> StageConfig:
  if stage not in SUPERVISED_STAGES:
    raise ValueError(f"stage {stage} is not supervised (0, 1 or 3)")
  return getattr(cfg, f"stage{stage}")


def trainable_groups(model: factory.Model, stage: int, scfg: StageConfig):
  """Variable groups and base rates of a stage (what is frozen is absent).

  Args:
    model: a model of ``factory.build_model``.
    stage: 0, 1 or 3.
    scfg: the stage's config (rates, ``backbones``, ``train_focus``).

  Returns:
    dict group name -> (variables, base learning rate): stage 0 the named
    nets (backbone and head); stages 1 and 3 ``classifier`` (the two-stream
    model's: the focus head) and, in stage 1 or with ``train_focus``,
    ``focus`` (the focus backbone), the glance net frozen (as in the
    official code for both models: the two-stream model's glance logits
    come from its glancer under ``no_grad``, head included).
  """
  if stage == 0:
    nets = {"glance": model.glance, "focus": model.focus}
    names = [n.strip() for n in scfg.backbones.split(",") if n.strip()]
    unknown = set(names) - set(nets)
    if unknown or not names:
      raise ValueError(f"stage0.backbones={scfg.backbones!r}: name glance "
                       "and/or focus")
    return {n: (nets[n].trainable_variables, scfg.backbone_lr)
            for n in names}
  focus_vars = (model.focus.backbone.trainable_variables
                if stage == 1 or scfg.train_focus else [])
  clf = model.classifier
  if isinstance(clf, classifier_lib.LogitMeanClassifier):
    clf = clf.focus_head
  groups = {"classifier": (clf.trainable_variables, scfg.classifier_lr)}
  if focus_vars:
    groups["focus"] = (focus_vars, scfg.backbone_lr)
  return groups


def targets_of(batch, multi_label: bool):
  """Training target distributions [B, C]: the label, or all labels evenly."""
  if multi_label:
    mh = batch["multi_hot"]
    return mh / tf.maximum(tf.reduce_sum(mh, -1, keepdims=True), 1.0)
  return tf.one_hot(batch["label"], tf.shape(batch["multi_hot"])[-1])


def steps_per_epoch(cfg: ExperimentConfig, scfg, split_dir: str) -> int:
  """Training steps in an epoch: full global batches, or the configured cap."""
  meta = shards.read_meta(split_dir)
  steps = meta["num_videos"] // scfg.batch_size
  if scfg.steps_per_epoch:
    steps = min(steps, scfg.steps_per_epoch) if steps else scfg.steps_per_epoch
  if steps < 1:
    raise ValueError(f"{split_dir} has {meta['num_videos']} videos, fewer "
                     f"than one batch of {scfg.batch_size}")
  return steps


def total_steps(cfg: ExperimentConfig, stage: int) -> int:
  """The steps stage ``stage`` trains in all: its epochs' steps.

  Raises:
    FileNotFoundError, ValueError: the training split's meta.json is
      missing or holds less than one batch.
  """
  scfg = getattr(cfg, f"stage{stage}")
  return scfg.epochs * steps_per_epoch(
      cfg, scfg, pipeline.split_dir(cfg.data, cfg.data.train_split))


def distributed_epoch(strategy, cfg: ExperimentConfig, split_dir: str,
                      global_batch: int, epoch: int, skip_steps: int,
                      with_boxes: bool = False):
  """The training data of one epoch, from ``skip_steps`` on, distributed."""
  def dataset_fn(ctx: tf.distribute.InputContext):
    per_replica = ctx.get_per_replica_batch_size(global_batch)
    skip = skip_steps * global_batch // ctx.num_input_pipelines
    return pipeline.make_dataset(cfg.data, split_dir, training=True,
                                 batch_size=per_replica, seed=cfg.seed,
                                 epoch=epoch, input_context=ctx,
                                 with_boxes=with_boxes, skip_videos=skip,
                                 repeat=True)
  return strategy.distribute_datasets_from_function(dataset_fn)


def stage0_frames(batch, backbone: str):
  """The whole frames a backbone fine-tunes on in stage 0.

  Args:
    batch: pipeline batch.
    backbone: ``glance`` or ``focus``.

  Returns:
    ``frames``, or with two streams that backbone's own stream (a temporal
    shift is built for its stream's frame count).
  """
  return batch["frames"] if "frames" in batch else batch[f"{backbone}_frames"]


def video_logits(model, backbone: str, frames, training=False, seeds=None,
                 glance_dropout: float = 0.0):
  """Stage-0 logits of one backbone on whole frames, averaged over frames.

  Args:
    model: a model of ``factory.build_model``.
    backbone: ``glance`` or ``focus``.
    frames: [B, T, S, S, 3].
    training: batch-norm mode, and dropout on.
    seeds: int [B, 2] per-video seeds (the dropout masks), needed when
      ``training`` with ``glance_dropout``.
    glance_dropout: dropout rate before the glance net's head in training.

  Returns:
    [B, C] logits.
  """
  shape = tf.shape(frames)
  flat = tf.reshape(frames, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
  if backbone == "glance":
    _, pooled = model.glance(flat, training=training)
    if training and glance_dropout:
      per_video = tf.reshape(pooled, [shape[0], shape[1], -1])
      pooled = tf.reshape(classifier_lib.per_video_dropout(
          per_video, glance_dropout, seeds), tf.shape(pooled))
    logits = model.glance.logits(pooled)
  else:
    logits = model.focus.logits(model.focus(flat, training=training))
  return tf.reduce_mean(tf.reshape(logits, [shape[0], shape[1], -1]), axis=1)


def seed_initial_weights(cfg: ExperimentConfig, stage: int) -> None:
  """Seeds the weights a stage's trainer creates by the run seed and stage.

  Keras initialisers take their seeds from the process's global Python and
  TensorFlow generators, so without this a stage's starting weights (those
  no checkpoint or ``init_from`` sets, e.g. the policy's) would depend on
  what ran earlier in the process: a stage resumed in a new process would
  not start where an uninterrupted run's did. Reseeds the global Python,
  NumPy and TensorFlow generators.

  Args:
    cfg: the run's config (its ``seed``).
    stage: the stage about to build its networks.
  """
  tf.keras.utils.set_random_seed(
      (len(run_dir.STAGES) * cfg.seed + stage) % 2**32)


class SupervisedTrainer:
  """Trains one supervised stage of a run.

  Args:
    cfg: the run's config.
    stage: 0, 1 or 3.
    strategy: a ``tf.distribute`` strategy.
    run: the run directory.
    patch: patch choice of the stage (``random`` for stage 1; ``policy``,
      ``centre`` or ``oracle`` for stage 3).
    policy_checkpoint: the stage-2 checkpoint whose greedy policy chooses
      the patches, for ``patch == "policy"``. The policy reads this
      model's glance maps: stage 3 starts from stage 2's weights and keeps
      the glance frozen, so they are the maps the policy was trained on.
    checkpoint_every: steps between checkpoints (and at each epoch's end).
    log_every: steps between TensorBoard scalar writes.
    progress: show per-epoch progress bars.
  """

  def __init__(self, cfg: ExperimentConfig, stage: int,
               strategy: tf.distribute.Strategy, run: str,
               patch: str = "random", policy_checkpoint: Optional[str] = None,
               checkpoint_every: int = 50, log_every: int = 10,
               progress: bool = True):
    self.cfg, self.stage, self.strategy, self.run = cfg, stage, strategy, run
    self.scfg = stage_config(cfg, stage)
    self.patch = patch
    self.checkpoint_every, self.log_every = checkpoint_every, log_every
    self.chief = strategy_lib.is_chief(strategy)
    self.progress = progress and self.chief
    self.train_dir = pipeline.split_dir(cfg.data, cfg.data.train_split)
    seed_initial_weights(cfg, stage)
    with strategy.scope():
      self.model = factory.build_model(cfg)
      self.model.build_all()
      policy = greedy.load(cfg, self.model.glance.map_shape,
                           policy_checkpoint)
      self.recognizer = loading.build(cfg, self.model, policy)
      self.optimizer = optim.GroupSGD(
          self.groups(), self.scfg.momentum, self.scfg.weight_decay,
          loss_scale=cfg.mixed_precision == "mixed_float16",
          clip_norm=self.scfg.grad_clip_norm)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name="step")
    self.ckpt = checkpoints.Checkpointer(
        strategy, run_dir.checkpoint_dir(run, stage), model=self.model,
        optimizer=self.optimizer.optimizer, step=self.step)
    self.writer = (tf.summary.create_file_writer(run_dir.log_dir(run, stage))
                   if self.chief else tf.summary.create_noop_writer())
    # Each loss term's weight in the loss (``step_loss.StepLoss.weights``),
    # set when the step is traced.
    self.term_weights = {}

  def groups(self):
    """The stage's variable groups and base rates (``trainable_groups``)."""
    return trainable_groups(self.model, self.stage, self.scfg)

  def initialize(self, init_from: Optional[str]) -> str:
    """Resumes the stage, or starts it from ``init_from``'s model weights.

    Returns:
      What happened, for the log.
    """
    if self.ckpt.restore_latest():
      return f"resumed stage {self.stage} at step {int(self.step.numpy())}"
    if init_from:
      checkpoints.restore_model(self.model, init_from)
      return f"stage {self.stage} initialised from {init_from}"
    return f"stage {self.stage} starts from random initialisation"

  # -- one step ------------------------------------------------------------
  def _replica_step(self, batch, global_batch, with_norms=False):
    """One replica's share of a step: the loss, its gradient, the update.

    Args:
      batch: this replica's batch.
      global_batch: videos per step over every replica (the loss is a sum
        over them divided by it).
      with_norms: also return each variable group's gradient norm (before
        weight decay and clipping; this replica's share).

    Returns:
      (loss, correct videos, {term: its sum over this replica's videos /
      global_batch}, {group: gradient norm} or {}).
    """
    targets = targets_of(batch, self.cfg.data.multi_label)
    with tf.GradientTape() as tape:
      out = self.loss(batch, targets)
      # Python values, known once the step is traced.
      self.term_weights = out.weights
      loss = tf.reduce_sum(out.total) / global_batch
      scaled = self.optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, self.optimizer.variables_to_train)
    norms = self.optimizer.group_norms(grads) if with_norms else {}
    self.optimizer.apply(grads)
    correct = tf.reduce_sum(tf.cast(
        tf.argmax(out.probs, -1, output_type=tf.int32) == batch["label"],
        tf.float32))
    terms = {k: tf.reduce_sum(tf.cast(v, tf.float64)) / global_batch
             for k, v in out.terms.items()}
    return loss, correct, terms, norms

  def loss(self, batch, targets) -> step_loss.StepLoss:
    """The batch's ``StepLoss``: per-video loss, prediction, terms."""
    if self.stage == 0:
      return self._stage0_loss(batch, targets)
    train_focus = (self.cfg.model.train_batchnorm
                   and "focus" in self.optimizer.group_lr)
    logits, _ = self.recognizer.forward(batch, self.patch, training=True,
                                        train_focus=train_focus)
    return step_loss.of_terms(
        {"steps": self.model.classifier.loss(logits, targets)},
        self.model.classifier.step_probs(logits)[:, -1])

  def _stage0_loss(self, batch, targets) -> step_loss.StepLoss:
    """Backbones on whole frames; per-frame logits averaged per video, one
    cross-entropy term per backbone trained.

    The V1 model's glance head sees its features through dropout
    (``model.head_dropout``): the official stage 0 trains the glance net
    with torchvision's MobileNetV2 head, ``Dropout(0.2)`` then the linear
    layer (``Glancer.predict``; its ResNet-50 focus head has none). The
    other families have no official stage 0 of their own.
    """
    glance_dropout = (self.cfg.model.head_dropout
                      if self.cfg.model.variant == config_lib.ONE_STREAM
                      else 0.0)
    terms, logits = {}, None
    for name in self.optimizer.group_lr:
      logits = video_logits(self.model, name, stage0_frames(batch, name),
                            training=True, seeds=batch["seed"],
                            glance_dropout=glance_dropout)
      terms[name] = classifier_lib.soft_cross_entropy(logits, targets)
    return step_loss.of_terms(terms, tf.nn.softmax(logits))

  def make_train_fn(self, global_batch, with_terms=False):
    """A compiled step.

    Args:
      global_batch: videos per step.
      with_terms: also return every loss term's batch mean and each
        group's gradient norm (``one_step``); one replica only.

    Returns:
      distributed batch -> (mean loss, correct videos), and with
      ``with_terms`` the terms and norms of ``_replica_step``.
    """
    @tf.function
    def train_fn(dist_batch):
      loss, correct, terms, norms = self.strategy.run(
          self._replica_step, args=(dist_batch, global_batch, with_terms))
      sum_ = tf.distribute.ReduceOp.SUM
      out = (self.strategy.reduce(sum_, loss, axis=None),
             self.strategy.reduce(sum_, correct, axis=None))
      if with_terms:
        out += (terms, norms)
      return out
    return train_fn

  # -- the loop ------------------------------------------------------------
  def train(self, max_steps: int = 0, profile_steps: str = "") -> dict:
    """Trains to the end of the stage (or ``max_steps`` steps in total).

    Args:
      max_steps: stop at this global step (0: train all epochs).
      profile_steps: ``"A,B"``: write a TensorBoard profile of steps A..B.

    Returns:
      dict with the final step, epochs, last epoch's loss and accuracy.
    """
    scfg = self.scfg
    global_batch = scfg.batch_size
    compiled = self.make_train_fn(global_batch)

    def train_step(batch):
      loss, correct = compiled(batch)
      return {"loss": float(loss) * global_batch, "correct": float(correct)}

    result = loop.run(
        step_var=self.step, epochs=scfg.epochs,
        steps_per_epoch=steps_per_epoch(self.cfg, scfg, self.train_dir),
        max_steps=max_steps, global_batch=global_batch,
        epoch_data=lambda epoch, skip: iter(distributed_epoch(
            self.strategy, self.cfg, self.train_dir, global_batch, epoch,
            skip)),
        train_step=train_step, save=self.ckpt.save,
        checkpoint_every=self.checkpoint_every, log_every=self.log_every,
        log=self._log_scalars,
        postfix=lambda sums, n: {"loss": f"{sums['loss'] / n:.3f}",
                                 "acc": f"{sums['correct'] / n:.3f}"},
        epoch_start=lambda epoch: self.optimizer.set_epoch(
            epoch, scfg.schedule_epochs or scfg.epochs),
        epoch_end=lambda step, _: self.chief and self.log_patch_images(step),
        desc=f"stage {self.stage}", progress=self.progress,
        profiler=step_profiler.StepProfiler(
            run_dir.log_dir(self.run, self.stage), profile_steps))
    self.writer.flush()
    if result is None:
      return {"step": int(self.step.numpy())}
    return {"step": result.step, "epoch": result.epoch,
            "train_loss": result.sums["loss"] / result.videos,
            "train_top1": 100.0 * result.sums["correct"] / result.videos,
            "videos_per_s": result.videos / max(result.seconds, 1e-9)}

  def _log_scalars(self, step, out, rate):
    global_batch = self.scfg.batch_size
    with self.writer.as_default():
      tf.summary.scalar("train/loss", out["loss"] / global_batch, step=step)
      tf.summary.scalar("train/top1", out["correct"] / global_batch,
                        step=step)
      tf.summary.scalar("train/videos_per_s", rate, step=step)
      for k, lr in self.optimizer.learning_rates().items():
        tf.summary.scalar(f"lr/{k}", lr, step=step)

  def log_patch_images(self, epoch_end: int, num_videos: int = 3):
    """Writes a few held-out videos with this stage's patches drawn."""
    if self.stage == 0:
      return
    cfg = self.cfg
    split_dir = pipeline.split_dir(cfg.data, cfg.data.eval_split)
    try:
      with_boxes = self.patch == "oracle" or _has_boxes(split_dir)
      batch = next(iter(pipeline.make_dataset(
          cfg.data, split_dir, training=False, batch_size=num_videos,
          seed=cfg.seed, with_boxes=with_boxes)))
    except (FileNotFoundError, tf.errors.OpError) as e:
      logging.warning("no patch images for TensorBoard: %s", e)
      return
    # Only the policy reads the glance. Baseline patches must not run the
    # model: here on the chief alone, a multi-worker strategy's collectives
    # would wait for the other workers.
    glance = (self.recognizer.glance(batch)
              if self.patch == patch_choice.POLICY else None)
    offsets = self.recognizer.offsets(batch, glance, self.patch)
    summaries.write_batch_patch_images(self.writer, f"patches/{self.patch}",
                                       batch, offsets, cfg, epoch_end,
                                       max_videos=num_videos)


def _has_boxes(split_dir: str) -> bool:
  """Whether the split's records carry object boxes (synthetic data)."""
  first = shards.list_records(split_dir)[0]
  for raw in tf.data.TFRecordDataset(first).take(1):
    example = tf.train.SequenceExample.FromString(raw.numpy())
    return schema.BOXES in example.feature_lists.feature_list
  return False

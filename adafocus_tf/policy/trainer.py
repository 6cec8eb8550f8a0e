"""Stage 2: the patch policy trained with PPO, everything else frozen.

One training step on a batch of videos (each video is one episode of T
steps), compiled as one ``tf.function`` under the run's strategy:

  1. the glance net sees every frame once: feature maps (the policy's
     observations) and pooled vectors (for the classifier);
  2. the collect ("old") policy runs its GRU over the T maps and a patch is
     sampled per frame from its logits; the policy reads only the glance
     maps, so all T actions are known before any patch is cropped;
  3. the focus net scores the policy's patches and, for the ``random``
     reward, uniformly random patches of the same frames, in one batched
     call;
  4. the classifier steps along the policy's patches; at each step the
     random patch is scored from the same state (the two inputs go through
     one batched ``step`` call) and does not advance it;
  5. per-step rewards (``rewards.py``) go into a ``[B, T]`` Trajectory
     (step types FIRST, MID, ...; next step type LAST on the last frame)
     and ``agent.train`` updates the policy (``agent.py``).

The step's ``tf.function`` is traced without AutoGraph: tf-agents and
tf-probability are written for plain graph mode, and converting them costs
about 20 s per trace on a CPU (nothing here needs converting: loops run
over the static number of frames).

Sampling draws Gumbel noise from each video's stateless seed, so a step
takes the same actions on any number of replicas and after a resume.
``policy_fn`` is the greedy (argmax) policy, for evaluation and stage 3.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from adafocus_tf import profiling
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.models import adafocus
from adafocus_tf.models import patches
from adafocus_tf.policy import agent as agent_lib
from adafocus_tf.policy import networks
from adafocus_tf.policy import rewards as rewards_lib
from adafocus_tf.training import loop
from adafocus_tf.training import run_dir
from adafocus_tf.training import strategy as strategy_lib
from adafocus_tf.training import summaries
from adafocus_tf.training import supervised

STAGE = 2
# Streams of a video's seed for the policy's own randomness; the model's
# dropout uses the seed itself and stage-1 random patches stream 1.
_SAMPLE_STREAM = 2
_BASELINE_STREAM = 3


def seed_stream(seeds, stream: int):
  """Per-video seeds of an independent random stream.

  Args:
    seeds: int [B, 2] per-video stateless seeds (the pipeline's ``seed``).
    stream: which stream (a small integer folded into each seed).

  Returns:
    int [B, 2] seeds.
  """
  return tf.map_fn(
      lambda s: tf.random.experimental.stateless_fold_in(s, stream), seeds)


def sample_actions(logits, seeds):
  """One categorical sample per video and step, from per-video seeds.

  Gumbel-max: argmax(logits + Gumbel noise) is distributed as
  Categorical(logits); the noise of video i depends only on ``seeds[i]``.

  Args:
    logits: float [B, T, A].
    seeds: int [B, 2] stateless seeds.

  Returns:
    int32 [B, T] actions.
  """
  shape = tf.shape(logits)[1:]
  tiny = 1e-20
  u = tf.map_fn(lambda s: tf.random.stateless_uniform(shape, s, tiny, 1.0),
                seeds, fn_output_signature=tf.float32)
  gumbel = -tf.math.log(-tf.math.log(u))
  return tf.argmax(tf.cast(logits, tf.float32) + gumbel, -1,
                   output_type=tf.int32)


def episode_step_types(batch_size, num_steps: int):
  """Step types and discounts of episodes that are one video each.

  Args:
    batch_size: B, videos (episodes).
    num_steps: T, frames (steps) per video.

  Returns:
    (step_type, next_step_type, discount), each [B, T]: FIRST then MID;
    MID then LAST; 1 then 0 on the last step.
  """
  first = tf.fill([batch_size, 1], ts.StepType.FIRST)
  mid = tf.fill([batch_size, num_steps - 1], ts.StepType.MID)
  last = tf.fill([batch_size, 1], ts.StepType.LAST)
  step_type = tf.concat([first, mid], 1)
  next_step_type = tf.concat([mid, last], 1)
  # The discount of the step after the last frame is 0: the episode ends.
  discount = tf.concat([tf.ones([batch_size, num_steps - 1]),
                        tf.zeros([batch_size, 1])], 1)
  return step_type, next_step_type, discount


def episode_time_steps(glance_maps):
  """tf-agents time steps of whole videos: one episode per video.

  Args:
    glance_maps: [B, T, h, w, C] glance feature maps (the observations).
  """
  b = tf.shape(glance_maps)[0]
  step_type, _, _ = episode_step_types(b, glance_maps.shape[1])
  shape = tf.shape(step_type)
  return ts.TimeStep(step_type=step_type, reward=tf.zeros(shape),
                     discount=tf.ones(shape),
                     observation=tf.cast(glance_maps, tf.float32))


def greedy_actions_from_maps(policy, glance_maps):
  """Argmax patch actions of a tf-agents policy over whole videos.

  Args:
    policy: the stage-2 agent's greedy ``policy``.
    glance_maps: [B, T, h, w, C] glance feature maps already computed.

  Returns:
    int32 [B, T] grid indices.
  """
  b = tf.shape(glance_maps)[0]
  dist = policy.distribution(episode_time_steps(glance_maps),
                             policy.get_initial_state(b))
  return tf.cast(dist.action.mode(), tf.int32)


class PolicyTrainer:
  """Trains the stage-2 policy of a run.

  Args:
    cfg: the run's config (``stage2`` is the PPO section).
    strategy: a ``tf.distribute`` strategy.
    run: the run directory.
    checkpoint_every: steps between checkpoints (and at each epoch's end).
    log_every: steps between TensorBoard scalar writes.
    progress: show per-epoch progress bars.
  """

  def __init__(self, cfg: ExperimentConfig, strategy: tf.distribute.Strategy,
               run: str, checkpoint_every: int = 50, log_every: int = 10,
               progress: bool = True):
    self.cfg, self.strategy, self.run = cfg, strategy, run
    self.pcfg = cfg.stage2
    rewards_lib.check_kind(self.pcfg.reward)
    if cfg.data.glance_frames or cfg.data.focus_frames:
      raise NotImplementedError(
          "stage 2 runs the V1 per-frame policy; separate glance and focus "
          "frame streams (Something-Something) are not supported")
    self.checkpoint_every, self.log_every = checkpoint_every, log_every
    self.chief = strategy_lib.is_chief(strategy)
    self.progress = progress and self.chief
    self.train_dir = pipeline.split_dir(cfg.data, cfg.data.train_split)
    m = cfg.model
    with strategy.scope():
      self.model = adafocus.AdaFocus(cfg)
      self.model.build_all(cfg.data.num_frames)
      obs_spec, action_spec = networks.specs(self.model.glance.map_shape,
                                             m.num_actions)
      self.actor, self.critic = networks.build_networks(
          obs_spec, action_spec, m.policy_conv_channels, m.policy_hidden)
      self.optimizer = agent_lib.make_optimizer(self.pcfg)
      self.agent = agent_lib.make_agent(self.pcfg, obs_spec, action_spec,
                                        self.actor, self.critic,
                                        optimizer=self.optimizer)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name="step")
    self.ckpt = supervised.Checkpointer(
        strategy, run_dir.checkpoint_dir(run, STAGE), model=self.model,
        actor=self.actor, critic=self.critic,
        optimizer=self.optimizer,
        step=self.step, ppo_updates=self.agent.train_step_counter)
    self._writer = None
    self._greedy_fn = tf.function(
        lambda frames: self._offsets(self.greedy_actions(frames)),
        autograph=False)

  @property
  def writer(self):
    # Created on first use: loading a trained policy must not write logs.
    if self._writer is None:
      self._writer = (
          tf.summary.create_file_writer(run_dir.log_dir(self.run, STAGE))
          if self.chief else tf.summary.create_noop_writer())
    return self._writer

  def initialize(self, init_from: Optional[str]) -> str:
    """Resumes stage 2, or starts it from ``init_from``'s model weights.

    Args:
      init_from: checkpoint prefix of an earlier stage (its ``model``).

    Returns:
      What happened, for the log.
    """
    if self.ckpt.restore_latest():
      return f"resumed stage {STAGE} at step {int(self.step.numpy())}"
    if init_from:
      supervised.restore_model(self.model, init_from)
      return f"stage {STAGE} initialised from {init_from}"
    return (f"stage {STAGE} starts from random initialisation (no stage-1 "
            "checkpoint: the frozen networks are untrained)")

  # -- the policy ----------------------------------------------------------
  def _offsets(self, actions):
    cfg = self.cfg
    positions = patches.action_to_position(actions, cfg.model.num_actions)
    return patches.position_to_offset(positions, cfg.data.frame_size,
                                      cfg.model.patch_size)

  def greedy_actions(self, frames):
    """Argmax actions of the current policy.

    Args:
      frames: [B, T, S, S, 3] normalised frames.

    Returns:
      int32 [B, T] patch indices.
    """
    fmap, _ = self.model.glance_features(frames)
    return greedy_actions_from_maps(self.agent.policy, fmap)

  # Callers trace it inside their own (AutoGraph) functions: it stays a
  # compiled call rather than being converted with the tf-agents code below.
  @tf.autograph.experimental.do_not_convert
  def policy_fn(self, batch):
    """Greedy patch offsets for a pipeline batch.

    Args:
      batch: dict with ``frames`` [B, T, S, S, 3].

    Returns:
      int32 [B, T, 2] top-left patch offsets.
    """
    return self._greedy_fn(batch["frames"])

  # -- one step ------------------------------------------------------------
  def rollout(self, batch):
    """Acts on a batch with the collect policy and scores the patches.

    Args:
      batch: a pipeline batch (this replica's part).

    Returns:
      (Trajectory [B, T], dict of per-video statistics).
    """
    cfg, model = self.cfg, self.model
    frames = batch["frames"]
    num_steps = frames.shape[1] or cfg.data.num_frames
    b = tf.shape(frames)[0]
    targets = supervised.targets_of(batch, cfg.data.multi_label)
    fmap, pooled = model.glance_features(frames)
    time_steps = episode_time_steps(fmap)
    collect = self.agent.collect_policy
    dist_step = collect.distribution(time_steps, collect.get_initial_state(b))
    actions = sample_actions(dist_step.action.logits,
                             seed_stream(batch["seed"], _SAMPLE_STREAM))
    offsets = self._offsets(actions)

    with_baseline = self.pcfg.reward == "random"
    p = cfg.model.patch_size
    crops = patches.extract_patches(frames, offsets, p)
    if with_baseline:
      baseline = patches.random_offsets(
          seed_stream(batch["seed"], _BASELINE_STREAM), num_steps,
          cfg.data.frame_size, p)
      crops = tf.concat([crops, patches.extract_patches(frames, baseline, p)],
                        0)
    feats = model.focus(crops)
    feats = tf.reshape(feats, [-1, b, num_steps, feats.shape[-1]])

    conf, baseline_conf = [], []
    state = model.classifier.initial_state(b)
    logits = None
    for t in range(num_steps):
      x = model.fuse(pooled[:, t], feats[0, :, t])
      if with_baseline:
        xr = model.fuse(pooled[:, t], feats[1, :, t])
        both, states = model.classifier.step(tf.concat([x, xr], 0),
                                             tf.concat([state, state], 0))
        logits, state = both[:b], states[:b]
        baseline_conf.append(rewards_lib.confidence(both[b:], targets))
      else:
        logits, state = model.classifier.step(x, state)
      conf.append(rewards_lib.confidence(logits, targets))
    conf = tf.stack(conf, 1)
    baseline_conf = tf.stack(baseline_conf, 1) if with_baseline else None
    step_rewards = rewards_lib.step_rewards(self.pcfg.reward, conf,
                                            baseline_conf)

    step_type, next_step_type, discount = episode_step_types(b, num_steps)
    experience = trajectory.Trajectory(
        step_type=step_type, observation=time_steps.observation,
        action=actions, policy_info=dist_step.info,
        next_step_type=next_step_type, reward=step_rewards,
        discount=discount)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               batch["label"]), tf.float32)
    stats = {"reward": tf.reduce_mean(step_rewards, 1),
             "final_conf": conf[:, -1], "correct": correct}
    return experience, stats

  def _replica_step(self, batch):
    experience, stats = self.rollout(batch)
    loss_info = self.agent.train(experience)
    out = {k: tf.reduce_sum(v) for k, v in stats.items()}
    # The agent's losses are already divided by the global batch.
    out["loss"] = loss_info.loss
    out["policy_loss"] = loss_info.extra.policy_gradient_loss
    out["value_loss"] = loss_info.extra.value_estimation_loss
    out["entropy_loss"] = loss_info.extra.entropy_regularization_loss
    return out

  def make_train_fn(self):
    """A compiled step: distributed batch -> dict of global sums."""
    @tf.function(autograph=False)
    def train_fn(dist_batch):
      out = self.strategy.run(self._replica_step, args=(dist_batch,))
      return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v,
                                      axis=None) for k, v in out.items()}
    return train_fn

  # -- the loop ------------------------------------------------------------
  def train(self, max_steps: int = 0, profile_steps: str = "") -> dict:
    """Trains to the end of the stage (or ``max_steps`` steps in total).

    Args:
      max_steps: stop once the stage has taken this many steps in total
        (0: train all epochs).
      profile_steps: ``"A,B"``: write a TensorBoard profile of steps A..B.

    Returns:
      dict with the final step and epoch, and the last epoch's mean
      per-step reward, top-1 with the sampled patches, final-step
      confidence, losses and throughput.
    """
    pcfg = self.pcfg
    global_batch = pcfg.batch_size
    compiled = self.make_train_fn()
    result = loop.run(
        step_var=self.step, epochs=pcfg.epochs,
        steps_per_epoch=supervised.steps_per_epoch(self.cfg, pcfg,
                                                   self.train_dir),
        max_steps=max_steps, global_batch=global_batch,
        epoch_data=lambda epoch, skip: iter(supervised.distributed_epoch(
            self.strategy, self.cfg, self.train_dir, global_batch, epoch,
            skip)),
        train_step=lambda b: {k: float(v) for k, v in compiled(b).items()},
        save=self.ckpt.save, checkpoint_every=self.checkpoint_every,
        log_every=self.log_every,
        log=lambda step, out, rate: self._log_scalars(step, out,
                                                      global_batch, rate),
        postfix=lambda sums, n: {"reward": f"{sums['reward'] / n:.4f}",
                                 "acc": f"{sums['correct'] / n:.3f}"},
        epoch_end=lambda step, batch: (
            batch is not None and self.chief and
            self._log_patches(batch, step)),
        desc=f"stage {STAGE}", progress=self.progress,
        profiler=profiling.StepProfiler(run_dir.log_dir(self.run, STAGE),
                                        profile_steps))
    # Entry points may end with os._exit (io_utils.exit_process).
    self.writer.flush()
    if result is None:
      return {"step": int(self.step.numpy())}
    n = max(result.videos, 1)
    return {"step": result.step, "epoch": result.epoch,
            "train_reward": result.sums.get("reward", 0.0) / n,
            "train_top1": 100.0 * result.sums.get("correct", 0.0) / n,
            "train_final_conf": result.sums.get("final_conf", 0.0) / n,
            "train_loss": result.sums.get("loss", 0.0) / max(result.steps, 1),
            "videos_per_s": result.videos / max(result.seconds, 1e-9)}

  def _log_scalars(self, step, out, global_batch, rate):
    with self.writer.as_default():
      tf.summary.scalar("train/reward", out["reward"] / global_batch,
                        step=step)
      tf.summary.scalar("train/top1", out["correct"] / global_batch,
                        step=step)
      tf.summary.scalar("train/final_conf", out["final_conf"] / global_batch,
                        step=step)
      for k in ("loss", "policy_loss", "value_loss", "entropy_loss"):
        tf.summary.scalar(f"ppo/{k}", out[k], step=step)
      tf.summary.scalar("train/videos_per_s", rate, step=step)

  def _log_patches(self, dist_batch, step):
    """Frames with the greedy policy's patches of a few training videos."""
    batch = self.strategy.experimental_local_results(dist_batch)[0]
    offsets = self.policy_fn(batch)
    summaries.write_patch_images(
        self.writer, "train/policy_patches", batch["frames"], offsets,
        self.cfg.model.patch_size, self.cfg.data.mean, self.cfg.data.std,
        step)

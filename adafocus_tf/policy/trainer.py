"""Stage 2: the patch policy trained with PPO, everything else frozen.

One training step on a batch of videos (each video is one episode of T
steps, one patch per frame; or, with one patch per video (Something-
Something), an episode of one step whose observation is the stack of the
glance maps of all glance frames, scored by the two-stream model's
prediction), compiled as one ``tf.function`` under the run's strategy:

  1. the glance net sees every frame once: feature maps (the policy's
     observations) and pooled vectors (for the classifier);
  2. the collect ("old") policy runs its GRU over the T maps and a patch is
     sampled per frame from its distribution (``action_space.py``: a grid
     index or a position); the policy reads only the glance maps, so all T
     actions are known before any patch is cropped;
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

Sampling draws its noise from each video's stateless seed, so a step takes
the same actions on any number of replicas and after a resume; the
policy's initial weights are seeded by the run seed and the stage
(``supervised.seed_initial_weights``), so a stage 2 started in a new
process starts where one run straight after stage 1 does.
``policy_fn`` is the greedy policy (argmax, or the Gaussian's mean), for
evaluation and stage 3.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.agents.ppo import ppo_utils
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from adafocus_tf import profiling
from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.models import factory
from adafocus_tf.models import patches
from adafocus_tf.policy import action_space
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


def observation_shape(cfg: ExperimentConfig, map_shape):
  """(h, w, C') of one policy observation.

  Args:
    cfg: the run's config.
    map_shape: (h, w, C) of one glance feature map.

  Returns:
    ``map_shape`` (one patch per frame), or (h, w, Tg * C): the glance maps
    of all Tg glance frames stacked on channels (one patch per video).
  """
  h, w, c = map_shape
  if cfg.model.patch_per_video:
    return (h, w, cfg.data.glance_frames * c)
  return (h, w, c)


def stack_frames(maps):
  """[B, T, h, w, C] -> [B, 1, h, w, T * C]: frame t's channels at t * C.

  The order of concatenating the frames' maps on the channel axis.
  """
  shape = tf.shape(maps)
  t, c = maps.shape[1], maps.shape[4]
  stacked = tf.transpose(maps, [0, 2, 3, 1, 4])
  return tf.reshape(stacked, [shape[0], 1, shape[2], shape[3], t * c])


def greedy_offsets_from_maps(policy, glance_maps, cfg: ExperimentConfig):
  """Patch offsets of a tf-agents policy's greedy actions over whole videos.

  The argmax of a discrete policy, the mean of a continuous one.

  Args:
    policy: the stage-2 agent's greedy ``policy``.
    glance_maps: [B, K, h, w, C'] observations already computed (glance
      maps, or one stack of them per video: ``stack_frames``).
    cfg: the run's config (action space, frame and patch sizes).

  Returns:
    int32 [B, K, 2] top-left patch offsets.
  """
  b = tf.shape(glance_maps)[0]
  dist = policy.distribution(episode_time_steps(glance_maps),
                             policy.get_initial_state(b))
  actions = action_space.from_config(cfg.model)
  return action_offsets(actions, actions.greedy(dist.action), cfg)


def action_offsets(actions, values, cfg: ExperimentConfig):
  """Top-left patch pixels, int32 [..., 2], of actions.

  Args:
    actions: the action space (``action_space.from_config``).
    values: actions of that space (grid indices or positions).
    cfg: the run's config (frame and patch sizes).
  """
  return patches.position_to_offset(actions.positions(values),
                                    cfg.data.frame_size, cfg.model.patch_size)


class GreedyStepper:
  """The greedy policy one frame at a time, its GRU state carried outside.

  For inference that drops videos as they go (``early_exit.EarlyExitRunner``):
  stepping from frame 0 with the state carried gives the same actions as
  ``greedy_offsets_from_maps`` on the whole sequence.

  Args:
    policy: the stage-2 agent's greedy ``policy``.
    cfg: the run's config (one patch per frame).
  """

  def __init__(self, policy, cfg: ExperimentConfig):
    self.policy, self.cfg = policy, cfg
    self.actions = action_space.from_config(cfg.model)

  def initial_state(self, n: int):
    """The policy state of ``n`` videos before their first frame."""
    return self.policy.get_initial_state(n)

  def __call__(self, glance_maps, first: bool, state):
    """Offsets of one frame.

    Args:
      glance_maps: [n, h, w, C] this frame's glance maps.
      first: the videos' first frame (the GRU state is reset).
      state: the policy state after the previous frame.

    Returns:
      (int32 [n, 2] offsets, the policy state after this frame).
    """
    n = tf.shape(glance_maps)[0]
    kind = ts.StepType.FIRST if first else ts.StepType.MID
    time_step = ts.TimeStep(step_type=tf.fill([n], kind),
                            reward=tf.zeros([n]), discount=tf.ones([n]),
                            observation=tf.cast(glance_maps, tf.float32))
    step = self.policy.distribution(time_step, state)
    return (action_offsets(self.actions, self.actions.greedy(step.action),
                           self.cfg), step.state)


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
    self.per_video = cfg.model.patch_per_video
    if self.per_video != factory.is_two_stream(cfg):
      raise ValueError(
          "the policy picks one patch per video exactly when the glance and "
          "focus frames are sampled separately (Something-Something): set "
          "model.patch_per_video together with data.glance_frames and "
          "data.focus_frames")
    self.checkpoint_every, self.log_every = checkpoint_every, log_every
    self.chief = strategy_lib.is_chief(strategy)
    self.progress = progress and self.chief
    self.train_dir = pipeline.split_dir(cfg.data, cfg.data.train_split)
    m = cfg.model
    self.actions = action_space.from_config(m)
    supervised.seed_initial_weights(cfg, STAGE)
    with strategy.scope():
      self.model = factory.build_model(cfg)
      self.model.build_all()
      obs_spec, self.actor, self.critic = networks.from_config(
          m, observation_shape(cfg, self.model.glance.map_shape),
          self.actions)
      self.optimizer = agent_lib.make_optimizer(self.pcfg)
      self.agent = agent_lib.make_agent(self.pcfg, obs_spec,
                                        self.actions.spec,
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
    self._greedy_fn = tf.function(self.greedy_offsets, autograph=False)

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
    return action_offsets(self.actions, actions, self.cfg)

  def greedy_stepper(self) -> GreedyStepper:
    """The greedy policy frame by frame (early exit)."""
    return GreedyStepper(self.agent.policy, self.cfg)

  def observations(self, batch):
    """The glance over a batch: the policy's observations and the rest.

    Args:
      batch: a pipeline batch.

    Returns:
      (observations [B, K, h, w, C'], glance output for scoring: pooled
      features [B, T, C] (one patch per frame) or the glance logits [B, C]
      (one per video)).
    """
    if self.per_video:
      maps, pooled = self.model.glance_features(batch["glance_frames"])
      return stack_frames(maps), self.model.glance_logits(pooled)
    return self.model.glance_features(batch["frames"])

  def greedy_offsets(self, batch):
    """Patch offsets of the current policy's greedy actions.

    Args:
      batch: a pipeline batch (its frames).

    Returns:
      int32 [B, K, 2] top-left patch offsets (K = T, or 1 per video).
    """
    obs, _ = self.observations(batch)
    return greedy_offsets_from_maps(self.agent.policy, obs, self.cfg)

  # Callers trace it inside their own (AutoGraph) functions: it stays a
  # compiled call rather than being converted with the tf-agents code below.
  @tf.autograph.experimental.do_not_convert
  def policy_fn(self, batch):
    """Greedy patch offsets for a pipeline batch, compiled.

    Args:
      batch: a pipeline batch (``frames``, or ``glance_frames``).

    Returns:
      int32 [B, K, 2] top-left patch offsets.
    """
    key = "glance_frames" if self.per_video else "frames"
    return self._greedy_fn({key: batch[key]})

  # -- one step ------------------------------------------------------------
  def rollout(self, batch):
    """Acts on a batch with the collect policy and scores the patches.

    Args:
      batch: a pipeline batch (this replica's part).

    Returns:
      (Trajectory [B, K], dict of per-video statistics).
    """
    cfg = self.cfg
    seeds = batch["seed"]
    b = tf.shape(seeds)[0]
    obs, glance_out = self.observations(batch)
    time_steps = episode_time_steps(obs)
    num_steps = obs.shape[1]
    # The actor in training mode, as in the update: with batch norm in the
    # encoder, both then normalise by this batch's statistics and the
    # update's importance ratios start at 1.
    dist, _ = self.actor(time_steps.observation, time_steps.step_type,
                         self.actor.get_initial_state(b), training=True)
    dist_params = ppo_utils.get_distribution_params(
        dist, legacy_distribution_network=True)
    actions = self.actions.sample(dist_params,
                                  seed_stream(seeds, _SAMPLE_STREAM))
    offsets = self._offsets(actions)
    baseline = None
    if self.pcfg.reward == "random":
      baseline = patches.random_offsets(
          seed_stream(seeds, _BASELINE_STREAM), num_steps,
          cfg.data.frame_size, cfg.model.patch_size)
    score = self._score_per_video if self.per_video else self._score_per_frame
    targets = supervised.targets_of(batch, cfg.data.multi_label)
    logits, conf, baseline_conf = score(batch, glance_out, offsets, baseline,
                                        targets)
    step_rewards = rewards_lib.step_rewards(self.pcfg.reward, conf,
                                            baseline_conf)

    step_type, next_step_type, discount = episode_step_types(b, num_steps)
    experience = trajectory.Trajectory(
        step_type=step_type, observation=time_steps.observation,
        action=actions, policy_info={"dist_params": dist_params},
        next_step_type=next_step_type, reward=step_rewards,
        discount=discount)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               batch["label"]), tf.float32)
    stats = {"reward": tf.reduce_mean(step_rewards, 1),
             "final_conf": conf[:, -1], "correct": correct}
    return experience, stats

  def _score_per_frame(self, batch, pooled, offsets, baseline, targets):
    """Confidences along the policy's patches, one per frame (V1).

    The focus net sees the policy's and the baseline's patches in one call;
    the classifier steps along the policy's, and scores the baseline patch
    from the same state without advancing it (one batched ``step``).

    Args:
      batch: the pipeline batch (``frames`` [B, T, S, S, 3]).
      pooled: [B, T, C] pooled glance features.
      offsets: [B, T, 2] the policy's patches.
      baseline: [B, T, 2] random patches, or None.
      targets: [B, C] target distributions.

    Returns:
      (last step's logits [B, C], conf [B, T], baseline conf [B, T] or None).
    """
    model, frames = self.model, batch["frames"]
    num_steps = offsets.shape[1]
    b = tf.shape(frames)[0]
    p = self.cfg.model.patch_size
    crops = patches.extract_patches(frames, offsets, p)
    if baseline is not None:
      crops = tf.concat([crops, patches.extract_patches(frames, baseline, p)],
                        0)
    feats = model.focus(crops)
    feats = tf.reshape(feats, [-1, b, num_steps, feats.shape[-1]])
    conf, baseline_conf = [], []
    state = model.classifier.initial_state(b)
    logits = None
    for t in range(num_steps):
      x = model.fuse(pooled[:, t], feats[0, :, t])
      if baseline is not None:
        xr = model.fuse(pooled[:, t], feats[1, :, t])
        both, states = model.classifier.step(tf.concat([x, xr], 0),
                                             tf.concat([state, state], 0))
        logits, state = both[:b], states[:b]
        baseline_conf.append(rewards_lib.confidence(both[b:], targets))
      else:
        logits, state = model.classifier.step(x, state)
      conf.append(rewards_lib.confidence(logits, targets))
    return (logits, tf.stack(conf, 1),
            tf.stack(baseline_conf, 1) if baseline is not None else None)

  def _score_per_video(self, batch, glance_logits, offsets, baseline,
                       targets):
    """Confidences of one patch per video (Something-Something).

    The policy's and the baseline's patches of every focus frame go through
    the focus net in one call.

    Args:
      batch: the pipeline batch (``focus_frames`` [B, Tf, S, S, 3]).
      glance_logits: [B, C] mean glance logits.
      offsets: [B, 1, 2] the policy's patch.
      baseline: [B, 1, 2] a random patch, or None.
      targets: [B, C] target distributions.

    Returns:
      (logits [B, C], conf [B, 1], baseline conf [B, 1] or None).
    """
    model, frames = self.model, batch["focus_frames"]
    b = tf.shape(frames)[0]
    if baseline is not None:
      frames = tf.concat([frames, frames], 0)
      offsets = tf.concat([offsets, baseline], 0)
      glance_logits = tf.concat([glance_logits, glance_logits], 0)
    logits = model.combine(glance_logits,
                           model.focus_logits(frames, offsets))[:, 0]
    conf = rewards_lib.confidence(logits, tf.concat(
        [targets, targets], 0) if baseline is not None else targets)[:, None]
    if baseline is None:
      return logits, conf, None
    return logits[:b], conf[:b], conf[b:]

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
    summaries.write_batch_patch_images(self.writer, "train/policy_patches",
                                       batch, offsets, self.cfg, step)

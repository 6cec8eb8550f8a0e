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

The glance, the patches and the scores come from the run's ``Recognizer``
(``adafocus_tf.inference``); what is PPO's (sampling, trajectories, the
agent) stays here. A trained run is used through ``policy.greedy`` without
any of this.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.agents.ppo import ppo_utils
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from adafocus_tf.config import ExperimentConfig
from adafocus_tf.data import pipeline
from adafocus_tf.inference import loading
from adafocus_tf.models import factory
from adafocus_tf.models import patches
from adafocus_tf.policy import action_space
from adafocus_tf.policy import greedy
from adafocus_tf.policy import networks
from adafocus_tf.profiling import step_profiler
from adafocus_tf.runs import checkpoints
from adafocus_tf.runs import run_dir
from adafocus_tf.training import loop
from adafocus_tf.training import strategy as strategy_lib
from adafocus_tf.training import summaries
from adafocus_tf.training import supervised
from adafocus_tf.training.ppo import agent as agent_lib
from adafocus_tf.training.ppo import rewards as rewards_lib

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
          m, greedy.observation_shape(cfg, self.model.glance.map_shape),
          self.actions)
      self.optimizer = agent_lib.make_optimizer(self.pcfg)
      self.agent = agent_lib.make_agent(self.pcfg, obs_spec,
                                        self.actions.spec,
                                        self.actor, self.critic,
                                        optimizer=self.optimizer)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name="step")
    self.recognizer = loading.build(cfg, self.model,
                                    greedy.GreedyPolicy(cfg, self.actor))
    self.ckpt = checkpoints.Checkpointer(
        strategy, run_dir.checkpoint_dir(run, STAGE), model=self.model,
        actor=self.actor, critic=self.critic,
        optimizer=self.optimizer,
        step=self.step, ppo_updates=self.agent.train_step_counter)
    self._writer = None
    self._greedy_offsets = tf.function(
        lambda batch: self.recognizer.offsets(
            batch, self.recognizer.glance(batch), "policy"),
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
    """Resumes stage 2, or starts it from ``init_from``'s weights.

    Args:
      init_from: checkpoint prefix of an earlier stage (its ``model``), or
        of a stage 2 (its ``model`` and the policy's ``actor`` and
        ``critic``; the optimizer starts afresh).

    Returns:
      What happened, for the log.
    """
    if self.ckpt.restore_latest():
      return f"resumed stage {STAGE} at step {int(self.step.numpy())}"
    if init_from:
      checkpoints.restore_model(self.model, init_from)
      # A stage-1 checkpoint has no policy: the seeded initial weights stay.
      tf.train.Checkpoint(actor=self.actor, critic=self.critic).restore(
          init_from).expect_partial()
      return f"stage {STAGE} initialised from {init_from}"
    return (f"stage {STAGE} starts from random initialisation (no stage-1 "
            "checkpoint: the frozen networks are untrained)")

  def observations(self, glance):
    """The policy's observations [B, K, h, w, C'] from the glance.

    The glance maps of every frame (one patch per frame), or one stack of
    the maps of all glance frames per video (one patch per video).

    Args:
      glance: ``recognizer.glance(batch)``.
    """
    if self.per_video:
      return greedy.stack_frames(glance.policy_maps)
    return glance.policy_maps

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
    glance = self.recognizer.glance(batch)
    time_steps = episode_time_steps(self.observations(glance))
    num_steps = time_steps.observation.shape[1]
    # The actor in training mode, as in the update: with batch norm in the
    # encoder, both then normalise by this batch's statistics and the
    # update's importance ratios start at 1.
    dist, _ = self.actor(time_steps.observation, time_steps.step_type,
                         self.actor.get_initial_state(b), training=True)
    dist_params = ppo_utils.get_distribution_params(
        dist, legacy_distribution_network=True)
    actions = self.actions.sample(dist_params,
                                  seed_stream(seeds, _SAMPLE_STREAM))
    offsets = greedy.action_offsets(self.actions, actions, cfg)
    baseline = None
    if self.pcfg.reward == "random":
      baseline = patches.random_offsets(
          seed_stream(seeds, _BASELINE_STREAM), num_steps,
          cfg.data.frame_size, cfg.model.patch_size)
    logits, baseline_logits = self.recognizer.scores_along(
        batch, glance, offsets, baseline)
    targets = supervised.targets_of(batch, cfg.data.multi_label)
    conf = rewards_lib.confidence(logits, targets[:, None])
    baseline_conf = (None if baseline is None else
                     rewards_lib.confidence(baseline_logits, targets[:, None]))
    step_rewards = rewards_lib.step_rewards(self.pcfg.reward, conf,
                                            baseline_conf)

    step_type, next_step_type, discount = episode_step_types(b, num_steps)
    experience = trajectory.Trajectory(
        step_type=step_type, observation=time_steps.observation,
        action=actions, policy_info={"dist_params": dist_params},
        next_step_type=next_step_type, reward=step_rewards,
        discount=discount)
    correct = tf.cast(tf.equal(
        tf.argmax(logits[:, -1], -1, output_type=tf.int32), batch["label"]),
                      tf.float32)
    stats = {"reward": tf.reduce_mean(step_rewards, 1),
             "final_conf": conf[:, -1], "correct": correct}
    return experience, stats

  def _replica_step(self, batch):
    experience, stats = self.rollout(batch)
    out = {k: tf.reduce_sum(v) for k, v in stats.items()}
    # The agent's losses are already divided by the global batch.
    out.update(agent_lib.loss_terms(self.agent.train(experience)))
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
        profiler=step_profiler.StepProfiler(run_dir.log_dir(self.run, STAGE),
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
    offsets = self._greedy_offsets(batch)
    summaries.write_batch_patch_images(self.writer, "train/policy_patches",
                                       batch, offsets, self.cfg, step)

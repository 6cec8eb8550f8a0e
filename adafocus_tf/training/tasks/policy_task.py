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
(``stage_trainer.seed_initial_weights``), so a stage 2 started in a new
process starts where one run straight after stage 1 does.

The glance and the patches come from the run's ``Recognizer``, the scores
from the family's ``scores_along`` (given by its stage plan,
``policy(scores_along)``); what is PPO's (sampling, trajectories, the agent)
stays here. A trained run is used through ``policy.greedy`` without any of
this.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import tensorflow as tf
from tf_agents.agents.ppo import ppo_utils
from tf_agents.trajectories import trajectory

from adafocus_tf.models import patches
from adafocus_tf.policy import action_space
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import greedy
from adafocus_tf.policy import networks
from adafocus_tf.runs import checkpoints
from adafocus_tf.training import stage_inputs
from adafocus_tf.training import summaries
from adafocus_tf.training.ppo import agent as agent_lib
from adafocus_tf.training.ppo import episodes
from adafocus_tf.training.ppo import rewards as rewards_lib
from adafocus_tf.training.tasks import task

# Streams of a video's seed for the policy's own randomness; the model's
# dropout uses the seed itself and stage-1 random patches stream 1.
_SAMPLE_STREAM = 2
_BASELINE_STREAM = 3


class PolicyTask(task.Task):
  """The PPO stage of a run (module doc).

  Args:
    cfg: the run's config (its stage section is the PPO one, ``PPOConfig``).
    stage: the stage (2 in the built-in plans).
    policy_run: unused (the stage trains the policy).
    scores: the family's ``scores_along(recognizer, batch, glance, offsets,
      alternative)``: the logits after each policy step with its patches,
      and of an alternative patch at each step from the same state.
  """

  # Traced without AutoGraph (module doc).
  autograph = False

  def __init__(self, cfg, stage: int, policy_run: Optional[str] = None, *,
               scores: Callable):
    del policy_run
    super().__init__(cfg, stage)
    self.pcfg = self.section
    rewards_lib.check_kind(self.pcfg.reward)
    self.per_video = cfg.model.patch_per_video
    self.actions = action_space.from_config(cfg.model)
    self._scores = scores

  def build(self) -> None:
    cfg = self.cfg
    self.model = self.family.build_model(cfg)
    self.model.build_all()
    obs_spec, self.actor, self.critic = networks.from_config(
        cfg.model, greedy.observation_shape(cfg, self.model.glance.map_shape),
        self.actions)
    self.optimizer = agent_lib.make_optimizer(self.pcfg)
    self.agent = agent_lib.make_agent(self.pcfg, obs_spec, self.actions.spec,
                                      self.actor, self.critic,
                                      optimizer=self.optimizer)
    self.recognizer = self.family.build_recognizer(
        cfg, self.model, greedy.GreedyPolicy(cfg, self.actor))
    self._greedy_offsets = tf.function(
        lambda batch: self.recognizer.offsets(
            batch, self.recognizer.glance(batch), "policy"),
        autograph=False)

  def checkpoint_objects(self):
    return {"model": self.model, "actor": self.actor, "critic": self.critic,
            "optimizer": self.optimizer,
            "ppo_updates": self.agent.train_step_counter}

  def initialize_from(self, init_from: str) -> None:
    """An earlier stage's ``model``, or a stage 2's ``model``, ``actor`` and
    ``critic`` (the optimizer starts afresh)."""
    checkpoints.restore_model(self.model, init_from)
    # A stage-1 checkpoint has no policy: the seeded initial weights stay.
    tf.train.Checkpoint(actor=self.actor, critic=self.critic).restore(
        init_from).expect_partial()

  def fresh_start(self) -> str:
    return (f"stage {self.stage} starts from random initialisation (no "
            "stage-1 checkpoint: the frozen networks are untrained)")

  def observations(self, glance):
    """The policy's observations [B, K, h, w, C'] from the glance.

    The glance maps of every frame (one patch per frame), or one stack of
    the maps of all glance frames per video (one patch per video).

    Args:
      glance: ``recognizer.glance(batch)``.
    """
    if self.per_video:
      return frame_stack.stack_frames(glance.policy_maps)
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
    time_steps = episodes.episode_time_steps(self.observations(glance))
    num_steps = time_steps.observation.shape[1]
    # The actor in training mode, as in the update: with batch norm in the
    # encoder, both then normalise by this batch's statistics and the
    # update's importance ratios start at 1.
    dist, _ = self.actor(time_steps.observation, time_steps.step_type,
                         self.actor.get_initial_state(b), training=True)
    dist_params = ppo_utils.get_distribution_params(
        dist, legacy_distribution_network=True)
    actions = self.actions.sample(dist_params,
                                  episodes.seed_stream(seeds, _SAMPLE_STREAM))
    offsets = greedy.action_offsets(self.actions, actions, cfg)
    baseline = None
    if self.pcfg.reward == "random":
      baseline = patches.random_offsets(
          episodes.seed_stream(seeds, _BASELINE_STREAM), num_steps,
          cfg.data.frame_size, cfg.model.patch_size)
    logits, baseline_logits = self._scores(self.recognizer, batch, glance,
                                           offsets, baseline)
    targets = stage_inputs.targets_of(batch, cfg.data.multi_label)
    conf = rewards_lib.confidence(logits, targets[:, None])
    baseline_conf = (None if baseline is None else
                     rewards_lib.confidence(baseline_logits, targets[:, None]))
    step_rewards = rewards_lib.step_rewards(self.pcfg.reward, conf,
                                            baseline_conf)

    step_type, next_step_type, discount = episodes.episode_step_types(
        b, num_steps)
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

  def replica_step(self, batch, global_batch: int, with_terms: bool = False):
    del global_batch, with_terms  # The agent divides by the global batch.
    experience, stats = self.rollout(batch)
    out = {k: tf.reduce_sum(v) for k, v in stats.items()}
    out.update(agent_lib.loss_terms(self.agent.train(experience)))
    return out, {}

  # -- reports ---------------------------------------------------------------
  def progress_fields(self, sums, videos):
    return {"reward": f"{sums['reward'] / videos:.4f}",
            "acc": f"{sums['correct'] / videos:.3f}"}

  def write_scalars(self, step, out, rate):
    global_batch = self.pcfg.batch_size
    tf.summary.scalar("train/reward", out["reward"] / global_batch, step=step)
    tf.summary.scalar("train/top1", out["correct"] / global_batch, step=step)
    tf.summary.scalar("train/final_conf", out["final_conf"] / global_batch,
                      step=step)
    for k in ("loss", "policy_loss", "value_loss", "entropy_loss"):
      tf.summary.scalar(f"ppo/{k}", out[k], step=step)
    tf.summary.scalar("train/videos_per_s", rate, step=step)

  def write_images(self, writer, step, dist_batch, strategy):
    """Frames with the greedy policy's patches of a few training videos."""
    if dist_batch is None:
      return
    batch = strategy.experimental_local_results(dist_batch)[0]
    offsets = self._greedy_offsets(batch)
    summaries.write_batch_patch_images(writer, "train/policy_patches",
                                       batch, offsets, self.recognizer, step)

  def stats(self, result) -> dict:
    n = max(result.videos, 1)
    return {"step": result.step, "epoch": result.epoch,
            "train_reward": result.sums.get("reward", 0.0) / n,
            "train_top1": 100.0 * result.sums.get("correct", 0.0) / n,
            "train_final_conf": result.sums.get("final_conf", 0.0) / n,
            "train_loss": result.sums.get("loss", 0.0) / max(result.steps, 1),
            "videos_per_s": result.videos / max(result.seconds, 1e-9)}


def policy(scores: Callable) -> Callable:
  """A stage-plan entry: ``PolicyTask`` with a family's ``scores_along``.

  Args:
    scores: see ``PolicyTask``.
  """
  return functools.partial(PolicyTask, scores=scores)

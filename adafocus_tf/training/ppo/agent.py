"""The PPO agent of stage 2: tf-agents' PPOClipAgent, with the method's update.

How each setting of the paper (docs/METHOD.md section 2, "PPO") maps onto the
agent. ``cfg`` is ``ExperimentConfig.stage2`` (``PPOConfig``).

| paper setting                  | agent argument, or where                    |
| ------------------------------ | ------------------------------------------- |
| Adam, lr 3e-4, betas (0.9,     | ``optimizer=Adam(cfg.learning_rate,         |
| 0.999)                         | cfg.beta_1, cfg.beta_2, epsilon=1e-8,       |
|                                | adaptive_epsilon=True)``: PyTorch's epsilon |
|                                | (not Keras' 1e-7), added where PyTorch adds |
|                                | it (``make_optimizer``)                     |
| discount 0.7                   | ``discount_factor=cfg.discount``            |
| clip 0.2: -min(r A, clip(r) A) | ``importance_ratio_clipping=cfg.clip``      |
| 1 epoch per batch              | ``num_epochs=cfg.update_epochs``            |
| + 0.5 MSE(V, R)                | ``value_pred_loss_coef=cfg.value_coef``     |
| - 0.01 entropy                 | ``entropy_regularization=cfg.entropy_coef`` |
| loss averaged over all steps   | ``aggregate_losses_across_replicas=True``:  |
| and videos of the (global)     | per-step losses are averaged over T, then   |
| batch                          | over the global batch                       |
| Monte Carlo discounted returns | ``use_gae=False,                            |
| over the T steps (no GAE, no   | use_td_lambda_return=False,                 |
| TD(lambda), no bootstrap: the  | lambda_value=1.0``                          |
| video ends)                    |                                             |
| returns normalised by mean/std | ``AdaFocusPPOAgent._train`` (below);        |
| over all steps and videos of   | ``normalize_rewards=False,                  |
| the batch                      | reward_norm_clipping=0``                    |
| A = R - V, no gradient through | ``AdaFocusPPOAgent._train`` passes this A   |
| V, A itself not normalised     | to ``get_loss``                             |
| V from the critic being        | ``compute_value_and_advantage_in_train=     |
| updated                        | True`` (the rollout stores only the old     |
|                                | logits)                                     |
| raw glance features as         | ``normalize_observations=False,             |
| observations                   | update_normalizers_in_train=False``         |
| nothing else in the loss or    | ``policy_l2_reg=0, value_function_l2_reg=0, |
| the update                     | shared_vars_l2_reg=0, log_prob_clipping=0,  |
|                                | gradient_clipping=None,                     |
|                                | value_clipping=None``, no KL terms          |
|                                | (PPOClipAgent)                              |
| an "old" policy acts, the      | ``collect_policy`` acts and the trainer     |
| current one is updated, then   | stores its logits in the trajectory (the    |
| copied                         | old log-probabilities); the update changes  |
|                                | the networks that the collect policy        |
|                                | shares, which is the copy                   |
| training samples, evaluation   | the trainer samples from the actor's        |
| takes the argmax (discrete) or | distribution (``action_space.py``);         |
| the mean (continuous)          | ``greedy_eval=True`` makes ``agent.policy`` |
|                                | its mode: the argmax, or the mean           |
| continuous: Gaussian, std 0.25 | the actor's output spec                     |
| fixed (not learned)            | (``actor_network.gaussian_builder``): only  |
|                                | the mean is a parameter, so the entropy     |
|                                | term is a constant with no gradient         |

Why ``_train`` is overridden: tf-agents' PPO always standardises the
advantages of a batch (``ppo_agent._normalize_advantages``, no switch) and
normalises rewards, not returns, when asked. The method normalises the
*returns* and uses the raw ``R - V``. The override keeps every loss term of the
stock agent (``get_loss``: clipped surrogate, value MSE, entropy) and only
computes its inputs the method's way: ``_train`` takes the old
log-probabilities from the stored logits and hands the rest to
``update_episodes``, which ``one_update.update_once`` runs on a recorded
rollout (compared with the official update in
``tests/convert/test_ppo_parity.py``). Under a ``tf.distribute`` strategy
(``strategy.run(agent.train, ...)``, as tf-agents' ``Learner`` does) the
return statistics are all-reduced, so every replica normalises by the
global batch's mean and standard deviation, and the optimizer sums the
replicas' gradients of losses already divided by the global batch: the
update equals one device's on the whole batch.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.ppo import ppo_clip_agent
from tf_agents.agents.ppo import ppo_utils
from tf_agents.networks import network
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import common
from tf_agents.utils import value_ops

from adafocus_tf.config import PPOConfig
from adafocus_tf.training.ppo import rewards as rewards_lib

# PyTorch's Adam epsilon (the reference implementation's optimizer).
ADAM_EPSILON = 1e-8


def _replica_sum(x):
  """Sum of ``x`` over the replicas of the current strategy.

  Args:
    x: a tensor computed by each replica.

  Returns:
    The all-reduced sum in a replica context of several replicas, else ``x``.
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return x
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)


def global_return_moments(returns, mask):
  """Mean and unbiased standard deviation of returns over the global batch.

  Args:
    returns: [B, T] returns of this replica.
    mask: [B, T] 1 for steps that count, 0 otherwise.

  Returns:
    (mean, std) scalars, identical on every replica.
  """
  n = _replica_sum(tf.reduce_sum(mask))
  mean = _replica_sum(tf.reduce_sum(returns * mask)) / n
  # Two passes (mean, then squared deviations) for float32 accuracy.
  sq = _replica_sum(tf.reduce_sum(tf.square(returns - mean) * mask))
  return mean, tf.sqrt(sq / tf.maximum(n - 1.0, 1.0))


class AdaFocusPPOAgent(ppo_clip_agent.PPOClipAgent):
  """PPOClipAgent whose update uses normalised returns and A = R - V.

  Takes the arguments of ``PPOClipAgent``; ``make_agent`` sets them all.
  ``train`` expects ``[B, T]`` trajectories of whole episodes (one video
  each: step types FIRST, MID, ..., and next step type LAST with discount 0
  on the last step), with ``policy_info['dist_params']`` from the collect
  policy. No step is dropped: the terminal LAST time step carries no action
  and is represented only by the last step's ``next_step_type``.
  """

  def _train(self, experience, weights):
    """One PPO update (``num_epochs`` optimizer steps) on whole episodes.

    Args:
      experience: ``Trajectory`` [B, T] from the collect policy.
      weights: optional scalar, [B] (per video) or [B, T] weights; steps
        with weight 0 count neither in the return statistics nor in the
        loss.

    Returns:
      The ``LossInfo`` of the last epoch (losses before its update).
    """
    experience = self._as_trajectory(experience)
    mask = tf.cast(~experience.is_boundary(), tf.float32)
    if weights is not None:
      weights = tf.cast(weights, tf.float32)
      if weights.shape.rank == 1:  # per video
        weights = weights[:, None]
      mask *= weights
    time_steps = ts.TimeStep(step_type=experience.step_type,
                             reward=experience.reward,
                             discount=experience.discount,
                             observation=experience.observation)
    dist_params = experience.policy_info["dist_params"]
    old_dist = ppo_utils.distribution_from_spec(
        self._action_distribution_spec, dist_params,
        legacy_distribution_network=isinstance(self._actor_net,
                                               network.DistributionNetwork))
    old_log_probs = common.log_probability(old_dist, experience.action,
                                           self._action_spec)
    return self.update_episodes(time_steps, experience.action, old_log_probs,
                                mask)

  def update_episodes(self, time_steps, actions, old_log_probs, mask):
    """The method's PPO update on whole episodes, old log-probabilities given.

    What ``train`` runs once it has the collect policy's log-probabilities
    of the actions taken (the official code's ``PPO.update`` consumes them
    the same way, recorded by the acting "old" policy), and what
    ``one_update.update_once`` runs on a recorded rollout.

    Args:
      time_steps: ``TimeStep`` [B, T]: step types (FIRST, MID, ...),
        per-step rewards, discounts (0 on an episode's last step) and the
        observations.
      actions: [B, T] (or [B, T, 2]) actions taken.
      old_log_probs: [B, T] their log-probabilities under the acting policy.
      mask: float [B, T], 1 for steps that count (in the return statistics
        and the loss), 0 otherwise.

    Returns:
      The ``LossInfo`` of the last epoch (losses before its update).
    """
    # The trajectory's discount is 0 on an episode's last step, so each
    # return sums exactly that video's rewards from t on.
    returns = value_ops.discounted_return(
        time_steps.reward, self._discount_factor * time_steps.discount,
        time_major=False)
    mean, std = global_return_moments(returns, mask)
    returns = rewards_lib.normalize(returns, mean, std)

    variables = trainable_variables(self._actor_net, self._value_net)
    batch_size = tf.shape(time_steps.reward)[0]
    loss_info = None
    for _ in range(self._num_epochs):
      # Training mode, as in the loss: a batch-normalised encoder then
      # sees the same statistics in both.
      values, _ = self._collect_policy.apply_value_network(
          time_steps.observation, time_steps.step_type,
          value_state=self._collect_policy.get_initial_value_state(
              batch_size), training=True)
      advantages = tf.stop_gradient(returns - values)
      with tf.GradientTape() as tape:
        # The old distribution's parameters feed only the KL terms, which
        # PPOClipAgent leaves out (its KL betas and cutoff are 0).
        loss_info = self.get_loss(
            time_steps, actions, old_log_probs, returns, advantages,
            None, mask, self.train_step_counter, debug_summaries=False,
            training=True)
      grads = tape.gradient(loss_info.loss, variables)
      if self._gradient_clipping > 0:
        grads, _ = tf.clip_by_global_norm(grads, self._gradient_clipping)
      self._optimizer.apply_gradients(zip(grads, variables))
      self.train_step_counter.assign_add(1)
    return tf_agent.LossInfo(loss_info.loss, loss_info.extra)


def loss_terms(loss_info: tf_agent.LossInfo) -> dict:
  """The update's loss and its terms, each a scalar over the (global) batch.

  Args:
    loss_info: what ``AdaFocusPPOAgent.train`` or ``update_episodes``
      returns.

  Returns:
    {"loss": the total, "policy_loss": -mean(min(r A, clip(r) A)),
    "value_loss": value_coef * mean((V - R)^2), "entropy_loss":
    -entropy_coef * mean(entropy)}.
  """
  extra = loss_info.extra
  return {"loss": loss_info.loss,
          "policy_loss": extra.policy_gradient_loss,
          "value_loss": extra.value_estimation_loss,
          "entropy_loss": extra.entropy_regularization_loss}


def make_optimizer(cfg: PPOConfig) -> tf.keras.optimizers.Optimizer:
  """Adam with the stage's rate and betas, and PyTorch's epsilon.

  PyTorch's Adam adds epsilon to the bias-corrected root, w -= lr m_hat /
  (sqrt(v_hat) + eps); Keras' by default to the uncorrected one, which is
  epsilon / sqrt(1 - beta_2^t) in PyTorch's terms (31.6 eps at the first
  step). ``adaptive_epsilon`` scales it so that the two updates are the
  same (docs/METHOD.md, section 2.1).

  Args:
    cfg: the stage-2 config.
  """
  return tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate,
                                  beta_1=cfg.beta_1, beta_2=cfg.beta_2,
                                  epsilon=ADAM_EPSILON, adaptive_epsilon=True)


def make_agent(cfg: PPOConfig, observation_spec, action_spec, actor_net,
               value_net, optimizer: Optional[tf.keras.optimizers.Optimizer]
               = None, train_step_counter: Optional[tf.Variable] = None
               ) -> AdaFocusPPOAgent:
  """Builds the stage-2 agent with every PPO option set (see the table).

  Create it inside the strategy scope of the run.

  Args:
    cfg: the stage-2 config.
    observation_spec: spec of one glance map.
    action_spec: scalar bounded int spec of the patch index.
    actor_net: ``actor_network.ActorDistributionGruNetwork``.
    value_net: ``value_network.ValueGruNetwork``.
    optimizer: the optimizer (``make_optimizer(cfg)`` when not given; pass
      one to keep a handle on it, e.g. for checkpoints).
    train_step_counter: counts optimizer updates; created (and replicated
      with ``ONLY_FIRST_REPLICA`` aggregation, as the agent increments it
      inside ``strategy.run``) when not given.

  Returns:
    The agent; its optimizer's slots are already created.
  """
  rewards_lib.check_kind(cfg.reward)
  if train_step_counter is None:
    train_step_counter = tf.Variable(
        0, dtype=tf.int64, trainable=False, name="ppo_updates",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
  optimizer = optimizer or make_optimizer(cfg)
  agent = AdaFocusPPOAgent(
      time_step_spec=ts.time_step_spec(observation_spec),
      action_spec=action_spec,
      optimizer=optimizer,
      actor_net=actor_net,
      value_net=value_net,
      greedy_eval=True,
      importance_ratio_clipping=cfg.clip,
      lambda_value=1.0,
      discount_factor=cfg.discount,
      entropy_regularization=cfg.entropy_coef,
      policy_l2_reg=0.0,
      value_function_l2_reg=0.0,
      shared_vars_l2_reg=0.0,
      value_pred_loss_coef=cfg.value_coef,
      num_epochs=cfg.update_epochs,
      use_gae=False,
      use_td_lambda_return=False,
      normalize_rewards=False,
      reward_norm_clipping=0.0,
      normalize_observations=False,
      log_prob_clipping=0.0,
      gradient_clipping=None,
      value_clipping=None,
      check_numerics=False,
      compute_value_and_advantage_in_train=True,
      update_normalizers_in_train=False,
      aggregate_losses_across_replicas=True,
      debug_summaries=False,
      summarize_grads_and_vars=False,
      train_step_counter=train_step_counter,
      name="AdaFocusPPO")
  agent.initialize()
  # Slots exist before any restore, so a checkpoint's Adam moments load
  # eagerly and a resumed run continues exactly.
  optimizer.build(trainable_variables(actor_net, value_net))
  return agent


def trainable_variables(actor_net, value_net) -> list:
  """The policy's trained variables: actor and critic, shared ones once.

  Args:
    actor_net: the actor network.
    value_net: the value network.

  Returns:
    The variables sorted by name, so that every replica and worker lists
    them in the same order.
  """
  unique = {id(v): v for v in actor_net.trainable_weights +
            value_net.trainable_weights}
  return sorted(unique.values(), key=lambda v: v.name)

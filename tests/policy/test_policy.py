"""Stage 2: policy networks, rewards, the PPO update, trainer, distribution."""
import subprocess
import sys
import textwrap

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

import helpers
from adafocus_tf.config import PPOConfig
from adafocus_tf.data import pipeline
from adafocus_tf.models import adafocus
from adafocus_tf.models import patches
from adafocus_tf.policy import continuous_actions
from adafocus_tf.policy import discrete_actions
from adafocus_tf.policy import frame_stack
from adafocus_tf.policy import greedy
from adafocus_tf.policy import networks
from adafocus_tf.training import experiment
from adafocus_tf.training.ppo import agent as agent_lib
from adafocus_tf.training.ppo import episodes
from adafocus_tf.training.ppo import rewards

NUM_ACTIONS = 9
HIDDEN = 16
MAP_SHAPE = (2, 2, 4)
FIRST, MID, LAST = (int(ts.StepType.FIRST), int(ts.StepType.MID),
                    int(ts.StepType.LAST))


GRID = discrete_actions.DiscreteActions(NUM_ACTIONS)


def _nets(share_trunk=True, actions=GRID, **kwargs):
  obs_spec = networks.observation_spec(MAP_SHAPE)
  actor, critic = networks.build_networks(obs_spec, actions.spec, 4, HIDDEN,
                                          share_trunk=share_trunk, **kwargs)
  return obs_spec, actions.spec, actor, critic


def _sample(logits, seeds):
  return GRID.sample({"logits": logits}, seeds)


def _obs(b, t, seed=0):
  return tf.random.stateless_normal([b, t, *MAP_SHAPE], [seed, 1])


def _types(b, t):
  return tf.constant([[FIRST] + [MID] * (t - 1)] * b, tf.int32)


def _zeros(b):
  return tf.zeros([b, HIDDEN])


# -- networks ----------------------------------------------------------------
def test_networks_shapes_and_state_carry_over():
  _, _, actor, critic = _nets()
  b, t = 3, 4
  obs, types = _obs(b, t), _types(b, t)
  dist, state = actor(obs, types, network_state=_zeros(b))
  values, vstate = critic(obs, types, network_state=_zeros(b))
  assert dist.logits.shape == (b, t, NUM_ACTIONS)
  assert values.shape == (b, t)
  assert state.shape == vstate.shape == (b, HIDDEN)
  # Step by step with the state carried equals the sequence.
  s, logits = _zeros(b), []
  for i in range(t):
    d, s = actor(obs[:, i], types[:, i], network_state=s)
    assert d.logits.shape == (b, NUM_ACTIONS)
    logits.append(d.logits)
  np.testing.assert_allclose(tf.stack(logits, 1), dist.logits, atol=1e-5)
  np.testing.assert_allclose(s, state, atol=1e-5)
  # The second half continues from the first half's state...
  _, half = actor(obs[:, :2], types[:, :2], network_state=_zeros(b))
  cont, _ = actor(obs[:, 2:], types[:, 2:], network_state=half)
  np.testing.assert_allclose(cont.logits, dist.logits[:, 2:], atol=1e-5)
  # ...and the state matters.
  fresh, _ = actor(obs[:, 2:], types[:, 2:], network_state=_zeros(b))
  assert np.abs(fresh.logits - dist.logits[:, 2:]).max() > 1e-4


def test_gru_state_resets_at_episode_start():
  _, _, actor, critic = _nets()
  b, t = 2, 5
  obs = _obs(b, t, seed=3)
  junk = tf.random.stateless_normal([b, HIDDEN], [7, 7]) * 3.0
  ref, _ = actor(obs, _types(b, t), network_state=_zeros(b))
  got, _ = actor(obs, _types(b, t), network_state=junk)
  np.testing.assert_allclose(got.logits, ref.logits, atol=1e-6)
  # A new episode starting at step 2 forgets the steps before it.
  types = tf.constant([[FIRST, MID, FIRST, MID, MID]] * b, tf.int32)
  joined, _ = actor(obs, types, network_state=junk)
  alone, _ = actor(obs[:, 2:], _types(b, 3), network_state=_zeros(b))
  np.testing.assert_allclose(joined.logits[:, 2:], alone.logits, atol=1e-5)
  v_joined, _ = critic(obs, types, network_state=junk)
  v_alone, _ = critic(obs[:, 2:], _types(b, 3), network_state=_zeros(b))
  np.testing.assert_allclose(v_joined[:, 2:], v_alone, atol=1e-5)


def test_trunk_is_shared_unless_asked_otherwise():
  _, _, actor, critic = _nets()
  shared = {id(v) for v in actor.trainable_variables} & {
      id(v) for v in critic.trainable_variables}
  assert len(shared) == 6  # conv kernel, dense kernel+bias, GRU x3
  _, _, actor, critic = _nets(share_trunk=False)
  assert not {id(v) for v in actor.trainable_variables} & {
      id(v) for v in critic.trainable_variables}


# -- rewards -----------------------------------------------------------------
def test_rewards_of_each_kind_on_hand_made_confidences():
  conf = tf.constant([[0.2, 0.5, 0.4], [0.9, 0.1, 0.3]])
  base = tf.constant([[0.1, 0.6, 0.4], [0.5, 0.5, 0.5]])
  np.testing.assert_allclose(rewards.step_rewards("random", conf, base),
                             [[0.1, -0.1, 0.0], [0.4, -0.4, -0.2]], atol=1e-6)
  # conf_{-1} = 0: the first reward is conf_0.
  np.testing.assert_allclose(rewards.step_rewards("prev", conf),
                             [[0.2, 0.3, -0.1], [0.9, -0.8, 0.2]], atol=1e-6)
  np.testing.assert_allclose(rewards.step_rewards("conf", conf), conf)
  with pytest.raises(ValueError):
    rewards.step_rewards("random", conf)
  with pytest.raises(ValueError):
    rewards.step_rewards("accuracy", conf)
  logits = tf.math.log(tf.constant([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]))
  np.testing.assert_allclose(
      rewards.confidence(logits, tf.one_hot([1, 2], 3)), [0.2, 0.5],
      rtol=1e-5)


def test_discounted_and_normalised_returns():
  r = tf.constant([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
  ret = rewards.discounted_returns(r, 0.7)
  np.testing.assert_allclose(ret, [[1.98, 1.4, 2.0], [0.7, 1.0, 0.0]],
                             rtol=1e-6)
  x = ret.numpy()
  expect = (x - x.mean()) / (x.std(ddof=1) + 1e-5)
  np.testing.assert_allclose(rewards.normalize_returns(ret), expect,
                             rtol=1e-5)


# -- the PPO update ----------------------------------------------------------
def _episode(obs, actions, reward, dist_params):
  b, t = reward.shape
  step_type, next_step_type, discount = episodes.episode_step_types(b, t)
  return trajectory.Trajectory(step_type, obs, actions, dist_params,
                               next_step_type, reward, discount)


def _collect(agent, obs):
  b, t = obs.shape[:2]
  policy = agent.collect_policy
  step = policy.distribution(
      ts.TimeStep(_types(b, t), tf.zeros([b, t]), tf.ones([b, t]), obs),
      policy.get_initial_state(b))
  return step.action.logits, step.info


def test_ppo_loss_is_specs_formula():
  obs_spec, action_spec, actor, critic = _nets()
  agent = agent_lib.make_agent(PPOConfig(), obs_spec, action_spec, actor,
                               critic)
  b, t = 4, 4
  obs = _obs(b, t, seed=5)
  logits, info = _collect(agent, obs)
  actions = _sample(logits, tf.constant([[i, 0] for i in
                                                           range(b)]))
  reward = tf.random.stateless_uniform([b, t], [1, 2])
  values, _ = critic(obs, _types(b, t), network_state=_zeros(b))
  loss = agent.train(_episode(obs, actions, reward, info))
  # SPEC: R discounted with 0.7, normalised over the batch (std with n-1,
  # +1e-5); A = R - V (not renormalised); the ratio is 1 before the update.
  r = reward.numpy()
  ret = np.zeros_like(r)
  acc = np.zeros(b, np.float32)
  for i in reversed(range(t)):
    acc = r[:, i] + 0.7 * acc
    ret[:, i] = acc
  ret = (ret - ret.mean()) / (ret.std(ddof=1) + 1e-5)
  adv = ret - values.numpy()
  p = tf.nn.softmax(logits).numpy()
  entropy = -(p * np.log(p)).sum(-1)
  extra = loss.extra
  np.testing.assert_allclose(extra.policy_gradient_loss, -adv.mean(),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(extra.value_estimation_loss,
                             0.5 * np.mean((values.numpy() - ret) ** 2),
                             rtol=1e-4)
  np.testing.assert_allclose(extra.entropy_regularization_loss,
                             -0.01 * entropy.mean(), rtol=1e-4)
  np.testing.assert_allclose(
      loss.loss, -adv.mean() + 0.5 * np.mean((values.numpy() - ret) ** 2) -
      0.01 * entropy.mean(), rtol=1e-4, atol=1e-6)
  assert int(agent.train_step_counter.numpy()) == 1


def test_ppo_raises_probability_of_the_rewarded_action():
  obs_spec, action_spec, actor, critic = _nets()
  agent = agent_lib.make_agent(PPOConfig(learning_rate=1e-2), obs_spec,
                               action_spec, actor, critic)
  b, t, good = 8, 4, 3
  obs = _obs(b, t, seed=9)

  @tf.function(autograph=False)
  def update(seeds):
    logits, info = _collect(agent, obs)
    actions = _sample(logits, seeds)
    reward = tf.cast(tf.equal(actions, good), tf.float32)
    agent.train(_episode(obs, actions, reward, info))
    return tf.reduce_mean(tf.nn.softmax(logits)[..., good])

  first = float(update(tf.constant([[i, 0] for i in range(b)])))
  for k in range(1, 40):
    update(tf.constant([[i, k] for i in range(b)]))
  after = float(tf.reduce_mean(tf.nn.softmax(_collect(agent, obs)[0])[
      ..., good]))
  assert first < 2.0 / NUM_ACTIONS
  assert after > 3.0 / NUM_ACTIONS, (first, after)


def test_sampling_follows_the_logits_and_the_seeds():
  logits = tf.math.log(tf.constant([[[0.6, 0.3, 0.1]]]))
  seeds = tf.stack([tf.range(3000), tf.zeros(3000, tf.int32)], 1)
  actions = _sample(tf.tile(logits, [3000, 1, 1]), seeds)
  freq = np.bincount(actions.numpy().ravel(), minlength=3) / 3000
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.03)
  again = _sample(tf.tile(logits, [3000, 1, 1]), seeds)
  np.testing.assert_array_equal(actions, again)


# -- the trainer -------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=16, num_val=8)


def _cfg(data_dir, **overrides):
  return helpers.tiny_config(data_dir, data__num_frames=4,
                             stage2__batch_size=4, **overrides)


def _batch(cfg, data_dir):
  return next(iter(pipeline.make_dataset(cfg.data, data_dir + "/train",
                                         True, 4, seed=0)))


def _trainer(cfg, run, strategy=None):
  return experiment.make_trainer(
      cfg, 2, strategy or tf.distribute.get_strategy(), run, progress=False)


def _conf(logits, labels):
  return tf.gather(tf.nn.softmax(logits), labels, batch_dims=1)


def test_rollout_scores_both_patches_from_the_policy_state(data_dir,
                                                           tmp_path):
  cfg = _cfg(data_dir)
  t = _trainer(cfg, str(tmp_path / "run"))
  batch = _batch(cfg, data_dir)
  exp, stats = t.task.rollout(batch)
  b, steps = 4, 4
  np.testing.assert_array_equal(exp.step_type, _types(b, steps))
  np.testing.assert_array_equal(exp.next_step_type,
                                [[MID, MID, MID, LAST]] * b)
  np.testing.assert_array_equal(exp.discount, [[1, 1, 1, 0]] * b)
  assert exp.policy_info["dist_params"]["logits"].shape == (
      b, steps, cfg.model.num_actions)
  # Recompute the rewards by hand: the classifier state advances along the
  # policy's patches; the random patch is scored from the same state.
  model, frames, labels = t.task.model, batch["frames"], batch["label"]
  offsets = greedy.action_offsets(t.task.actions, exp.action, cfg)
  rand = patches.random_offsets(
      episodes.seed_stream(batch["seed"], 3), steps, cfg.data.frame_size,
      cfg.model.patch_size)
  _, g = model.glance_features(frames)
  f_pol = model.focus_features(frames, offsets)
  f_rand = model.focus_features(frames, rand)
  policy_logits = model(frames, offsets)
  state = model.classifier.initial_state(b)
  expect = []
  for i in range(steps):
    lr, _ = model.classifier.step(adafocus.fuse(g[:, i], f_rand[:, i]), state)
    lp, state = model.classifier.step(adafocus.fuse(g[:, i], f_pol[:, i]),
                                      state)
    np.testing.assert_allclose(lp, policy_logits[:, i], atol=1e-5)
    expect.append(_conf(lp, labels) - _conf(lr, labels))
  np.testing.assert_allclose(exp.reward, tf.stack(expect, 1), atol=1e-5)
  np.testing.assert_allclose(stats["final_conf"],
                             _conf(policy_logits[:, -1], labels), atol=1e-5)
  t.task.pcfg.reward = "conf"
  exp_conf, _ = t.task.rollout(batch)
  np.testing.assert_array_equal(exp_conf.action, exp.action)
  np.testing.assert_allclose(
      exp_conf.reward, tf.stack([_conf(policy_logits[:, i], labels)
                                 for i in range(steps)], 1), atol=1e-5)


def _greedy(t, batch):
  """The trainer's current policy's greedy patches, through its recognizer."""
  return t.task.recognizer.offsets(batch, t.task.recognizer.glance(batch), "policy")


def _policy_weights(t):
  return [v.numpy().copy()
          for v in agent_lib.trainable_variables(t.task.actor, t.task.critic)]


@pytest.mark.training
def test_stage2_trains_the_policy_only_and_resumes_exactly(data_dir,
                                                           tmp_path):
  cfg = _cfg(data_dir, stage2__learning_rate=1e-2)
  # A stage-1 checkpoint to start from.
  stage1 = adafocus.AdaFocus(cfg)
  stage1.build_all(cfg.data.num_frames)
  prefix = tf.train.Checkpoint(model=stage1).save(str(tmp_path / "s1/ckpt"))
  run = str(tmp_path / "run")
  t = _trainer(cfg, run)
  assert "initialised from" in t.initialize(prefix)
  for a, b in zip(stage1.variables, t.task.model.variables):
    np.testing.assert_array_equal(a, b)
  model_before = [v.numpy().copy() for v in t.task.model.variables]
  policy_before = _policy_weights(t)
  stats = t.train(max_steps=2)
  assert stats["step"] == 2 and np.isfinite(stats["train_loss"])
  for a, b in zip(model_before, t.task.model.variables):
    np.testing.assert_array_equal(a, b)
  assert all(not np.array_equal(a, b)
             for a, b in zip(policy_before, _policy_weights(t)))

  batch = _batch(cfg, data_dir)
  t2 = _trainer(cfg, run)
  assert "resumed stage 2 at step 2" in t2.initialize(prefix)
  for a, b in zip(_policy_weights(t), _policy_weights(t2)):
    np.testing.assert_array_equal(a, b)
  fmap, _ = t.task.model.glance_features(batch["frames"])
  np.testing.assert_array_equal(_collect(t.task.agent, fmap)[0],
                                _collect(t2.task.agent, fmap)[0])
  np.testing.assert_array_equal(_greedy(t, batch), _greedy(t2, batch))
  offsets = _greedy(t2, batch).numpy()
  assert offsets.shape == (4, 4, 2) and offsets.min() >= 0
  assert offsets.max() <= cfg.data.frame_size - cfg.model.patch_size
  assert t2.train(max_steps=3)["step"] == 3


_MIRRORED_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import adafocus_tf
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import helpers
from adafocus_tf.policy import action_space
from adafocus_tf.policy import greedy
from adafocus_tf.training import experiment
from adafocus_tf.training import strategy as strategy_lib
from adafocus_tf.training.ppo import agent as agent_lib

cfg = helpers.tiny_config({data!r}, data__num_frames=4, stage2__batch_size=4,
                          stage2__learning_rate=1e-2)
out, init = {{}}, None
for name in ("default", "mirrored"):
  strategy = strategy_lib.make_strategy(name)
  t = experiment.make_trainer(cfg, 2, strategy, {run!r} + name,
                             progress=False)
  t.initialize(None)
  policy = agent_lib.trainable_variables(t.task.actor, t.task.critic)
  if init is None:
    init = ([v.numpy() for v in t.task.model.variables],
            [v.numpy() for v in policy])
  else:  # the same starting point on both strategies
    for v, x in zip(t.task.model.variables, init[0]):
      v.assign(x)
    for v, x in zip(policy, init[1]):
      v.assign(x)
  out[name + "_replicas"] = strategy.num_replicas_in_sync
  out[name + "_stats"] = t.train(max_steps=3)
  for i, v in enumerate(policy):
    out[f"{{name}}_{{i}}"] = v.numpy()
for i, x in enumerate(init[1]):
  out[f"init_{{i}}"] = x
np.savez({out!r}, **{{k: np.asarray(v) if not isinstance(v, dict) else
                     np.asarray(v["train_reward"]) for k, v in out.items()}})
"""


@pytest.mark.training
def test_stage2_under_mirrored_two_cpus_matches_default(data_dir, tmp_path):
  out = str(tmp_path / "weights.npz")
  script = _MIRRORED_SCRIPT.format(tests=helpers.TESTS,
                                   data=data_dir, run=str(tmp_path / "run-"),
                                   out=out)
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  w = np.load(out)
  assert int(w["default_replicas"]) == 1 and int(w["mirrored_replicas"]) == 2
  # Same data, same sampled actions (per-video seeds), global return
  # statistics and summed gradients: the update is one device's.
  np.testing.assert_allclose(w["mirrored_stats"], w["default_stats"],
                             rtol=1e-5, atol=1e-7)
  n = len([k for k in w.files if k.startswith("init_")])
  assert n == 10
  for i in range(n):
    np.testing.assert_allclose(w[f"mirrored_{i}"], w[f"default_{i}"],
                               atol=1e-3)
  moved = max(np.abs(w[f"mirrored_{i}"] - w[f"init_{i}"]).max()
              for i in range(n))
  assert moved > 1e-2


# -- the continuous policy ---------------------------------------------------
GAUSS = continuous_actions.ContinuousActions(0.25)


def test_continuous_log_prob_closed_form_and_clamped_positions():
  _, _, actor, _ = _nets(actions=GAUSS)
  b, t = 64, 3
  obs = _obs(b, t, seed=3)
  dist, _ = actor(obs, _types(b, t), network_state=_zeros(b))
  loc = dist.mean().numpy()
  assert loc.shape == (b, t, 2) and 0 < loc.min() and loc.max() < 1
  seeds = tf.stack([tf.range(b), tf.ones(b, tf.int32)], 1)
  a = GAUSS.sample({"loc": dist.mean()}, seeds).numpy()
  raw = loc + 0.25 * np.stack([tf.random.stateless_normal(
      [t, 2], seeds[i]).numpy() for i in range(b)])
  np.testing.assert_allclose(a, raw, atol=1e-6)
  # With sigma 0.25 some samples leave the square; positions clamp them.
  assert a.min() < 0.0 or a.max() > 1.0
  np.testing.assert_allclose(GAUSS.positions(a), np.clip(raw, 0, 1),
                             atol=1e-6)
  closed = (-((a - loc) ** 2).sum(-1) / (2 * 0.25 ** 2)
            - 2 * np.log(0.25 * np.sqrt(2 * np.pi)))
  np.testing.assert_allclose(dist.log_prob(a), closed, rtol=1e-5, atol=1e-6)
  # The greedy action is the mean.
  np.testing.assert_allclose(GAUSS.greedy(dist), loc)


def test_ppo_moves_the_continuous_mean_toward_the_reward_maximum():
  obs_spec, action_spec, actor, critic = _nets(actions=GAUSS)
  agent = agent_lib.make_agent(PPOConfig(learning_rate=1e-2), obs_spec,
                               action_spec, actor, critic)
  b, t = 16, 2
  target = np.array([0.6, 0.4], np.float32)
  # The mean maximising E[reward] under sigma 0.25 and clamping (mass
  # beyond the border lands on it; see continuous_actions.py).
  best = np.array([0.63, 0.37], np.float32)
  obs = _obs(b, t, seed=4)

  def mean():
    dist, _ = actor(obs, _types(b, t), network_state=_zeros(b))
    return dist.mean()

  @tf.function(autograph=False)
  def update(seeds):
    dist, _ = actor(obs, _types(b, t), network_state=_zeros(b),
                    training=True)
    params = {"loc": dist.mean()}
    a = GAUSS.sample(params, seeds)
    reward = -tf.reduce_sum(tf.square(GAUSS.positions(a) - target), -1)
    agent.train(_episode(obs, a, reward, {"dist_params": params}))

  before = np.abs(mean().numpy() - best).mean()
  for k in range(80):
    update(tf.stack([tf.range(b), tf.fill([b], k)], 1))
  after = np.abs(mean().numpy() - best).mean()
  assert before > 0.1 and after < 0.04, (before, after)


def test_batchnorm_encoder_rollout_and_update_see_the_same_statistics():
  obs_spec, action_spec, actor, critic = _nets(actions=GAUSS, batchnorm=True)
  assert any("conv_bn" in v.name for v in actor.variables)
  agent = agent_lib.make_agent(PPOConfig(), obs_spec, action_spec, actor,
                               critic)
  b, t = 8, 3
  # Far from the batch norm's initial moving statistics (mean 0, var 1).
  obs = 5.0 + 3.0 * _obs(b, t, seed=6)
  dist, _ = actor(obs, _types(b, t), network_state=_zeros(b), training=True)
  params = {"loc": dist.mean()}
  a = GAUSS.sample(params, tf.stack([tf.range(b), tf.zeros(b, tf.int32)], 1))
  values, _ = critic(obs, _types(b, t), network_state=_zeros(b),
                     training=True)
  reward = tf.random.stateless_uniform([b, t], [3, 4])
  loss = agent.train(_episode(obs, a, reward, {"dist_params": params}))
  ret = rewards.normalize_returns(rewards.discounted_returns(reward, 0.7))
  # Ratio 1 before the update: the surrogate is -mean(A), A = R - V.
  np.testing.assert_allclose(loss.extra.policy_gradient_loss,
                             -np.mean(ret - values), rtol=1e-4, atol=1e-6)


# -- one patch per video (Something-Something) --------------------------------
def _two_stream_cfg(data_dir, **overrides):
  return helpers.tiny_two_stream_config(
      data_dir, **{"stage2__batch_size": 4, "model__temporal_shift": True,
                   "model__policy": "continuous",
                   "model__policy_batchnorm": True, **overrides})


def test_stacked_observation_puts_frame_t_channels_at_t_times_c():
  maps = tf.reshape(tf.range(2 * 3 * 1 * 1 * 2, dtype=tf.float32),
                    [2, 3, 1, 1, 2])
  stacked = frame_stack.stack_frames(maps).numpy()
  assert stacked.shape == (2, 1, 1, 1, 6)
  np.testing.assert_array_equal(stacked[1, 0, 0, 0], [6, 7, 8, 9, 10, 11])


@pytest.mark.parametrize("policy", ["continuous", "discrete"])
def test_per_video_rollout_scores_one_patch_against_a_random_one(
    data_dir, tmp_path, policy):
  cfg = _two_stream_cfg(data_dir, model__policy=policy,
                        model__num_actions=16)
  t = _trainer(cfg, str(tmp_path / "run"))
  batch = _batch(cfg, data_dir)
  exp, stats = t.task.rollout(batch)
  b, tg = 4, cfg.data.glance_frames
  np.testing.assert_array_equal(exp.step_type, [[FIRST]] * b)
  np.testing.assert_array_equal(exp.next_step_type, [[LAST]] * b)
  maps, pooled = t.task.model.glance_features(batch["glance_frames"])
  assert exp.observation.shape == (b, 1) + maps.shape[2:4] + (
      tg * maps.shape[-1],)
  np.testing.assert_allclose(exp.observation[:, 0, ..., :maps.shape[-1]],
                             maps[:, 0], atol=1e-6)
  action_shape = (b, 1, 2) if policy == "continuous" else (b, 1)
  assert exp.action.shape == action_shape
  # The reward: the two-stream prediction's confidence with the policy's
  # patch (the same crop from every focus frame) minus with a random one.
  offsets = greedy.action_offsets(t.task.actions, exp.action, cfg)
  rand = patches.random_offsets(
      episodes.seed_stream(batch["seed"], 3), 1, cfg.data.frame_size,
      cfg.model.patch_size)
  labels = batch["label"]
  mine = t.task.model(batch["glance_frames"], batch["focus_frames"], offsets)
  other = t.task.model(batch["glance_frames"], batch["focus_frames"], rand)
  np.testing.assert_allclose(
      exp.reward[:, 0], _conf(mine[:, 0], labels) - _conf(other[:, 0], labels),
      atol=1e-5)
  np.testing.assert_allclose(stats["final_conf"], _conf(mine[:, 0], labels),
                             atol=1e-5)


def test_per_video_stage2_trains_and_the_greedy_policy_gives_one_box(
    data_dir, tmp_path):
  cfg = _two_stream_cfg(data_dir, stage2__learning_rate=1e-2)
  t = _trainer(cfg, str(tmp_path / "run"))
  t.initialize(None)
  before = _policy_weights(t)
  assert t.train(max_steps=2)["step"] == 2
  names = [v.name for v in agent_lib.trainable_variables(t.task.actor, t.task.critic)]
  unchanged = [n for n, a, b in zip(names, before, _policy_weights(t))
               if np.array_equal(a, b)]
  # Episodes of one step start from a zero GRU state: the recurrent kernel
  # gets no gradient (the reference's GRU is as idle on these videos).
  assert len(unchanged) == 1 and "recurrent_kernel" in unchanged[0], unchanged
  batch = _batch(cfg, data_dir)
  offsets = _greedy(t, batch).numpy()
  assert offsets.shape == (4, 1, 2)
  assert 0 <= offsets.min() and offsets.max() <= (
      cfg.data.frame_size - cfg.model.patch_size)
  # The greedy continuous action is the Gaussian's mean.
  obs = t.task.observations(t.task.recognizer.glance(batch))
  dist, _ = t.task.actor(obs, tf.fill([4, 1], FIRST), t.task.actor.get_initial_state(4))
  np.testing.assert_array_equal(offsets, patches.position_to_offset(
      dist.mean(), cfg.data.frame_size, cfg.model.patch_size))

"""A PyTorch re-creation of the official AdaFocus (V1) PPO update.

Run in the torch interpreter, like ``torch_reference.py`` (whose
``ActorCritic``, with the official module names, it updates):

  python tests/convert/torch_ppo_v1.py --spec=SPEC.json --out=DIR

It follows, in meaning, the official code of blackfeather-wang/AdaFocus @
8c0f8d2, folder "Experiments on ActivityNet, FCVID and Mini-Kinetics":

  * ``main_dist.py``, ``train`` (``train_stage == 2``): the policy acts
    frame by frame (``GFV.one_step_act`` -> ``Focuser.forward`` ->
    ``PPO.select_action``), each step's reward ([1, B]) is appended to
    ``memory.rewards``, and ``focuser.update()`` runs ``PPO.update(memory)``
    once per batch, then clears the memory;
  * ``models/gfv_net.py``: ``GFV.train_mode`` puts ``policy`` and
    ``policy_old`` in training mode; ``Focuser`` builds ``PPO`` with
    ``gamma`` and ``policy_lr`` from the config and the defaults
    ``betas=(0.9, 0.999)``, ``K_epochs=1``, ``eps_clip=0.2``;
  * ``models/ppo.py``:
      - ``ActorCritic.act`` (``training=True``): the GRU carried from a zero
        state, ``Categorical(softmax probs)``, a sampled action and its
        log-probability stored with the state (the glance map) in the
        ``Memory`` (``act`` here);
      - ``PPO.update``: discounted returns over the steps (reversed
        ``memory.rewards``, ``R = r + gamma R``, from 0), standardised by
        their mean and unbiased standard deviation over all T x B entries
        (``+ 1e-5``); for ``K_epochs`` epochs: ``ActorCritic.evaluate``
        (the encoder on all T x B states, the GRU over the sequence from
        zeros, the actions' log-probabilities, the values and the
        entropies; ``evaluate`` here), ``ratios = exp(logp - old_logp)``,
        ``advantages = R - V.detach()``, ``loss = -min(r A, clamp(r, 1 -
        eps, 1 + eps) A) + 0.5 MSE(V, R) - 0.01 entropy``, ``loss.mean()``,
        one step of ``Adam(policy.parameters(), lr, betas)`` (``update``
        here); then ``policy_old`` copies ``policy``.

The loss is recorded as its three means (``mean(loss) = mean(-min(...)) +
0.5 MSE - 0.01 mean(entropy)``): ``policy_loss``, ``value_loss``,
``entropy_loss`` and their sum ``loss``.

One random V1 model (backbones at PyTorch's initialisation: the update
never reads them; a random policy, ``torch_reference.randomise``) is saved
once as ``<name>_before.pth.tar`` (an official stage-3 file: glancer,
focuser with its policy copies, classifier, policy; float32). Each variant
then takes one rollout and one update from those weights, in float32 or
float64 (the policy in double; the observations, rewards and weights are
float32 values all the same, so the other side can be given them exactly)
and saves ``<name>_<variant>_after.pth.tar`` (the policy after the update,
copied into ``policy_old`` as the official update ends) and
``<name>_<variant>.npz``: the rollout batch-major (``observations`` NHWC
[B, T, h, w, C], ``actions`` [B, T], ``old_log_probs`` [B, T], ``rewards``
[B, T]), the loss terms, ``returns`` (normalised), ``ratios``.

A variant is ``fresh`` (``policy_old`` acts with the policy's weights, as
in the official run, where ``K_epochs=1`` makes every ratio 1) or ``stale``
(``policy_old``'s weights perturbed before it acts, so that the ratios
spread and the clip acts on some steps).

Imports nothing of TensorFlow.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
from torch.distributions import Categorical

import torch_reference as ref
import torch_train_v1

# ``models/ppo.py``: the return normalisation's epsilon and the loss's
# weights of the value and entropy terms.
RETURN_EPSILON = 1e-5
VALUE_COEF = 0.5
ENTROPY_COEF = 0.01


def act(policy: ref.ActorCritic, states, generator: torch.Generator):
  """``ActorCritic.act`` with ``training=True`` over T steps.

  Args:
    policy: the acting policy (``policy_old``).
    states: [T, B, C, H, W] glance maps.
    generator: the sampling's random numbers.

  Returns:
    (actions [T, B], log-probabilities [T, B]).
  """
  steps, batch = states.shape[:2]
  hidden = torch.zeros(1, batch, policy.hidden, dtype=states.dtype)
  actions, log_probs = [], []
  with torch.no_grad():
    for t in range(steps):
      state = policy.state_encoder(states[t])
      out, hidden = policy.gru(state.view(1, batch, -1), hidden)
      dist = Categorical(policy.actor(out[0]))
      # Categorical.sample with an explicit generator: one draw per video.
      action = torch.multinomial(dist.probs, 1, generator=generator)[:, 0]
      actions.append(action)
      log_probs.append(dist.log_prob(action))
  return torch.stack(actions), torch.stack(log_probs)


def evaluate(policy: ref.ActorCritic, states, actions):
  """``ActorCritic.evaluate``: log-probabilities, values, entropies [T, B].

  Args:
    policy: the policy being updated.
    states: [T, B, C, H, W] glance maps.
    actions: [T, B] actions taken.
  """
  steps, batch = states.shape[:2]
  encoded = policy.state_encoder(states.reshape(steps * batch,
                                                *states.shape[2:]))
  encoded = encoded.view(steps, batch, -1)
  out, _ = policy.gru(encoded, torch.zeros(1, batch, encoded.shape[2],
                                           dtype=encoded.dtype))
  out = out.reshape(steps * batch, -1)
  dist = Categorical(policy.actor(out))
  log_probs = dist.log_prob(actions.reshape(steps * batch))
  values = policy.critic(out)
  return (log_probs.view(steps, batch), values.view(steps, batch),
          dist.entropy().view(steps, batch))


def discounted_returns(rewards, gamma: float):
  """``PPO.update``'s returns [T, B], normalised, from rewards [T, B]."""
  returns, running = [], 0
  for reward in reversed(list(rewards)):
    running = reward + gamma * running
    returns.insert(0, running)
  returns = torch.stack(returns)
  return (returns - returns.mean()) / (returns.std() + RETURN_EPSILON)


def update(policy: ref.ActorCritic, optimizer: torch.optim.Optimizer,
           states, actions, old_log_probs, rewards, gamma: float,
           eps_clip: float, epochs: int) -> dict:
  """``PPO.update``: ``epochs`` Adam steps on the rollout.

  Args:
    policy: the policy being updated.
    optimizer: its Adam.
    states: [T, B, C, H, W].
    actions: [T, B].
    old_log_probs: [T, B].
    rewards: [T, B].
    gamma: the discount.
    eps_clip: the ratio clip.
    epochs: ``K_epochs``.

  Returns:
    The last epoch's terms (before its step), ``returns`` and ``ratios``.
  """
  returns = discounted_returns(rewards, gamma)
  out = {}
  for _ in range(epochs):
    log_probs, values, entropy = evaluate(policy, states, actions)
    ratios = torch.exp(log_probs - old_log_probs.detach())
    advantages = returns - values.detach()
    surr1 = ratios * advantages
    surr2 = torch.clamp(ratios, 1 - eps_clip, 1 + eps_clip) * advantages
    terms = {"policy_loss": (-torch.min(surr1, surr2)).mean(),
             "value_loss": VALUE_COEF * torch.nn.functional.mse_loss(
                 values, returns),
             "entropy_loss": -ENTROPY_COEF * entropy.mean()}
    loss = (-torch.min(surr1, surr2)
            + VALUE_COEF * torch.nn.functional.mse_loss(values, returns)
            - ENTROPY_COEF * entropy).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    out = {k: float(v.detach()) for k, v in terms.items()}
    out.update(loss=float(loss.detach()), returns=returns.numpy(),
               ratios=ratios.detach().numpy())
  return out


def _perturb(policy: ref.ActorCritic, scale: float, seed: int) -> None:
  """Adds relative Gaussian noise to every weight (a stale ``policy_old``)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in policy.parameters():
      p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g,
                                                  dtype=p.dtype))


def case_v1_ppo_update(out: str, name: str, variants, seed: int = 0,
                       batch: int = 3, frames: int = 4,
                       frame_size: int = 64, patch: int = 32,
                       classes: int = 5, hidden: int = 24,
                       num_actions: int = 49, policy_hidden: int = 20,
                       policy_conv: int = 32, learning_rate: float = 3e-4,
                       beta_1: float = 0.9, beta_2: float = 0.999,
                       gamma: float = 0.7, clip: float = 0.2,
                       epochs: int = 1) -> None:
  """One random V1 model, then one rollout and update per variant.

  Args:
    out: output directory.
    name: file stem.
    variants: list of dicts: ``name`` (the variant's file stem suffix),
      ``dtype`` (``float32`` or ``float64``), ``stale`` (perturb
      ``policy_old`` before it acts).
    seed: random seed.
    batch: B videos.
    frames: T.
    frame_size: S.
    patch: P.
    classes: C.
    hidden: the classifier GRU's units.
    num_actions: the policy's grid.
    policy_hidden: the policy's width.
    policy_conv: the policy encoder's channels.
    learning_rate: ``policy_lr``.
    beta_1: Adam's first beta.
    beta_2: Adam's second beta.
    gamma: ``gamma``.
    clip: ``eps_clip``.
    epochs: ``K_epochs``.
  """
  torch.manual_seed(seed)
  model = torch_train_v1.GFV(classes, hidden, frame_size, patch, True,
                             num_actions, policy_hidden, policy_conv)
  ref.randomise(model.holder.policy, None, seed + 2)
  model.holder.sync()
  model.eval()
  before = model.holder
  torch.save(ref.v1_checkpoint(model.glancer, model.focuser,
                               model.classifier, model.holder),
             os.path.join(out, f"{name}_before.pth.tar"))
  side = -(-frame_size // 32)
  rng = np.random.default_rng(seed)
  # Glance maps are ReLU6 outputs: non-negative.
  states = rng.uniform(0, 2, (frames, batch, torch_train_v1.GLANCE_CHANNELS,
                              side, side)).astype(np.float32)
  # Rewards of the "random" kind: differences of two probabilities.
  rewards = rng.uniform(-0.5, 0.5, (frames, batch)).astype(np.float32)
  for variant in variants:
    wide = torch.float64 if variant["dtype"] == "float64" else torch.float32
    holder = copy.deepcopy(before).to(wide)
    # GFV.train_mode for stage 2.
    holder.policy.train()
    holder.policy_old.train()
    if variant["stale"]:
      _perturb(holder.policy_old, 0.3, seed + 5)
    x = torch.from_numpy(states).to(wide)
    actions, old_log_probs = act(holder.policy_old, x,
                                 torch.Generator().manual_seed(seed + 7))
    optimizer = torch.optim.Adam(holder.policy.parameters(),
                                 lr=learning_rate, betas=(beta_1, beta_2))
    result = update(holder.policy, optimizer, x, actions, old_log_probs,
                    torch.from_numpy(rewards).to(wide), gamma, clip, epochs)
    holder.policy_old.load_state_dict(holder.policy.state_dict())
    stem = f"{name}_{variant['name']}"
    # The focuser's policy copies are this variant's (the converter checks
    # them against the ``policy`` entry).
    model.focuser.policy = holder
    torch.save(ref.v1_checkpoint(model.glancer, model.focuser,
                                 model.classifier, holder),
               os.path.join(out, f"{stem}_after.pth.tar"))
    model.focuser.policy = before
    np.savez(
        os.path.join(out, f"{stem}.npz"),
        observations=np.moveaxis(states, 2, -1).swapaxes(0, 1),
        actions=actions.numpy().T.astype(np.int32),
        old_log_probs=old_log_probs.numpy().T, rewards=rewards.T,
        returns=result.pop("returns").T, ratios=result.pop("ratios").T,
        **{f"term_{k}": v for k, v in result.items()})


CASES = {"v1_ppo_update": case_v1_ppo_update}


if __name__ == "__main__":
  ref.main(cases=CASES)

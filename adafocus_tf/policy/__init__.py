"""Stage 2: the recurrent patch policy trained with tf-agents' PPO.

  networks.py  the GRU actor and critic (tf-agents ``Network``s)
  rewards.py   per-step rewards, discounted and normalised returns
  agent.py     the PPOClipAgent, with SPEC's return and advantage maths
  trainer.py   ``PolicyTrainer``: rollouts on batches of videos, updates,
               checkpoints, and the greedy ``policy_fn`` for stage 3

Import ``adafocus_tf`` first (it selects Keras 2, which tf-agents needs).
"""

"""Stage 2: the recurrent patch policy trained with tf-agents' PPO.

  rewards.py     per-step rewards, discounted and normalised returns
  agent.py       the PPOClipAgent, with the method's return and advantage
                 maths
  trainer.py     ``PolicyTrainer``: rollouts on batches of videos through
                 the recognizer, updates, checkpoints
  one_update.py  exactly one update of the trainer, on a rollout given
"""

"""The PPO stage's pieces (the stage itself is
``training/tasks/policy_task.py``).

  rewards.py     per-step rewards, discounted and normalised returns
  agent.py       the PPOClipAgent, with the method's return and advantage
                 maths
  episodes.py    videos as tf-agents episodes, per-video seed streams
  one_update.py  exactly one update of the stage, on a rollout given
"""

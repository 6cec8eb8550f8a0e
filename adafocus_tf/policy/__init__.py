"""Where the patch goes: the policy acting, and the baselines it is judged by.

  action_space.py  a grid of positions (discrete) or a Gaussian over them
                   (continuous): sampling, the greedy action, positions
  networks.py      the recurrent actor and critic (tf-agents networks)
  greedy.py        the trained actor acting greedily (what a run uses)
  patch_choice.py  random, centre and oracle patches

Training the policy (PPO) lives in ``adafocus_tf.training.ppo``. Import
``adafocus_tf`` first (it selects Keras 2, which tf-agents needs).
"""

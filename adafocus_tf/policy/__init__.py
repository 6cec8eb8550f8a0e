"""Where the patch goes: the policy acting, and the baselines it is judged by.

  action_space.py        a config's action space: a grid of positions
                         (discrete_actions.py) or a Gaussian over them
                         (continuous_actions.py): sampling, the greedy
                         action, positions
  networks.py            a config's recurrent actor and critic (tf-agents
                         networks): actor_network.py and value_network.py
                         (trunk_and_head.py) over the encoder and GRU of
                         policy_trunk.py
  greedy.py              the trained actor acting greedily (what a run uses)
  frame_stack.py         a video's glance maps stacked on channels (what
                         the per-video policies observe)
  patch_choice.py        random, centre and oracle patches
  position_policy.py     the encoder AdaFocusV2's deterministic position
                         policies share: recurrent_position_policy.py (v2)
                         and video_position_policy.py (v2_tsm)

Training the policy (PPO) lives in ``adafocus_tf.training.ppo``. Import
``adafocus_tf`` first (it selects Keras 2, which tf-agents needs).
"""

"""Training a run: stages 0-3 under any tf.distribute strategy.

  experiment.py  the stages of a run in order (resume, skip finished ones)
  supervised.py  stages 0, 1 and 3
  ppo/           stage 2, the patch policy
  loop.py        the epoch/step loop every stage shares
  step_loss.py   a step's loss and the terms it is made of
  one_step.py    exactly one optimizer step of a stage, draws given
  optim.py       SGD with per-group learning rates and weight decay
  strategy.py    tf.distribute strategies
  summaries.py   TensorBoard patch images
"""

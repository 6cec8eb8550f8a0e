"""Training a run: the stages of its family's plan under any tf.distribute
strategy.

  experiment.py     the stages of a run in order (resume, skip finished ones)
  stage_trainer.py  the one trainer: a task under a strategy, the epoch and
                    step loop, checkpoints, resume, progress, summaries
  tasks/            what each stage is (``Task``): backbones (stage 0),
                    patches (stages 1 and 3), the PPO policy (stage 2),
                    end to end (AdaFocusV2)
  ppo/              the PPO agent, rewards and episodes of the policy stage
  stage_inputs.py   a stage's data, steps and targets
  step_loss.py      a step's loss and the terms it is made of
  one_step.py       exactly one optimizer step of a stage, draws given
  optim.py          SGD with per-group learning rates and weight decay
  strategy.py       tf.distribute strategies
  summaries.py      TensorBoard patch images
"""

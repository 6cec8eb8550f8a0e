"""Training: strategies, optimisers, checkpoints, stages, evaluation."""

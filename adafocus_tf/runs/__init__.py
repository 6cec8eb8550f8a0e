"""Run directories: their layout, configs and checkpoints (WORKSPACE.md)."""

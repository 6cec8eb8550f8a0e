"""Run directories (WORKSPACE.md): their layout, configs and checkpoints.

  run_dir.py      where a run keeps what (config, stages, logs, metrics)
  run_config.py   which settings a run may change when it is resumed
  checkpoints.py  saving, finding and restoring stage checkpoints
  data_check.py   prepared data against the classes a run uses
"""

"""Run directories (WORKSPACE.md): their layout, configs and checkpoints.

  run_dir.py      where a run keeps what (config, stages, logs, metrics)
  run_config.py   which settings a run may change when it is resumed
  checkpoints.py  saving, finding, digesting and restoring stage checkpoints
  final_weights.py  which checkpoints tools use (the last finished stage's)
  run_lock.py     one trainer per run directory (a lock; a lease on s3://)
  data_check.py   prepared data against the classes a run uses
"""

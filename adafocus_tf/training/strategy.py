"""tf.distribute strategies chosen by name."""
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the strategy ``name``.

  Args:
    name: ``default`` (one device), ``mirrored`` (all local GPUs, or all
      logical CPU devices when there is no GPU) or ``multi_worker``
      (``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``).

  Raises:
    ValueError: an unknown name.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [
        d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (the chief, or worker 0)."""
  return task_id(strategy) is None or _is_chief_task(strategy)


def task_id(strategy: tf.distribute.Strategy):
  """This worker's index in a multi-worker cluster, or None outside one."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return None
  return resolver.task_id


def _is_chief_task(strategy) -> bool:
  resolver = strategy.cluster_resolver
  cluster = resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0 and
          "chief" not in cluster)

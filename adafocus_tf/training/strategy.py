"""tf.distribute strategies chosen by name."""
import tensorflow as tf

from adafocus_tf.training import cluster

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str,
                  cluster_timeout_s: float = cluster.DEFAULT_JOIN_TIMEOUT_S
                  ) -> tf.distribute.Strategy:
  """Returns the strategy ``name``.

  Args:
    name: ``default`` (one device), ``mirrored`` (all local GPUs, or all
      logical CPU devices when there is no GPU) or ``multi_worker``
      (``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``, once
      every worker joined: ``cluster.join``).
    cluster_timeout_s: ``multi_worker``: seconds to wait for the other
      workers (past them, one error line naming those that do not answer,
      and the process ends).

  Raises:
    ValueError: an unknown name.
    cluster.ClusterError: a ``TF_CONFIG`` naming an address twice or a
      task outside its cluster.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [
        d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return cluster.join(cluster_timeout_s)
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
  spec = resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0 and
          "chief" not in spec)

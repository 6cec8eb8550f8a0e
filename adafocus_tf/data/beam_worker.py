"""One worker process of the DirectRunner's engine, as preparation starts it.

Beam's own worker entry point (``apache_beam.runners.worker.
sdk_worker_main``) does the work; this keeps its start-up off the terminal
and ends the process cleanly:

  * Importing Beam logs a warning about Google Cloud client libraries on
    the root logger, which, having no handler yet, would configure logging
    to stderr, and every INFO line of the worker's start-up would follow
    it (before the pipeline options set the worker's level). With a handler
    in place nothing is printed; the worker's log records still reach the
    runner through Beam's logging service, where the preparation's level
    applies.
  * A worker that wrote to S3 would abort in tensorflow-io's C++ teardown
    as it exits (``io_utils.exit_process``); its work is done by then.

  python -m adafocus_tf.data.beam_worker   (started by the runner)
"""
import logging
import sys


def main() -> None:
  """Runs one Beam SDK worker with the root logger already handled."""
  logging.getLogger().addHandler(logging.NullHandler())
  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.worker import sdk_worker_main
  status = 0
  try:
    sdk_worker_main.main(sys.argv)
  except SystemExit as e:
    status = e.code if isinstance(e.code, int) else 1
  if "tensorflow_io" in sys.modules:
    from adafocus_tf import io_utils
    io_utils.exit_process(status)
  sys.exit(status)


if __name__ == "__main__":
  main()

"""The error every command-line tool reports as one line.

Raise ``RefusedError`` (or a subclass) for a request the program refuses or
an input it cannot use, found before anything wrong was written: a locked
run, stale early-exit thresholds, an unfinished stage, a corrupt shard, a
config value of the wrong type. ``cli.common.run_main`` prints
``error: <message>`` and exits with status 2, without a traceback; a bug
still shows its traceback (status 1).
"""


class RefusedError(Exception):
  """A request refused or an input unusable; str() is the whole message."""

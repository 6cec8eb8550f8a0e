"""The ``adafocus-prepare`` command as a script:

  python datasets/prepare.py --help

The command is ``adafocus_tf/cli/prepare.py``; the package must be
installed (``pip install -e .``).
"""
import sys

if __name__ == "__main__":
  try:
    from adafocus_tf.cli import prepare
  except ModuleNotFoundError as e:
    if e.name != "adafocus_tf":
      raise
    sys.exit("error: the adafocus_tf package is not importable; install it "
             "with `pip install -e .` from the repository root")
  prepare.run()

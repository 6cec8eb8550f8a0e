"""The ``adafocus-flops`` command as a script:

  python launch/flops.py --help

The command is ``adafocus_tf/cli/flops.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import flops
  flops.run()

"""The ``adafocus-train`` command as a script:

  python launch/train.py --help

The command is ``adafocus_tf/cli/train.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import train
  train.run()

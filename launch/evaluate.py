"""The ``adafocus-evaluate`` command as a script:

  python launch/evaluate.py --help

The command is ``adafocus_tf/cli/evaluate.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import evaluate
  evaluate.run()

"""The ``adafocus-synthetic`` command as a script:

  python datasets/synthetic.py --help

The command is ``adafocus_tf/cli/synthetic.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import synthetic
  synthetic.run()

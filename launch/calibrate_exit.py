"""The ``adafocus-calibrate-exit`` command as a script:

  python launch/calibrate_exit.py --help

The command is ``adafocus_tf/cli/calibrate_exit.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import calibrate_exit
  calibrate_exit.run()

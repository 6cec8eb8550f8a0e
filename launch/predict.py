"""The ``adafocus-predict`` command as a script:

  python launch/predict.py --help

The command is ``adafocus_tf/cli/predict.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import predict
  predict.run()

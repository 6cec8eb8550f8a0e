"""The ``adafocus-convert`` command as a script:

  python launch/convert_checkpoint.py --help

The command is ``adafocus_tf/cli/convert.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import convert
  convert.run()

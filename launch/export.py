"""The ``adafocus-export`` command as a script:

  python launch/export.py --help

The command is ``adafocus_tf/cli/export.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import export
  export.run()

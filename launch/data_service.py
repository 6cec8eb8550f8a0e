"""The ``adafocus-data-service`` command as a script:

  python launch/data_service.py --help

The command is ``adafocus_tf/cli/data_service.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import data_service
  data_service.run()

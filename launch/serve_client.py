"""The ``adafocus-serve-client`` command as a script:

  python launch/serve_client.py --help

The command is ``adafocus_tf/cli/serve_client.py``; the package must be
installed (``pip install -e .``).
"""
if __name__ == "__main__":
  from adafocus_tf.cli import serve_client
  serve_client.run()

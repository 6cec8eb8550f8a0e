"""The ``adafocus-profile`` command as a script:

  python launch/profile.py --help

The command is ``adafocus_tf/cli/profile.py``; the package must be
installed (``pip install -e .``).

While a script of launch/ runs, this folder is first on ``sys.path``, so
``import profile`` finds this file instead of the standard library's
``profile``, which ``cProfile`` imports (and tf-agents imports cProfile; so
does absl's --run_with_profiling). Imported under that name, this module
therefore puts the standard library's ``profile`` in its place: the import
system hands out what ``sys.modules`` holds once the module ran.
"""
import importlib.machinery
import importlib.util
import sys
import sysconfig

if __name__ == "__main__":
  from adafocus_tf.cli import profile
  profile.run()
elif __name__ == "profile":
  _spec = importlib.machinery.PathFinder.find_spec(
      __name__, [sysconfig.get_path("stdlib")])
  _module = importlib.util.module_from_spec(_spec)
  sys.modules[__name__] = _module
  _spec.loader.exec_module(_module)

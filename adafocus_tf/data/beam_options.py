"""The Beam runner and pipeline options of a preparation, checked up front.

``pipeline_options`` turns ``--runner``, ``--workers`` and the Beam pipeline
options passed through (``-- --project=... --region=...``) into Beam's
``PipelineOptions`` and the runner, or fails with one line naming what Beam
does not accept: an unknown runner, an option no Beam options class defines,
a value an option refuses, or what the runner's own validation rejects.
This happens before anything is written. Beam itself would only log
unknown options and carry on ("Discarding unparseable args") and end the
process on a bad value (argparse's ``SystemExit``).

The DirectRunner is the default. Beam 2.77's ``DirectRunner`` first tries
to download and run the Prism runner (a Go binary, from GitHub) and falls
back to its Python engine, the ``FnApiRunner``, when that fails; here the
DirectRunner is always that Python engine, offline and the same every
time: ``workers`` > 1 runs it in that many worker processes (started as
``beam_worker``), 1 in this process. Options passed through win over these
defaults (``--direct_running_mode=multi_processing`` starts Beam's own
worker processes instead). ``--runner=PrismRunner`` asks for Prism.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence, Tuple

from apache_beam.options import pipeline_options as beam_options
from apache_beam.options import pipeline_options_validator
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners import runner as beam_runner
from apache_beam.runners.portability import portable_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.transforms import environments

DEFAULT_RUNNER = "DirectRunner"
# The names create_runner resolves to the DirectRunner (lower case).
DIRECT_NAMES = ("direct", "directrunner",
                "apache_beam.runners.direct.direct_runner.directrunner")
# The engine's running mode that keeps the worker environment it is given
# (the other two replace it with their own).
ENGINE_MODE = "in_memory"
WORKER_COMMAND = f"{sys.executable} -m adafocus_tf.data.beam_worker"
QUIET_WORKERS = "--default_sdk_harness_log_level=ERROR"
# What the engine warns when workers > 1 and the running mode is
# ENGINE_MODE; with the worker environment given here the workers are
# processes all the same.
_MODE_WARNING = "If direct_num_workers is not equal to 1"
logging.getLogger(fn_runner.__name__).addFilter(
    lambda record: not record.getMessage().startswith(_MODE_WARNING))


class OptionsError(ValueError):
  """A runner or pipeline option Beam does not accept."""


class _StrictParser(beam_options._BeamArgumentParser):  # pylint: disable=protected-access
  """Beam's options parser, raising instead of printing usage and exiting."""

  def error(self, message):
    raise OptionsError(f"Beam refuses the pipeline options: {message}")


def _check_known(flags: Sequence[str]) -> None:
  """Raises OptionsError for an option or value no Beam options class takes.

  Args:
    flags: the pipeline options, ``--name=value`` or ``--name value``.
  """
  parser = _StrictParser(allow_abbrev=False)
  for cls in beam_options.PipelineOptions.__subclasses__():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  _, unknown = parser.parse_known_args(list(flags))
  if unknown:
    raise OptionsError(f"Beam does not know the pipeline option(s) "
                       f"{' '.join(unknown)}")


def direct_defaults(workers: int) -> list:
  """The DirectRunner options that run it on ``workers`` workers.

  Args:
    workers: worker processes (1: in this process).
  """
  return [f"--direct_num_workers={workers}",
          f"--direct_running_mode={ENGINE_MODE}"]


def _direct_engine(options: beam_options.PipelineOptions):
  """The DirectRunner's Python engine, its workers started as beam_worker."""
  workers = options.view_as(beam_options.DirectOptions).direct_num_workers
  environment = (
      environments.SubprocessSDKEnvironment.from_command_string(
          WORKER_COMMAND) if workers != 1 else None)
  # The workers read the pipeline options (their log level) from here, as
  # the DirectRunner passes them.
  encoded = portable_runner.JobServiceHandle.encode_pipeline_options(
      options.get_all_options())
  provision = fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
  return fn_runner.FnApiRunner(default_environment=environment,
                               provision_info=provision)


def pipeline_options(runner: str, workers: int, passed: Sequence[str],
                     quiet: bool = True
                     ) -> Tuple[beam_options.PipelineOptions, object]:
  """The checked pipeline options and the runner to run them on.

  Args:
    runner: a runner name Beam knows (``DirectRunner``, ``DataflowRunner``,
      ``FlinkRunner``, ``SparkRunner``, ...) or a ``module.Class`` path.
    workers: DirectRunner worker processes.
    passed: further Beam pipeline options, as on Beam's command line.
    quiet: workers log warnings and errors only (Beam's workers log every
      channel they open at INFO).

  Returns:
    ``(options, runner instance)``.

  Raises:
    OptionsError: an unknown runner (or one whose package is missing), an
      unknown option, a refused value, or options the runner's validation
      rejects; the message is one line naming it.
  """
  flags = [f"--runner={runner}", *direct_defaults(workers),
           *([QUIET_WORKERS] if quiet else []), *passed]
  _check_known(flags)
  options = beam_options.PipelineOptions(flags)
  name = options.view_as(beam_options.StandardOptions).runner
  if name.lower() in DIRECT_NAMES:
    return options, _direct_engine(options)
  try:
    instance = beam_runner.create_runner(name)
  except ValueError:
    known = beam_options.StandardOptions.KNOWN_RUNNER_NAMES
    raise OptionsError(
        f"--runner={name}: Beam does not know this runner (one of "
        f"{', '.join(known)}, or a module.Class path)") from None
  except (ImportError, AttributeError) as e:
    raise OptionsError(f"--runner={name}: cannot load it "
                       f"({type(e).__name__}: {e})") from None
  errors = pipeline_options_validator.PipelineOptionsValidator(
      options, instance).validate()
  if errors:
    raise OptionsError(f"--runner={name} rejects the pipeline options: "
                       f"{'; '.join(' '.join(e.split()) for e in errors)}")
  return options, instance

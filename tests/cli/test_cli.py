"""The command-line tools (adafocus_tf/cli): console scripts, shared flags,
--help, train's --config_file and its one-line errors.

The --help checks run every command through its module's ``run`` (what a
console script calls) and, when this tree's console scripts are installed
(``pip install -e .``), through the installed scripts too.
"""
import ast
import collections
import concurrent.futures
import importlib
import json
import os
import subprocess
import sys
import sysconfig

from absl import flags
import pytest
import yaml

from adafocus_tf import cli
from adafocus_tf.cli import common
import helpers

FLAGS = flags.FLAGS
MODULES = {c: importlib.import_module(f"adafocus_tf.cli.{c}")
           for c in cli.COMMANDS}
# What --help shows of a command's own default or choices (Command.run
# applies them to the shared flag).
HELP_SHOWS = {
    "train": ["(default: 'synthetic')",
              "<default|mirrored|multi_worker>: tf.distribute"],
    "flops": ["(default: 'actnet')"],
    "prepare": ["<minik|kinetics|sthv1|sthv2|actnet|fcvid|custom|jester>: "
                "train, flops",
                "(default: '360')", "(default: '64')"],
    "synthetic": ["(default: '1234')", "(default: '200')",
                  "<textures|objects>: Which dataset"],
    "evaluate": ["<default|mirrored>: tf.distribute"],
    "predict": ["<auto|policy|centre|random>: Patch choice"],
    "profile": ["(default: '8')", "<auto|policy|centre>: Patch choice"],
    "serve_client": ["(default: '0')"],
}


def _setup_scripts():
  """The ``console_scripts`` that setup.py declares."""
  tree = ast.parse(open(os.path.join(helpers.REPO, "setup.py")).read())
  for node in tree.body:
    if (isinstance(node, ast.Assign) and
        node.targets[0].id == "CONSOLE_SCRIPTS"):
      return ast.literal_eval(node.value)
  raise AssertionError("setup.py has no CONSOLE_SCRIPTS")


def test_setup_declares_a_console_script_per_command():
  assert _setup_scripts() == [
      f"{cli.script_name(c)} = adafocus_tf.cli.{c}:run"
      for c in cli.COMMANDS]
  assert cli.script_name("calibrate_exit") == "adafocus-calibrate-exit"
  for command, module in MODULES.items():
    assert callable(module.run) and callable(module.main), command


def test_shared_flags_are_defined_once_for_all_their_commands():
  # Importing every command in one process (above) raised no
  # DuplicateFlagError; each shared flag is one holder of one flag.
  users = collections.defaultdict(list)
  for command, module in MODULES.items():
    for name, holder in module.COMMAND.shared.items():
      users[name].append((command, holder))
  assert sorted(users) == sorted(common.SHARED)
  for name, holders in users.items():
    assert len(holders) >= 2, f"--{name} is used by one command only"
    assert all(h is holders[0][1] for _, h in holders), name
    assert FLAGS.find_module_defining_flag(name) == common.__name__
  assert [c for c, _ in users["data_dir"]] == [
      "train", "evaluate", "calibrate_exit", "convert", "profile"]
  # A command's own flags are its alone.
  own = {c: {f.name for f in
             FLAGS.flags_by_module_dict().get(m.__name__, [])}
         for c, m in MODULES.items()}
  for command, names in own.items():
    assert not names & set(common.SHARED), command
    for other, other_names in own.items():
      assert other == command or not names & other_names, (command, other)
  assert "config_file" in own["train"] and "top_k" in own["predict"]


def _help(argv):
  proc = subprocess.run(argv + ["--help"], capture_output=True, text=True,
                        timeout=300, env=helpers.user_environment())
  return proc.returncode, proc.stdout, proc.stderr


def _check_help(command, status, stdout, stderr):
  module = MODULES[command]
  # The usage on stdout, nothing on stderr, and asking for it succeeds
  # (absl's own --help exits with status 1).
  assert status == 0, (command, stdout[-2000:], stderr[-2000:])
  assert stderr == "", (command, stderr[-2000:])
  assert stdout.startswith(module.__doc__.splitlines()[0]), command
  assert "Try --helpfull" in stdout
  listed = {line.split(":")[0].strip().replace("[no]", "")[2:]
            for line in stdout.splitlines() if line.startswith("  --")}
  assert listed == set(module.COMMAND.flag_names()), command
  # absl wraps the help text.
  text = " ".join(stdout.split())
  for shown in HELP_SHOWS.get(command, []):
    assert shown in text, (command, shown)


def _help_of_all(argv_of):
  # Three at a time: each is a TensorFlow import.
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = dict(zip(cli.COMMANDS, pool.map(
        lambda c: _help(argv_of(c)), cli.COMMANDS)))
  for command, (status, stdout, stderr) in results.items():
    _check_help(command, status, stdout, stderr)


def test_help_of_every_command_through_its_run():
  _help_of_all(lambda c: [sys.executable, "-c",
                          f"from adafocus_tf.cli import {c}; {c}.run()"])


def test_help_of_every_installed_console_script():
  scripts = {c: os.path.join(sysconfig.get_path("scripts"),
                             cli.script_name(c)) for c in cli.COMMANDS}
  if not any(os.path.exists(p) for p in scripts.values()):
    pytest.skip(f"no console script in {sysconfig.get_path('scripts')}; "
                "`pip install -e .` installs them")
  assert [p for p in scripts.values() if not os.path.exists(p)] == []
  _help_of_all(lambda c: [scripts[c]])


def test_launch_script_is_the_same_command():
  status, stdout, stderr = _help(
      [sys.executable, os.path.join(helpers.REPO, "launch", "train.py")])
  _check_help("train", status, stdout, stderr)
  assert os.path.join(helpers.REPO, "launch", "train.py") + ":" in stdout


def test_log_level_debug_brings_the_libraries_lines_back():
  # adafocus-flops imports tf-agents, hence Gym and its notice.
  argv = [sys.executable, "-c", "from adafocus_tf.cli import flops; "
          "flops.run()", "--dataset=minik", "--log_level=debug"]
  proc = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                        env=helpers.user_environment())
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Gym has been unmaintained" in proc.stderr
  assert "GFLOPs per video" in proc.stdout


def test_launch_profile_does_not_hide_the_standard_profile():
  # While a launch/ script runs, launch/ is sys.path[0]: cProfile's
  # `import profile` finds launch/profile.py, which must give the standard
  # module (tf-agents imports cProfile; absl's profiler uses profile).
  code = ("import sys; sys.path.insert(0, sys.argv[1]); import cProfile, "
          "profile; print(profile.__file__); print(hasattr(profile, 'Profile'"
          ")); cProfile.run('sum(range(10))', sort='calls')")
  proc = subprocess.run([sys.executable, "-c", code,
                         os.path.join(helpers.REPO, "launch")],
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0] == os.path.join(sysconfig.get_path("stdlib"), "profile.py")
  assert lines[1] == "True"
  assert "function calls" in proc.stdout


def _nested(dotted: dict) -> dict:
  """``{"a.b": v}`` -> ``{"a": {"b": v}}``."""
  out = {}
  for key, value in dotted.items():
    *parents, leaf = key.split(".")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=8, num_val=8)


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_config_file_then_flags_then_overrides(data_dir, tmp_path, kind):
  values = _nested({**helpers.TINY, "model.patch_size": 16,
                    "model.num_actions": 36, "seed": 5,
                    "stage1.backbone_lr": 0.5})
  path = tmp_path / f"config.{kind}"
  path.write_text(json.dumps(values) if kind == "json"
                  else yaml.safe_dump(values))
  run = tmp_path / "run"
  # Stage 1 with 0 epochs: the config is resolved and written, nothing
  # trains.
  helpers.run_train([f"--data_dir={data_dir}", f"--run_dir={run}",
                     "--stage=1", "--epochs=0", "--noevaluate",
                     "--noprogress", f"--config_file={path}", "--seed=7",
                     "--override=model.num_actions=49"])
  config = json.loads((run / "config.json").read_text())
  assert config["model"]["patch_size"] == 16            # the file
  assert config["stage1"]["backbone_lr"] == 0.5         # the file
  assert config["data"]["num_classes"] == helpers.NUM_CLASSES
  assert config["seed"] == 7                            # a flag over it
  assert config["model"]["num_actions"] == 49           # --override last
  assert config["stage1"]["epochs"] == 0


@pytest.mark.parametrize("case", ["invalid", "missing", "extension"])
def test_bad_config_file_is_a_usage_error_before_any_work(data_dir, tmp_path,
                                                          case):
  path = tmp_path / ("config.txt" if case == "extension" else "config.json")
  if case != "missing":
    path.write_text(json.dumps(_nested({**helpers.TINY,
                                        "model.patch_size": 64})))
  expected = {
      "invalid": "config field model.patch_size=64: must be between 1 and "
                 "data.frame_size (32)",
      "missing": f"--config_file={path} does not exist",
      "extension": f"{path}: a config file ends in .json, .yaml or .yml",
  }[case]
  run = tmp_path / "run"
  proc = helpers.run_train([f"--data_dir={data_dir}", f"--run_dir={run}",
                            f"--config_file={path}", "--noprogress"],
                           check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.rstrip().splitlines()[-1] == f"error: {expected}"
  assert not run.exists()


def _snapshot(root):
  """(path, size, mtime) of every file under ``root``."""
  return sorted((os.path.relpath(os.path.join(d, n), root),
                 os.stat(os.path.join(d, n)).st_size,
                 os.stat(os.path.join(d, n)).st_mtime_ns)
                for d, _, names in os.walk(root) for n in names)


@pytest.mark.training
def test_changed_setting_of_a_trained_run_is_a_one_line_error(data_dir,
                                                              tmp_path):
  run = tmp_path / "run"
  args = [f"--data_dir={data_dir}", f"--run_dir={run}", "--stage=1",
          "--max_steps=1", "--noevaluate", "--noprogress"]
  helpers.run_train(args + helpers.tiny_flags())
  before = _snapshot(run)
  assert any(p.startswith("stage1") for p, _, _ in before)
  proc = helpers.run_train(args + helpers.tiny_flags(model__patch_size=16),
                           check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1
  assert errors[0].startswith(
      f"error: model.patch_size is 8 in {run}/config.json but this command "
      "sets 16, and stage 1 ")
  assert _snapshot(run) == before

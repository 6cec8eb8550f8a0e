"""Shared helpers of the tests: small real datasets and tiny configs."""
import os
import re
import subprocess
import sys

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from adafocus_tf import config as config_lib
from adafocus_tf.data import schema
from adafocus_tf.data import shards
from adafocus_tf.families import registry

# tests/: the shared modules (this one, video_fixtures) and golden/; the
# test modules sit in subfolders that mirror the package.
TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
NUM_CLASSES = 4


def write_split(split_dir, num_videos, num_frames=8, size=32, seed=0,
                videos_per_shard=8, dataset="test", prefix="v",
                class_names=None):
  """Writes a split of real JPEG SequenceExamples whose class is learnable.

  Frame t of video v is noise plus a bright square in the quadrant of its
  class (so a model can learn it) and carries its object box. Video v has
  label v % 4. ``class_names`` (default c0..c3) go into meta.json. Returns
  the list of (video_id, label).
  """
  rng = np.random.default_rng(seed)
  records, index = [], []
  for v in range(num_videos):
    label = v % NUM_CLASSES
    frames, boxes = [], []
    for t in range(num_frames):
      img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
      q = size // 2
      y, x = (label // 2) * q, (label % 2) * q
      img[y + 2:y + q - 2, x + 2:x + q - 2] = 200 + t
      frames.append(tf.io.encode_jpeg(img, quality=95).numpy())
      boxes.append([(y + 2) / size, (x + 2) / size, (y + q - 2) / size,
                    (x + q - 2) / size])
    vid = f"{prefix}{v:04d}"
    records.append(schema.encode_video(vid, [label], frames, size, size,
                                       f"/src/{vid}", np.array(boxes)))
    index.append((vid, label))
  n_shards = -(-num_videos // videos_per_shard)
  for i in range(n_shards):
    shards.write_shard(split_dir, i, n_shards,
                       records[i * videos_per_shard:(i + 1) * videos_per_shard],
                       {"videos": [r[0] for r in index[i * videos_per_shard:
                                                        (i + 1) * videos_per_shard]]})
  shards.write_meta(split_dir, dataset=dataset, split=os.path.basename(split_dir),
                    class_names=class_names or [f"c{i}" for i in
                                                range(NUM_CLASSES)],
                    num_videos=num_videos, num_skipped=0, multi_label=False,
                    num_shards=n_shards, made_by={"by": "tests/helpers.py"})
  return index


def write_dataset(root, num_train=32, num_val=16, **kwargs):
  write_split(os.path.join(root, "train"), num_train, seed=1, **kwargs)
  write_split(os.path.join(root, "val"), num_val, seed=2, prefix="w", **kwargs)
  return root


# The synthetic preset shrunk further: 32px frames, 8px glance, 8px patches.
TINY = {
    "data.num_classes": NUM_CLASSES,
    "data.num_frames": 8,
    "data.frame_size": 32,
    "data.eval_resize": 32,
    "model.glance_size": 8,
    "model.patch_size": 8,
    "model.num_actions": 25,
    "model.classifier_hidden": 16,
    "model.policy_hidden": 16,
    "model.policy_conv_channels": 4,
    "stage0.batch_size": 8,
    "stage1.batch_size": 8,
    "stage2.batch_size": 8,
    "stage3.batch_size": 8,
    "stage0.epochs": 1,
    "stage1.epochs": 2,
    "stage2.epochs": 1,
    "stage3.epochs": 1,
    "eval_batch_size": 8,
}


def tiny_config(data_dir="", **overrides):
  """The TINY config on ``data_dir``, with further ``dotted=value`` overrides."""
  cfg = config_lib.get_preset("synthetic")
  cfg.data.data_dir = data_dir
  for key, value in {**TINY, **overrides}.items():
    config_lib.override(cfg, key.replace("__", "."), value)
  return cfg


def tiny_flags(**overrides):
  """``--override`` flags that make launch/train.py use the TINY config."""
  return [f"--override={k.replace('__', '.')}={v}"
          for k, v in {**TINY, **overrides}.items()]


def train_tiny_run(root, stages=(1,), num_train=16, num_val=16, **overrides):
  """Trains a TINY run in-process (one stage-1 epoch by default).

  Args:
    root: a directory for the data and the run.
    stages: stages to run (e.g. (1, 2) for a policy too).
    num_train: training videos.
    num_val: evaluation videos.
    **overrides: config overrides, ``section__field=value``.

  Returns:
    (config, run directory).
  """
  from adafocus_tf.training import experiment  # pylint: disable=g-import-not-at-top
  data_dir = write_dataset(os.path.join(str(root), "data"),
                           num_train=num_train, num_val=num_val)
  cfg = tiny_config(data_dir, **{"stage1__epochs": 1, **overrides})
  run = os.path.join(str(root), "run")
  experiment.run_stages(cfg, run, list(stages), tf.distribute.get_strategy(),
                        progress=False)
  return cfg, run


def run_train(args, env=None, timeout=600, check=True):
  """Runs launch/train.py in a subprocess and returns the CompletedProcess.

  Args:
    args: its command line.
    env: changes to ``user_environment()``; a value of None removes the
      variable.
    timeout: seconds.
    check: raise when it fails.
  """
  full_env = user_environment()
  full_env.update(env or {})
  full_env = {k: v for k, v in full_env.items() if v is not None}
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "train.py")] + args,
      env=full_env, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"train.py failed ({proc.returncode}):\n"
                         f"{proc.stderr[-4000:]}")
  return proc


# What a newcomer's terminal must not show: TensorFlow's C++ log lines
# ("2026-12-07 08:52:28.838857: E external/..."), absl's prefixed lines
# ("I1207 08:52:30.271442 140437683886976 synthetic.py:467] ..."), and
# the notice Gym prints when tf-agents imports it.
NOISE = (re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: [IWEF] "),
         re.compile(r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ "),
         re.compile(r"^[EW] "),
         re.compile(r"Gym has been unmaintained"))
# Environment changes that run a command as a user would: this process
# (which imported adafocus_tf) set TF_CPP_MIN_LOG_LEVEL, a user has not.
USER_ENV = {"TF_CPP_MIN_LOG_LEVEL": None}


def user_environment():
  """This process's environment changed by ``USER_ENV``."""
  env = dict(os.environ)
  env.update(USER_ENV)
  return {k: v for k, v in env.items() if v is not None}


def noise_lines(stderr):
  """The lines of ``stderr`` (progress bars split at their redraws) that
  ``NOISE`` forbids."""
  lines = stderr.replace("\r", "\n").splitlines()
  return [line for line in lines if any(p.search(line) for p in NOISE)]


def start_launch(script, args):
  """Starts ``launch/<script>`` with ``args`` in a subprocess.

  Returns:
    The ``subprocess.Popen`` (stdout and stderr as text pipes).
  """
  return subprocess.Popen(
      [sys.executable, os.path.join(REPO, "launch", script)] + list(args),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=user_environment())


def checkpoint_tensors(prefix, objects=("model",)):
  """Variables of a checkpoint's ``objects`` (not optimizer slots), by key.

  Args:
    prefix: the checkpoint's prefix path.
    objects: names the checkpoint saves them under (the policy trainer's:
      model, actor, critic).
  """
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.split("/", 1)[0] in objects and "OPTIMIZER_SLOT" not in k}


# TINY with two frame streams (TSM backbones), one patch per video and the
# logit-mean classifier: the Something-Something model of the sthv1/sthv2
# presets at the size of the other tests.
TWO_STREAM = {
    "data.glance_frames": 4,
    "data.focus_frames": 6,
    "data.flip": False,
    "model.variant": "two_stream",
    "model.classifier": "logit_mean",
    "model.patch_per_video": True,
    "model.temporal_shift": True,
}


def two_stream_overrides(**overrides):
  """``TWO_STREAM`` and ``overrides`` as ``section__field`` keyword names."""
  return {**{k.replace(".", "__"): v for k, v in TWO_STREAM.items()},
          **overrides}


def tiny_two_stream_config(data_dir="", **overrides):
  """``tiny_config`` made two-stream (``TWO_STREAM``), with ``overrides``."""
  return tiny_config(data_dir, **two_stream_overrides(**overrides))


def forbid_agents_and_optimizers(monkeypatch) -> list:
  """Makes building a tf-agents agent or a Keras optimizer raise.

  For the tests that a tool using a trained run (predict, export, convert)
  builds neither. Returns the list of class names that tried (empty while
  nothing did); the patched constructors raise ``AssertionError``.
  """
  from tf_agents.agents import tf_agent  # pylint: disable=g-import-not-at-top
  built = []

  def refuse(kind):
    def init(self, *args, **kwargs):
      del args, kwargs
      built.append(type(self).__name__)
      raise AssertionError(f"built a {kind}: {type(self).__name__}")
    return init
  monkeypatch.setattr(tf_agent.TFAgent, "__init__", refuse("tf-agents agent"))
  monkeypatch.setattr(tf.keras.optimizers.Optimizer, "__init__",
                      refuse("Keras optimizer"))
  monkeypatch.setattr(tf.keras.optimizers.legacy.Optimizer, "__init__",
                      refuse("Keras optimizer"))
  return built


# TINY trained as AdaFocusV2 (``get_preset("synthetic", "v2")`` shrunk like
# TINY): one end-to-end stage after stage 0, no PPO stage.
TINY_V2 = {
    "stage2.epochs": 0,
    "stage3.epochs": 0,
}


def tiny_v2_config(data_dir="", **overrides):
  """The TINY config of the V2 ``synthetic`` preset, with ``overrides``."""
  cfg = config_lib.get_preset("synthetic", "v2")
  cfg.data.data_dir = data_dir
  for key, value in {**TINY, **TINY_V2, **overrides}.items():
    config_lib.override(cfg, key.replace("__", "."), value)
  return cfg


def tiny_v2_flags(**overrides):
  """launch/train.py flags for ``tiny_v2_config``: ``--method=v2`` and
  ``--override`` flags (less TINY's fields V2 does not use, which
  launch/train.py refuses)."""
  unused = registry.get("v2").unused()
  return ["--method=v2"] + [
      flag for flag in tiny_flags(**{**TINY_V2, **overrides})
      if flag[len("--override="):].split("=", 1)[0] not in unused]


# Uni-AdaFocus at the TINY size: 8 candidates, 4 glance and 4 focus frames,
# regions of 6-12 pixels around the 8-pixel patch.
TINY_UNI = {
    "uni.glance_frames": 4, "uni.focus_frames": 4, "uni.min_region": 6,
    "uni.max_region": 12, "uni.spatial_hidden": 4, "uni.temporal_hidden": 4,
    "uni.mc_draws": 4,
}


def tiny_uni_config(data_dir="", **overrides):
  """The TINY config of the Uni-AdaFocus ``synthetic`` preset."""
  cfg = config_lib.get_preset("synthetic", "uni")
  cfg.data.data_dir = data_dir
  unused = registry.get("uni").unused()
  for key, value in {**TINY, **TINY_V2, **TINY_UNI, **overrides}.items():
    key = key.replace("__", ".")
    if key not in unused:
      config_lib.override(cfg, key, value)
  return cfg.validate()


def tiny_uni_flags(**overrides):
  """launch/train.py flags for ``tiny_uni_config``: ``--method=uni`` and
  ``--override`` flags of the fields it uses."""
  unused = registry.get("uni").unused()
  return ["--method=uni"] + [
      flag for flag in tiny_flags(**{**TINY_V2, **TINY_UNI, **overrides})
      if flag[len("--override="):].split("=", 1)[0] not in unused]


# V2-TSM at the TINY size: the two-stream model trained end to end.
TWO_STREAM_V2 = {**TWO_STREAM, "model.variant": "v2_tsm",
                 "model.policy_mlp": (8, 4), "model.frame_order":
                 "chronological"}


def tiny_v2_tsm_config(data_dir="", **overrides):
  """``tiny_v2_config`` made V2-TSM (``TWO_STREAM_V2``), with ``overrides``."""
  return tiny_v2_config(data_dir, **{
      **{k.replace(".", "__"): v for k, v in TWO_STREAM_V2.items()},
      **overrides})


def eval_dataset(cfg):
  """The evaluation pipeline over ``cfg``'s evaluation split (seed 0).

  Args:
    cfg: a config whose ``data.data_dir`` holds prepared splits.
  """
  from adafocus_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.make_dataset(
      cfg.data, pipeline.split_dir(cfg.data, cfg.data.eval_split),
      training=False, batch_size=cfg.eval_batch_size, seed=0)


def train_tiny_v2_run(root, num_train=16, num_val=16, make_config=None,
                      **overrides):
  """Trains a TINY AdaFocusV2 run in-process: its one end-to-end stage (1).

  Args:
    root: a directory for the data and the run.
    num_train: training videos.
    num_val: evaluation videos.
    make_config: (data_dir, **overrides) -> config; default
      ``tiny_v2_config`` (``tiny_v2_tsm_config`` for V2-TSM).
    **overrides: config overrides, ``section__field=value``.

  Returns:
    (config, run directory).
  """
  from adafocus_tf.training import experiment  # pylint: disable=g-import-not-at-top
  data_dir = write_dataset(os.path.join(str(root), "data"),
                           num_train=num_train, num_val=num_val)
  cfg = (make_config or tiny_v2_config)(
      data_dir, **{"stage1__epochs": 1, **overrides})
  run = os.path.join(str(root), "run")
  experiment.run_stages(cfg, run, [1], tf.distribute.get_strategy(),
                        progress=False)
  return cfg, run


def train_tiny_v2_tsm_run(root, num_train=16, num_val=16, **overrides):
  """Trains a TINY V2-TSM run in-process (``tiny_v2_tsm_config``): two frame
  streams, one patch per video, its one end-to-end stage (1).

  Args:
    root: a directory for the data and the run.
    num_train: training videos.
    num_val: evaluation videos.
    **overrides: config overrides, ``section__field=value``.

  Returns:
    (config, run directory).
  """
  return train_tiny_v2_run(root, num_train, num_val,
                           make_config=tiny_v2_tsm_config, **overrides)


# Trained TINY V2 runs of this process, by their overrides: test modules
# that only read a run share one training (``copy_of_tiny_v2_run``).
_V2_RUNS = {}


def copy_of_tiny_v2_run(dest, **overrides):
  """A fresh copy of a TINY V2 run, trained once per process per overrides.

  The copy is a run directory of its own (tools may write into it); its
  config still reads the one dataset written beside the trained original.

  Args:
    dest: the directory to create (must not exist).
    **overrides: as ``train_tiny_v2_run``.

  Returns:
    (config, run directory ``dest``).
  """
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  key = tuple(sorted(overrides.items()))
  if key not in _V2_RUNS:
    _V2_RUNS[key] = train_tiny_v2_run(
        tempfile.mkdtemp(prefix="tiny-v2-run-"), **overrides)
  cfg, run = _V2_RUNS[key]
  shutil.copytree(run, str(dest))
  return cfg, str(dest)


# The start of a script run by ``isolated_python``: a process that cannot
# import adafocus_tf (what a serving host has). No site processing (-S: the
# editable install's .pth finder is not run), no PYTHONPATH or working
# directory on sys.path (-I); TensorFlow comes from the site-packages
# directories given as argv[1].
ISOLATED = """
import os, sys
sys.path.extend(sys.argv[1].split(os.pathsep))
try:
  import adafocus_tf
except ImportError:
  pass
else:
  raise SystemExit("adafocus_tf is importable here: the test is not isolated")
"""

# Runs the script named by argv[2] with the arguments after it.
ISOLATED_SCRIPT = ISOLATED + """
import runpy
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def file_contents(root):
  """{relative path: bytes} of every file under root."""
  out = {}
  for d, _, names in os.walk(root):
    for n in names:
      p = os.path.join(d, n)
      with open(p, "rb") as f:
        out[os.path.relpath(p, root)] = f.read()
  return out


def isolated_python(code, args):
  """The command and environment that run ``code`` in an isolated process.

  Args:
    code: a script starting with ``ISOLATED``.
    args: its arguments (after the site-packages directories).

  Returns:
    (argv, env) for ``subprocess``.
  """
  import sysconfig  # pylint: disable=g-import-not-at-top
  site = os.pathsep.join(sorted({sysconfig.get_paths()["purelib"],
                                 sysconfig.get_paths()["platlib"]}))
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return [sys.executable, "-I", "-S", "-c", code, site] + list(args), env


def start_saved_model_cli(export_dir, signature, inputs, outdir):
  """Starts ``saved_model_cli run`` on an export, in a fresh process that
  cannot import this package.

  Args:
    export_dir: the SavedModel.
    signature: the signature to run.
    inputs: {input name: path of a .npy file}.
    outdir: where it writes ``<output name>.npy`` for every output (also
      its working directory).

  Returns:
    The ``subprocess.Popen`` (stdout and stderr as text pipes).
  """
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  os.makedirs(outdir, exist_ok=True)
  argv, env = isolated_python(ISOLATED_SCRIPT, [
      cli, "run", "--dir", str(export_dir), "--tag_set", "serve",
      "--signature_def", signature, "--outdir", str(outdir), "--overwrite",
      "--inputs", ";".join(f"{k}={v}" for k, v in inputs.items())])
  return subprocess.Popen(argv, env=env, cwd=str(outdir),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def rewrite_checkpoint(prefix, scale=1.5, seed=0):
  """Replaces a checkpoint's model weights by others, under the same name.

  Every floating-point tensor of the ``model`` object is multiplied by
  noise around ``scale``; the other tensors (optimizer, policy, step, the
  object graph) are written back unchanged, so the checkpoint restores as
  before, with other model weights: what re-training a stage with the same
  step count, or copying other weights over it, leaves.

  Args:
    prefix: the checkpoint prefix (``.../ckpt-N``).
    scale: the noise's centre.
    seed: the noise's seed.
  """
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  rng = np.random.default_rng(seed)
  names = sorted(dtypes)
  values = []
  for name in names:
    value = reader.get_tensor(name)
    if (name.startswith("model/") and "/.OPTIMIZER_SLOT/" not in name
        and dtypes[name].is_floating):
      value = value * rng.uniform(scale - 0.5, scale + 0.5, np.shape(value))
    values.append(tf.constant(value, dtype=dtypes[name]))
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=values)


def write_fake_run(root, stages, **overrides):
  """A run laid out by hand: config, stage checkpoints, done.json.

  Each checkpoint holds one variable (no model): for what reads the layout
  (which checkpoint a tool uses), not the weights.

  Args:
    root: a directory for the data's meta.json (16 training videos) and
      the run (``<root>/run``).
    stages: {stage: (checkpoint steps, whether the stage is done)}.
    **overrides: config overrides of the TINY config, ``section__field``.

  Returns:
    The run directory.
  """
  from adafocus_tf.runs import run_dir  # pylint: disable=g-import-not-at-top
  data = os.path.join(root, "data")
  os.makedirs(os.path.join(data, "train"), exist_ok=True)
  shards.write_meta(os.path.join(data, "train"), dataset="test",
                    split="train",
                    class_names=[f"c{i}" for i in range(NUM_CLASSES)],
                    num_videos=16, num_skipped=0, multi_label=False,
                    num_shards=1, made_by={"by": "tests/helpers.py"})
  run = os.path.join(root, "run")
  run_dir.write_config(run, tiny_config(data, **overrides))
  for stage, (steps, done) in stages.items():
    for step in steps:
      ckpt = tf.train.Checkpoint(v=tf.Variable([float(stage), float(step)]))
      tf.train.CheckpointManager(ckpt, run_dir.checkpoint_dir(run, stage),
                                 3).save(checkpoint_number=step)
    if done:
      with open(run_dir.done_path(run, stage), "w") as f:
        f.write(f'{{"step": {steps[-1]}}}\n')
  return run


# Uni-AdaFocus-TSM at the TINY size: TINY_UNI's regions and policy widths,
# two streams of 4 glance frames and 6 candidates, 3 of them focused.
TINY_UNI_TSM = {**TWO_STREAM, "model.variant": "uni_tsm",
                "model.classifier": "logit_mean", "data.glance_frames": 4,
                "data.focus_frames": 6, "uni.focus_frames": 3}


def tiny_uni_tsm_config(data_dir="", **overrides):
  """``tiny_uni_config`` made Uni-AdaFocus-TSM (``TINY_UNI_TSM``), with
  ``overrides`` (``section__field``)."""
  cfg = tiny_uni_config(data_dir)
  for key, value in {**TINY_UNI_TSM, **overrides}.items():
    config_lib.override(cfg, key.replace("__", "."), value)
  return cfg.validate()


# Uni-AdaFocus-X3D (the ``synthetic_x3d`` preset) on the TINY records:
# their classes and 32-pixel frames, P = 16, batches of 4.
TINY_UNI_X3D = {"data.num_classes": NUM_CLASSES, "data.frame_size": 32,
                "data.eval_resize": 32, "model.glance_size": 32,
                "model.patch_size": 16, "uni.min_region": 12,
                "uni.max_region": 28, "stage1.batch_size": 4,
                "eval_batch_size": 4}


def tiny_uni_x3d_config(data_dir="", **overrides):
  """The ``synthetic_x3d`` preset at ``TINY_UNI_X3D``, with ``overrides``
  (``section__field``)."""
  cfg = config_lib.get_preset("synthetic_x3d", "uni")
  cfg.data.data_dir = data_dir
  for key, value in {**TINY_UNI_X3D, **overrides}.items():
    config_lib.override(cfg, key.replace("__", "."), value)
  return cfg.validate()

"""Evaluation throughput and stage-3 step time of two source trees, side by side.

  python benchmarks/before_after.py --before=/path/to/old/tree [--preset=minik]

Measures, for this tree ("after") and the tree given by ``--before``, in
alternating rounds in fresh processes so that both see the same machine
load:
  * evaluation: videos/s of one compiled call giving the policy's patches
    and the per-step probabilities of a batch (what evaluation runs per
    batch);
  * stage 3: seconds per training step with the policy's patches (a
    compiled ``SupervisedTrainer`` step on an in-memory batch).
Weights are random (the speed of a network does not depend on its
values). The "before" tree is the code before the recognizer (issue 13),
where the policy ran its own glance pass before the model's; this script
speaks both APIs. Reports medians and the matmul peak measured in each
process.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs inside the measured tree (PYTHONPATH set to it).
_CHILD = r"""
import json, sys, tempfile
sys.path.insert(0, {bench!r})
import adafocus_tf
import tensorflow as tf
import timing
from adafocus_tf import config as config_lib

cfg = config_lib.get_preset({preset!r})
b = {batch}
d, strategy = cfg.data, tf.distribute.get_strategy()
batch = {{
    "frames": tf.random.normal([b, d.num_frames, d.frame_size,
                                d.frame_size, 3]),
    "label": tf.zeros([b], tf.int32),
    "multi_hot": tf.one_hot(tf.zeros([b], tf.int32), d.num_classes),
    "seed": tf.stack([tf.range(b, dtype=tf.int64),
                      tf.ones([b], tf.int64)], 1),
}}
tmp = tempfile.mkdtemp()


def recognizer_and_policy():
  from adafocus_tf.inference import loading
  from adafocus_tf.models import factory
  from adafocus_tf.policy import greedy
  model = factory.build_model(cfg)
  model.build_all()
  policy = greedy.GreedyPolicy.build(cfg, model.glance.map_shape)
  recognizer = loading.build(cfg, model, policy)
  ckpt = tf.train.Checkpoint(actor=policy.actor).save(tmp + "/policy")
  return tf.function(lambda x: recognizer(x, "policy").probs), ckpt


try:  # model families and training tasks
  from adafocus_tf.training import stage_trainer
  from adafocus_tf.training import tasks
  api = "tasks"
  evaluate, ckpt = recognizer_and_policy()
  stage3 = stage_trainer.StageTrainer(
      tasks.PatchTask(cfg, 3, patch="policy", policy_checkpoint=ckpt),
      strategy, tmp + "/run", progress=False)
  loss_of = lambda out: out["loss"]
except ImportError:
  from adafocus_tf.training import supervised
  loss_of = lambda out: out[0]
  try:
    api = "recognizer"
    evaluate, ckpt = recognizer_and_policy()
    stage3 = supervised.SupervisedTrainer(cfg, 3, strategy, tmp + "/run",
                                          patch="policy",
                                          policy_checkpoint=ckpt,
                                          progress=False)
  except ImportError:
    from adafocus_tf.policy import trainer as trainer_lib
    from adafocus_tf.training import evaluation
    api = "policy trainer"
    t = trainer_lib.PolicyTrainer(cfg, strategy, tmp + "/ppo",
                                  progress=False)
    evaluate = tf.function(lambda x: evaluation.batch_step(
        t.model, cfg, "policy", t.policy_fn)(x)[0])
    stage3 = supervised.SupervisedTrainer(cfg, 3, strategy, tmp + "/run",
                                          patch="policy",
                                          policy_fn=t.policy_fn,
                                          progress=False)
step = stage3.make_train_fn(b)
eval_s, _ = timing.timed(lambda: evaluate(batch).numpy(), {repeats},
                         warmup=2)
step_s, _ = timing.timed(lambda: float(loss_of(step(batch))), {repeats},
                         warmup=2)
print("RESULT " + json.dumps({{
    "api": api, "eval_videos_per_s": b / eval_s, "stage3_step_s": step_s,
    "peak_gmacs": timing.matmul_peak_gmacs(2048)}}))
"""


def measure(tree, preset, batch, repeats):
  env = dict(os.environ, PYTHONPATH=tree)
  code = _CHILD.format(bench=HERE, preset=preset, batch=batch,
                       repeats=repeats)
  proc = subprocess.run([sys.executable, "-c", code], env=env,
                        capture_output=True, text=True, check=False,
                        cwd=tempfile.gettempdir())
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  raise RuntimeError(f"{tree}: {proc.stderr[-3000:]}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--before", required=True, help="The old source tree.")
  parser.add_argument("--after", default=os.path.dirname(HERE),
                      help="The new source tree (default: this one).")
  parser.add_argument("--preset", default="minik")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  results = {"before": [], "after": []}
  for _ in range(args.rounds):
    for name in ("before", "after"):
      tree = getattr(args, name)
      results[name].append(measure(tree, args.preset, args.batch_size,
                                   args.repeats))
  summary = {}
  for name, runs in results.items():
    summary[name] = {
        "api": runs[0]["api"],
        **{k: statistics.median(r[k] for r in runs)
           for k in ("eval_videos_per_s", "stage3_step_s", "peak_gmacs")}}
  summary["eval_speedup"] = (summary["after"]["eval_videos_per_s"]
                             / summary["before"]["eval_videos_per_s"])
  summary["stage3_speedup"] = (summary["before"]["stage3_step_s"]
                               / summary["after"]["stage3_step_s"])
  summary["load_average"] = os.getloadavg()
  print(json.dumps({"preset": args.preset, "batch_size": args.batch_size,
                    "rounds": args.rounds, **summary}, indent=2))


if __name__ == "__main__":
  main()

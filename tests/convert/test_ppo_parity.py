"""One PPO update of V1's stage 2 against the official one (issue 24).

``torch_ppo_v1.py`` (run in the torch interpreter) re-creates the official
update of blackfeather-wang/AdaFocus, folder "Experiments on ActivityNet,
FCVID and Mini-Kinetics" (its docstring names the file and function each
part follows): a random V1 model with its PPO policy saved as an official
stage-3 file; then per variant a rollout of ``policy_old``
(``models/ppo.py``, ``ActorCritic.act``: the glance maps, sampled actions
and their log-probabilities; random rewards for ``main_dist.py``'s
``get_reward``) and one ``PPO.update`` on it, the loss terms and the file
after the update saved. Here the "before" file is converted (the converter a
user runs: a stage-3 file with its policy makes a run's stage 2), our
stage-2 trainer's update is taken from it on the same rollout
(``training.ppo.one_update.update_once``), the "after" file is converted too,
and the two are compared:

  * the loss terms (``PPO.update``'s ``loss.mean()`` split into its means,
    against ``agent.loss_terms``): ``policy_loss``, the clipped surrogate
    ``mean(-min(r A, clamp(r, 0.8, 1.2) A))`` with ``A = R - V`` and the
    returns R discounted (``gamma``) and standardised; ``value_loss``,
    ``0.5 MSE(V, R)``; ``entropy_loss``, ``-0.01 mean(entropy)``
    (``ActorCritic.evaluate``'s ``dist.entropy()``); ``loss``, their sum;
  * every weight of the actor and critic after the one Adam step
    (``PPO.update``'s ``self.optimizer.step()``), and nothing moved that the
    official step left; printed, the worst updates (after - before).

Variants: ``fresh``, the official run's case (``policy_old`` equals the
policy, ``K_epochs=1``: every ratio is 1, the clip never acts), and
``stale`` (``policy_old`` perturbed before it acts: ratios 0.68 to 1.6, the
clip acts on some steps); each with the official side in float64 and in
float32.

Our side is float32 in both: the policy networks compute in float32 whatever
the global precision (``policy/networks.py``), and tf-agents' PPO loss casts
the log-probabilities and entropies to float32 (``ppo_agent.py``,
``policy_gradient_loss`` and ``get_loss``), so a float64 update is not
available without replacing its loss. The float64 official update is the
exact one. Measured maxima, ours against the official update (relative to
each term; to each weight tensor's largest entry), and in brackets PyTorch's
own float32 update against its float64 one (the fresh rollout: the stale
one samples other actions in float32):

  | variant          | terms  | weights after     |
  | ---------------- | ------ | ----------------- |
  | fresh, float64   | 5.5e-7 | 8.4e-5            |
  | stale, float64   | 7.2e-7 | 2.7e-7            |
  | fresh, float32   | 6.6e-7 | 4.2e-5 (3.4e-5)   |
  | stale, float32   | 1.6e-6 | 7.9e-7            |

Before Adam's epsilon was PyTorch's (``agent.make_optimizer``,
docs/METHOD.md section 2.1) the weights after were 1.1e-3, 4.1e-4, 1.2e-3
and 9.5e-4 off (the terms, computed before the step, were as above).

The fresh update's 8.4e-5 is one of the encoder convolution's 40960
weights: its gradient is about 1e-7, where float32 rounding decides its
size, and Adam's first step, ``lr g / (|g| + 1e-8)``, turns that into 5% of
the step (PyTorch's float32 update misses the float64 one by as much for
the same reason); every other weight is within 2e-7. So the issue's 1e-5
holds for the terms of every variant and for the weights of the stale one;
the fresh one's weights are held to three times the measured maximum, as
are the float32 cases (``RTOL``).
"""
import shutil

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import step_comparison
from adafocus_tf import config as config_lib
from adafocus_tf.convert import run_writer
from adafocus_tf.runs import checkpoints
from adafocus_tf.training.ppo import one_update

pytestmark = pytest.mark.parity

PATCH = 32
FRAME = 64
MODEL = dict(batch=3, frames=4, frame_size=FRAME, patch=PATCH, classes=5,
             hidden=24, num_actions=49, policy_hidden=20, policy_conv=32)
# The official files convert with the actnet preset and these overrides.
DATASET = "actnet"
OVERRIDES = [f"data.frame_size={FRAME}", f"data.eval_resize={FRAME}",
             f"model.glance_size={FRAME}", "model.dropout=0",
             "model.head_dropout=0", f"data.num_classes={MODEL['classes']}",
             f"data.num_frames={MODEL['frames']}"]
VARIANTS = {"fresh_f64": dict(dtype="float64", stale=False),
            "stale_f64": dict(dtype="float64", stale=True),
            "fresh_f32": dict(dtype="float32", stale=False),
            "stale_f32": dict(dtype="float32", stale=True)}
NAME = "ppo"
# Relative tolerances of the loss terms and of the weights after the
# update: the 1e-5, or about three times the measured maximum where
# float32 rounding alone exceeds it (module doc).
RTOL = {"fresh_f64": dict(terms=1e-5, weights=3e-4),
        "stale_f64": dict(terms=1e-5, weights=1e-5),
        "fresh_f32": dict(terms=2e-6, weights=1.5e-4),
        "stale_f32": dict(terms=5e-6, weights=3e-6)}
TERMS = ("loss", "policy_loss", "value_loss", "entropy_loss")


def _spec():
  s = config_lib.get_preset(DATASET).stage2
  return [dict(case="v1_ppo_update", name=NAME,
               variants=[dict(name=k, **v) for k, v in VARIANTS.items()],
               learning_rate=s.learning_rate, beta_1=s.beta_1,
               beta_2=s.beta_2, gamma=s.discount, clip=s.clip,
               epochs=s.update_epochs, **MODEL)]


@pytest.fixture(scope="module")
def reference(torch_reference, tmp_path_factory):
  out = tmp_path_factory.mktemp("torch_ppo_v1")
  torch_reference("torch_ppo_v1.py", _spec(), out)
  yield out
  shutil.rmtree(out, ignore_errors=True)


def _convert(path, out):
  """The official file converted as the user would; its stage checkpoint."""
  result = run_writer.convert(DATASET, PATCH, out, overrides=OVERRIDES,
                              checkpoint=path)
  return checkpoints.latest_stage_checkpoint(out, result["stage"])


@pytest.fixture(scope="module")
def before(reference, tmp_path_factory):
  """Our run converted from the official file before the update."""
  root = tmp_path_factory.mktemp("ppo_before")
  prefix = _convert(str(reference / f"{NAME}_before.pth.tar"),
                    str(root / "run"))
  yield str(root / "run"), _policy_tensors(prefix)
  shutil.rmtree(root, ignore_errors=True)


def _policy_tensors(prefix):
  """The actor's and the critic's variables (the shared trunk once)."""
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith(("actor/", "critic/")) and "OPTIMIZER_SLOT" not in k}


def _rollout(ref):
  return {one_update.OBSERVATIONS: ref["observations"],
          one_update.ACTIONS: ref["actions"],
          one_update.OLD_LOG_PROBS: ref["old_log_probs"],
          one_update.REWARDS: ref["rewards"]}



@pytest.fixture(scope="module", params=list(VARIANTS))
def updated(request, reference, before, tmp_path_factory):
  """Ours: one update from the before run; theirs: the after file."""
  variant = request.param
  run, before_tensors = before
  root = tmp_path_factory.mktemp(f"ppo_{variant}")
  with np.load(reference / f"{NAME}_{variant}.npz") as d:
    ref = {k: d[k] for k in d.files}
  result = one_update.update_once(run, _rollout(ref), str(root / "ours"))
  after = _convert(str(reference / f"{NAME}_{variant}_after.pth.tar"),
                   str(root / "after"))
  yield dict(rtol=RTOL[variant], ref=ref, result=result,
             before=before_tensors, theirs=_policy_tensors(after),
             ours=_policy_tensors(result.checkpoint))
  shutil.rmtree(root, ignore_errors=True)


def test_loss_terms_equal_the_official_update(updated):
  ref, result = updated["ref"], updated["result"]
  assert set(result.terms) == set(TERMS)
  worst = 0.0
  for name in TERMS:
    ours, theirs = result.terms[name], float(ref[f"term_{name}"])
    err = abs(ours - theirs) / abs(theirs)
    worst = max(worst, err)
    print(f"term {name}: ours {ours:.9g} official {theirs:.9g} ({err:.2e})")
  print(f"terms: worst {worst:.2e}")
  assert worst <= updated["rtol"]["terms"]


def test_weights_after_the_update_equal_the_official_ones(updated):
  step_comparison.assert_weights_after(
      updated["before"], updated["ours"], updated["theirs"],
      updated["rtol"]["weights"], "update")

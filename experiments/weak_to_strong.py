r"""Weak-to-strong: a weak policy's reward models steer a stronger policy.

  armap-jax --workdir=runs/armap_game24                      # the weak run
  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24_strong.py \
      --config.out_dir=runs/game24_strong                    # a stronger policy
  python experiments/weak_to_strong.py --weak_workdir=runs/armap_game24 \
      --strong_policy=runs/game24_strong --workdir=runs/w2s

Greedy, Sampling, Best-of-N with the weak run's ORM and step beam with its
PRM, for the weak policy and the strong one, on the same held-out tasks
(`armap_jax.pipeline.weak_to_strong`). --strong_policy is anything the policy
factory takes: a shipped name or a model directory (an endpoint policy:
`openai`, with the endpoint fields of the weak run's `policy.openai`).
Resumable; writes <workdir>/summary.md and summary.json.
"""

from absl import flags

from armap_jax.pipeline import weak_to_strong
from armap_jax.runtime import launch

_WEAK = flags.DEFINE_string("weak_workdir", None,
                            "A finished main job (its ORM and PRM).")
_STRONG = flags.DEFINE_string("strong_policy", None,
                              "The stronger policy (name or directory).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/weak_to_strong",
                               "Where results and the summary go.")
_NUM_TEST = flags.DEFINE_integer("num_test", 0, "First N tasks (0: the weak "
                                 "run's eval.num_test).")
_SPLIT = flags.DEFINE_string("split", "", "Evaluated split ('' : the weak "
                             "run's; 'dev' to choose knobs).")
flags.mark_flags_as_required(["weak_workdir", "strong_policy"])


def main(argv):
  del argv
  print(weak_to_strong.run(_WEAK.value, _STRONG.value, _WORKDIR.value,
                           num_test=_NUM_TEST.value, split=_SPLIT.value))


if __name__ == "__main__":
  launch.run_main(main, workdir=lambda: _WORKDIR.value)

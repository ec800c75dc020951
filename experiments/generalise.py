r"""Generalisation: one general reward model from held-in envs, Best-of-N on
held-out envs against each env's own reward model (AgentRM).

  python experiments/generalise.py --workdir=runs/generalise \
      --held_in=runs/webshop,runs/household,runs/sciworld \
      --held_out=runs/armap_game24,runs/maze,runs/babyai

Each --held_in / --held_out entry is a finished main-job work directory
(`armap-jax --env=E --workdir=...`): held-in runs give their reward-model
pairs (train tasks only, already in their env's view); held-out runs give the
env, its policy, its search settings and its own ORM. Resumable; writes
<workdir>/summary.md and summary.json (`armap_jax.pipeline.generalise`).
"""

from absl import flags

from armap_jax.pipeline import generalise
from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", "runs/generalise", "Output dir.")
_IN = flags.DEFINE_list("held_in", None, "Held-in main-job work directories.")
_OUT = flags.DEFINE_list("held_out", None,
                         "Held-out main-job work directories.")
_N = flags.DEFINE_integer("n", 5, "Best-of-N's N.")
_NUM_TEST = flags.DEFINE_integer("num_test", 0, "First tasks per held-out "
                                 "env (0: its run's eval.num_test).")
_STEPS = flags.DEFINE_integer("steps", 300, "General ORM training steps.")
flags.mark_flags_as_required(["held_in", "held_out"])


def main(argv):
  del argv
  print(generalise.run(_IN.value, _OUT.value, _WORKDIR.value, n=_N.value,
                       num_test=_NUM_TEST.value, steps=_STEPS.value))


if __name__ == "__main__":
  launch.run_main(main, workdir=lambda: _WORKDIR.value)

r"""ARMAP end to end on an env (the same as the `armap-jax` command).

  python experiments/armap.py --workdir=runs/armap_game24 [--quick]
  python experiments/armap.py --env=maze --quick
  python experiments/armap.py --config=experiments/configs/armap.py:game24 \
      --config.policy.name=solver-noisy --config.eval.num_test=20

All logic lives in `armap_jax.pipeline`.
"""

from armap_jax.cli import main

if __name__ == "__main__":
  main()

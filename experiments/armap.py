r"""ARMAP end to end on Game of 24 (the same as the `armap-jax` command).

  python experiments/armap.py --workdir=runs/armap_game24 [--quick]
  python experiments/armap.py --config=experiments/configs/armap_game24.py \
      --config.policy=solver-noisy --config.eval.num_test=20

All logic lives in `armap_jax.pipeline`.
"""

from armap_jax.cli import main

if __name__ == "__main__":
  main()

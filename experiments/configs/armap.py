"""The main job's config (the packaged `armap_jax/configs/armap.py`):
`--config=experiments/configs/armap.py:ENV[,quick]`, e.g. `:maze,quick`."""

from armap_jax.configs.armap import get_config  # noqa: F401

"""ARMAP end to end on Game of 24: the packaged config (see
`armap_jax/configs/armap_game24.py`); `--config=...:quick` for the quick one."""

from armap_jax.configs.armap_game24 import get_config  # noqa: F401

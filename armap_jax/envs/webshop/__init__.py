"""WebShop: a text shopping environment (see env.py), its reward, catalog and search."""

from armap_jax.envs.webshop.catalog import (Catalog, CatalogError, Goal,
                                            Product, load_catalog)
from armap_jax.envs.webshop.env import (SEARCH_TEMPLATE, WebShopEnv,
                                        WebShopWorld, expert_actions)
from armap_jax.envs.webshop.reward import RewardInfo, get_reward

__all__ = [
    "Catalog", "CatalogError", "Goal", "Product", "load_catalog",
    "SEARCH_TEMPLATE", "WebShopEnv", "WebShopWorld", "expert_actions",
    "RewardInfo", "get_reward",
]

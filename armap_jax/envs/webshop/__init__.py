"""WebShop: a text shopping environment (see env.py), its reward, catalog and search."""

from armap_jax.envs.webshop.catalog import (Catalog, CatalogError, Goal,
                                            Product, load_catalog)
from armap_jax.envs.webshop.env import (SEARCH_TEMPLATE, WebShopEnv,
                                        WebShopWorld, expert_actions)
from armap_jax.envs.webshop.reward import RewardInfo, get_reward
from armap_jax.envs.webshop.pages import OUTCOME_PATTERNS

__all__ = [
    "OUTCOME_PATTERNS",
    "Catalog", "CatalogError", "Goal", "Product", "load_catalog",
    "SEARCH_TEMPLATE", "WebShopEnv", "WebShopWorld", "expert_actions",
    "RewardInfo", "get_reward",
]

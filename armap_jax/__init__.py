"""armap-jax: learn a reward model automatically and plan with it (ARMAP, AgentRM) in JAX."""

__version__ = "0.1.0"

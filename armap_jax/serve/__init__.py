"""OpenAI-compatible model server (chat/completions, completions, /v1/rewards).

`server` holds the app and its routes, `batching` the request queue that
merges concurrent requests into one decode call, `requests` the validation
of request bodies. Launcher: `experiments/serve.py`.
"""

from armap_jax.serve.batching import Batcher
from armap_jax.serve.requests import BadRequest, ServerLimits
from armap_jax.serve.server import (ModelServer, ServerThread,
                                    parse_trajectory, serve)

__all__ = ["BadRequest", "Batcher", "ModelServer", "ServerLimits",
           "ServerThread", "parse_trajectory", "serve"]

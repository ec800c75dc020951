r"""Serve a local policy (and optionally a reward model) over an OpenAI-compatible API.

  python experiments/serve.py --model=smollm2-135m-instruct --port=8000
  python experiments/serve.py --model=<HF dir> --scorer=orm --scorer_dir=<run>
  python experiments/serve.py --scorer=judge --scorer_dir=smollm2-135m-instruct \
      --env=webshop

Then any OpenAI client (or `OpenAIPolicy`) can use
http://127.0.0.1:8000/v1 (`/completions`, `/chat/completions`, both with
`stream=True`, `/models`, `/models/{id}`, `/rewards`); see docs/serving.md. Binds to 127.0.0.1 unless --host says otherwise; there is no
authentication, so only expose it on trusted networks.
"""

import os

from absl import app, flags, logging

from armap_jax import serve
from armap_jax.runtime import launch

_MODEL = flags.DEFINE_string("model", "", "Policy LM: HF dir, checkpoint dir "
                             "or a known name (empty: rewards only).")
_NAME = flags.DEFINE_string("name", "", "Model id in the API (default: the "
                            "model's base name).")
_SCORER = flags.DEFINE_string("scorer", "", "Reward model kind (orm, prm, "
                              "implicit, judge, auto); empty: none.")
_SCORER_DIR = flags.DEFINE_string("scorer_dir", "", "Reward-model run "
                                  "directory (judge: a model name or dir).")
_ENV = flags.DEFINE_string("env", "", "Env of the scored trajectories (a "
                           "trained scorer must match it; the judge's view).")
_PROTOCOL = flags.DEFINE_string("protocol", "", "Game of 24 protocol (tot, "
                                "env) of the scored trajectories.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Bind address.")
_PORT = flags.DEFINE_integer("port", 8000, "Port.")
_MAX_N = flags.DEFINE_integer("max_n", 16, "Largest n per request.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 1024, "Largest max_tokens a "
                                   "request may ask for (larger: a 400 that "
                                   "names this cap).")
_MAX_BODY = flags.DEFINE_integer("max_body_bytes", 4 << 20,
                                 "Largest request body.")
_BODY_TIMEOUT = flags.DEFINE_float("body_timeout_s", 30.0, "Seconds a request "
                                   "body may take to arrive (then 408).")
_HEADER_TIMEOUT = flags.DEFINE_float("header_timeout_s", 30.0, "Seconds a "
                                     "request's headers may take to arrive.")
_WINDOW = flags.DEFINE_float("batch_window_s", 0.005, "How long the batcher "
                             "waits for more requests before decoding.")
_CHUNK = flags.DEFINE_integer("chunk_tokens", 8, "Decode steps between two "
                              "looks at a batch: streamed text goes out and "
                              "rows of clients that left are cancelled after "
                              "each chunk.", lower_bound=1)


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  if not _MODEL.value and not _SCORER.value:
    raise app.UsageError("give --model and/or --scorer")
  model = tok = None
  name = _NAME.value
  if _MODEL.value:
    from armap_jax.models import load_pretrained
    model, tok, _ = load_pretrained(_MODEL.value)
    name = name or os.path.basename(_MODEL.value.rstrip("/")) or _MODEL.value
  scorer = None
  if _SCORER.value:
    from armap_jax.rewards.load import make_scorer
    scorer = make_scorer(_SCORER.value, _SCORER_DIR.value, env=_ENV.value,
                         protocol=_PROTOCOL.value)
  limits = serve.ServerLimits(max_n=_MAX_N.value, max_tokens=_MAX_TOKENS.value,
                              max_body_bytes=_MAX_BODY.value,
                              body_timeout_s=_BODY_TIMEOUT.value,
                              header_timeout_s=_HEADER_TIMEOUT.value,
                              batch_window_s=_WINDOW.value,
                              chunk_tokens=_CHUNK.value)
  server = serve.ModelServer(model, tok, model_name=name or "local",
                             scorer=scorer, limits=limits)
  logging.info("serving %s on http://%s:%d/v1", name, _HOST.value, _PORT.value)
  try:
    serve.serve(server, host=_HOST.value, port=_PORT.value)
  finally:
    server.close()


if __name__ == "__main__":
  launch.run_main(main)

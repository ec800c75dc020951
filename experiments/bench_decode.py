"""Decode throughput: our JAX engine vs transformers' PyTorch generate.

Same weights in both (SmolLM2-135M-Instruct from its shipped GGUF, and a tiny
random Llama), same random prompts, exactly `--new_tokens` new tokens per row
(EOS disabled on both sides), greedy and sampling. Prints tokens/s for both,
the ratio ours/torch (also per phase: the prefill, timed as a 1-token
generate, and the per-step decode rest), and the decode's achieved weight-read
bandwidth next to a memory bandwidth measured here with a large NumPy copy.
The last line is the SmolLM2 batch-16 ratio.

  python experiments/bench_decode.py                     # everything
  python experiments/bench_decode.py --models=smollm2 --batches=16 \\
      --modes=greedy                                     # a quick subset
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from armap_jax.runtime import launch

_MODELS = flags.DEFINE_list("models", ["smollm2", "tiny"], "smollm2, tiny")
_BATCHES = flags.DEFINE_list("batches", ["1", "16", "64"], "batch sizes")
_MODES = flags.DEFINE_list("modes", ["greedy", "sample"], "greedy, sample")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 128, "prompt tokens")
_NEW_TOKENS = flags.DEFINE_integer(
    "new_tokens", 64, "new tokens per row (per-step decode figures need at "
    "least 9: the prefill's token and 8 steps)", lower_bound=1)
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "timed rounds, ours and torch interleaved (best is kept)",
    lower_bound=1)
_TORCH = flags.DEFINE_bool("torch", True, "also time torch generate")
_UNROLL = flags.DEFINE_bool(
    "unroll_layers", True, "Decoder(unroll_layers=...): unrolled decode step "
    "(faster steps, longer compile; compile time is excluded here)")
_THREADS = flags.DEFINE_integer(
    "threads", 0, "torch.set_num_threads (0: os.cpu_count(), what XLA uses)")
_BW_MB = flags.DEFINE_integer("bw_mb", 512, "MiB copied for the bandwidth probe")
_DTYPE = flags.DEFINE_enum(
    "dtype", "float32", ["float32", "bfloat16"],
    "weights and compute on both sides (torch: model.to(dtype))")


def memory_bandwidth_gbs(mib: int) -> float:
  """Read+write GB/s of a large NumPy copy (best of 5)."""
  import numpy as np
  src = np.ones((mib * 2**20 // 8,), np.float64)
  dst = np.empty_like(src)
  best = float("inf")
  for _ in range(5):
    t = time.perf_counter()
    np.copyto(dst, src)
    best = min(best, time.perf_counter() - t)
  return 2 * src.nbytes / best / 1e9


# The decode phase is timed as (generate N tokens) - (generate 1 token); with
# fewer steps than this, or a difference under `_MIN_DECODE_FRACTION` of the
# whole run, it is within timing noise and no per-step figure is printed.
_MIN_DECODE_STEPS = 8
_MIN_DECODE_FRACTION = 0.05


def decode_phase(total_s: float, prefill_s: float, steps: int
                 ) -> tuple[float | None, str]:
  """(decode seconds, "") or (None, why it cannot be timed)."""
  if steps < _MIN_DECODE_STEPS:
    return None, (f"only {steps} decode step(s); use --new_tokens >= "
                  f"{_MIN_DECODE_STEPS + 1}")
  decode_s = total_s - prefill_s
  if decode_s < _MIN_DECODE_FRACTION * total_s:
    return None, (f"decode phase {decode_s * 1e3:.1f} ms of {total_s * 1e3:.1f}"
                  " ms is within timing noise; use more --new_tokens")
  return decode_s, ""


def load(name: str, dtype: str):
  """(our model, torch model, config) with identical weights in `dtype`."""
  import jax.numpy as jnp
  import torch
  import transformers
  from armap_jax.models import ModelConfig, keymap, load_pretrained
  from armap_jax.models import gguf as gguf_lib
  from armap_jax.models import params as params_lib
  tdtype = getattr(torch, dtype)
  if name == "smollm2":
    path = gguf_lib.known_model_path("smollm2-135m-instruct")
    ours, _, config = load_pretrained("smollm2-135m-instruct",
                                      dtype=jnp.dtype(dtype))
    tmodel = None
    if _TORCH.value:
      tmodel = transformers.AutoModelForCausalLM.from_pretrained(
          os.path.dirname(path), gguf_file=os.path.basename(path),
          dtype=tdtype).eval()
    return ours, tmodel, config
  if name == "tiny":
    config = ModelConfig.tiny(arch="llama", vocab_size=512)
    torch.manual_seed(0)
    tmodel = transformers.AutoModelForCausalLM.from_config(
        config.to_hf_config(), dtype=torch.float32).eval()
    sd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    specs = {k: (v.shape, str(v.dtype)) for k, v in sd.items()}
    params = keymap.hf_to_ours(config, specs, sd.__getitem__, "torch")
    ours = params_lib.build_model(config, params, dtype=jnp.dtype(dtype),
                                  param_dtype=jnp.dtype(dtype))
    return ours, tmodel.to(tdtype), config
  raise app.UsageError(f"--models: unknown model {name!r}")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  import jax
  import numpy as np
  import torch
  from flax import nnx

  from armap_jax import decoding
  from armap_jax.runtime import machine

  torch.set_num_threads(_THREADS.value or os.cpu_count())
  bw = memory_bandwidth_gbs(_BW_MB.value)
  llc = machine.largest_cache_bytes()
  print(f"machine: {machine.describe()}; jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); memory copy bandwidth "
        f"{bw:.1f} GB/s (read+write, {_BW_MB.value} MiB)")
  new = _NEW_TOKENS.value
  rng = np.random.default_rng(0)
  summary = {}
  for name in _MODELS.value:
    ours, tmodel, config = load(name, _DTYPE.value)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(
        nnx.state(ours, nnx.Param)))
    weight_bytes = np.dtype(_DTYPE.value).itemsize * n_params
    dec = decoding.Decoder(ours, None, eos_token_ids=[],
                           unroll_layers=_UNROLL.value)
    if tmodel is not None:
      tmodel.generation_config.eos_token_id = None
    print(f"\n== {name}: {n_params / 1e6:.1f}M params ({weight_bytes / 1e6:.0f} "
          f"MB {_DTYPE.value}), prompt {_PROMPT_LEN.value}, {new} new tokens")
    for batch in [int(b) for b in _BATCHES.value]:
      prompts = rng.integers(3, min(config.vocab_size, 32000),
                             size=(batch, _PROMPT_LEN.value)).tolist()
      for mode in _MODES.value:
        knobs = (dict(temperature=0.0) if mode == "greedy" else
                 dict(temperature=0.8, top_p=0.95))

        def ours_run(n_new):
          out = dec.generate(prompts, max_new_tokens=n_new, seed=1, **knobs)
          assert all(g[0].completion_tokens == n_new for g in out)

        runs = {"ours": ours_run}
        ours_run(new)  # Compile.
        ours_run(1)
        if tmodel is not None:
          ids = torch.tensor(prompts)
          tkw = (dict(do_sample=False) if mode == "greedy" else
                 dict(do_sample=True, temperature=0.8, top_p=0.95, top_k=0))

          def torch_run(n_new):
            with torch.inference_mode():
              out = tmodel.generate(ids, attention_mask=torch.ones_like(ids),
                                    max_new_tokens=n_new,
                                    min_new_tokens=n_new, pad_token_id=0,
                                    **tkw)
            assert out.shape[1] == ids.shape[1] + n_new

          runs["torch"] = torch_run
          torch.manual_seed(0)
          with torch.inference_mode():  # Warm-up (first-call overheads).
            tmodel.generate(ids[:1, :8], max_new_tokens=2, pad_token_id=0,
                            **tkw)
        # Best of --repeats, the two sides interleaved in each round so that
        # a noisy spell on this shared machine hits both.
        best = {(side, n): float("inf") for side in runs for n in (new, 1)}
        for _ in range(_REPEATS.value):
          for (side, n_new) in best:
            t = time.perf_counter()
            runs[side](n_new)
            best[side, n_new] = min(best[side, n_new],
                                    time.perf_counter() - t)
        t_ours, t_prefill = best["ours", new], best["ours", 1]
        steps = new - 1
        ours_tps = batch * new / t_ours
        line = (f"{name:8s} batch {batch:3d} {mode:6s} ours {ours_tps:8.1f} "
                f"tok/s ({t_ours:6.2f} s; ")
        decode_s, why = decode_phase(t_ours, t_prefill, steps)
        if decode_s is None:
          line += f"decode per step not timed: {why})"
        else:
          read_gbs = weight_bytes * steps / decode_s / 1e9
          line += (f"decode {decode_s / steps * 1e3:6.1f} ms/step, weight "
                   f"reads {read_gbs:5.1f} GB/s")
          # Weights that fit in the last-level cache are not read from DRAM,
          # so the copy probe is no bound for them.
          line += (f" = {100 * read_gbs / bw:4.0f}% of copy bw)"
                   if weight_bytes > llc else ", weights fit in the CPU "
                   "cache: no DRAM bound)")
        if tmodel is not None:
          t_torch, t_torch_prefill = best["torch", new], best["torch", 1]
          torch_tps = batch * new / t_torch
          ratio = ours_tps / torch_tps
          summary[(name, batch, mode)] = ratio
          torch_decode_s, torch_why = decode_phase(t_torch, t_torch_prefill,
                                                   steps)
          line += f" | torch {torch_tps:8.1f} tok/s ({t_torch:6.2f} s"
          if torch_decode_s is not None:
            line += f"; decode {torch_decode_s / steps * 1e3:6.1f} ms/step"
          line += (f") | ours/torch {ratio:5.2f}x (prefill "
                   f"{t_torch_prefill / t_prefill:4.2f}x, decode step ")
          if decode_s is None or torch_decode_s is None:
            line += f"not timed: {why or torch_why})"
          else:
            line += f"{torch_decode_s / decode_s:4.2f}x)"
        print(line, flush=True)
  key = [k for k in summary if k[0] == "smollm2" and k[1] == 16]
  if key:
    parts = ", ".join(f"{k[2]} {summary[k]:.2f}x" for k in key)
    print(f"SmolLM2-135M batch 16 ours/torch tokens/s ratio: {parts}")
  else:
    print("SmolLM2-135M batch 16 ours/torch ratio: not measured "
          "(needs --models=smollm2 --batches=16 --torch)")


if __name__ == "__main__":
  launch.run_main(main)

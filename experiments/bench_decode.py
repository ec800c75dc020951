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

`--shared_prefix=512` times the prefix store instead (no torch): 16 prompts
sharing a 512-token prefix, each with its own 32-token suffix, with the store
cold (a new store per call: the prefix prefilled once, batch 1), warm (the
prefix taken from the store) and disabled (`prefix_cache=None`: every prompt
prefilled whole, every row holding its whole prompt), and prints the ratios.
`--peak_rows=256` measures the peak resident memory of one SmolLM2 call of
that many rows (histories x 4 samples) over a `--peak_prefix`-token shared
prompt, each setting in its own subprocess, with and without the store.

  python experiments/bench_decode.py --shared_prefix=512 --new_tokens=32
  python experiments/bench_decode.py --peak_rows=256 --peak_rows_disabled=64
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
_SHARED_PREFIX = flags.DEFINE_integer(
    "shared_prefix", 0, "> 0: time the prefix store (cold / warm / disabled) "
    "on prompts sharing this many tokens instead of the torch comparison",
    lower_bound=0)
_SUFFIX_LEN = flags.DEFINE_integer("suffix_len", 32, "--shared_prefix: each "
                                   "prompt's own tokens", lower_bound=1)
_PREFIX_PROMPTS = flags.DEFINE_integer(
    "prefix_prompts", 16, "--shared_prefix: prompts per call", lower_bound=1)
_KV_DTYPE = flags.DEFINE_enum("kv_dtype", None, ["float32", "bfloat16"],
                              "Decoder(kv_dtype=...) (default: the model's)")
_PEAK_ROWS = flags.DEFINE_integer(
    "peak_rows", 0, "> 0: peak resident memory of one SmolLM2 call of this "
    "many rows (histories x 4 samples), with and without the store, each in "
    "a subprocess", lower_bound=0)
_PEAK_ROWS_DISABLED = flags.DEFINE_integer(
    "peak_rows_disabled", 0, "--peak_rows: rows of the run without the store "
    "(0: --peak_rows; fewer where the whole-prompt copies do not fit)",
    lower_bound=0)
_PEAK_PREFIX = flags.DEFINE_integer("peak_prefix", 960, "--peak_rows: shared "
                                    "prompt tokens", lower_bound=1)
_RSS_PROBE = flags.DEFINE_enum(
    "rss_probe", None, ["store", "disabled"],
    "internal (--peak_rows' subprocess): one call, then print the peak RSS")


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


def load(name: str, dtype: str, with_torch: bool = True):
  """(our model, torch model, config) with identical weights in `dtype`
  (SmolLM2's torch model only with `with_torch` and --torch)."""
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
    if _TORCH.value and with_torch:
      tmodel = transformers.AutoModelForCausalLM.from_pretrained(
          os.path.dirname(path), gguf_file=os.path.basename(path),
          dtype=tdtype).eval()
    return ours, tmodel, config
  if name == "tiny":
    config = ModelConfig.tiny(arch="llama", vocab_size=512,
                              max_position_embeddings=2048)
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


def shared_prefix_bench(name: str, ours, config, rng) -> dict[str, float]:
  """Times --prefix_prompts prompts sharing --shared_prefix tokens with the
  store cold / warm / disabled; prints a line per mode and the ratios.
  Returns {mode: seconds} of the last --modes entry."""
  from armap_jax import decoding
  from armap_jax.decoding.prefix import PrefixCache
  vocab = min(config.vocab_size, 32000)
  prefix = rng.integers(3, vocab, size=_SHARED_PREFIX.value).tolist()
  prompts = [prefix + rng.integers(3, vocab, size=_SUFFIX_LEN.value).tolist()
             for _ in range(_PREFIX_PROMPTS.value)]
  new = _NEW_TOKENS.value

  def decoder(store):
    return decoding.Decoder(ours, None, eos_token_ids=[],
                            unroll_layers=_UNROLL.value, prefix_cache=store,
                            kv_dtype=_KV_DTYPE.value)

  times = {}
  for mode in _MODES.value:
    knobs = (dict(temperature=0.0) if mode == "greedy" else
             dict(temperature=0.8, top_p=0.95))
    disabled_dec, warm_dec = decoder(None), decoder(PrefixCache())
    decs = {"disabled": lambda: disabled_dec,
            "cold": lambda: decoder(PrefixCache()),  # A new store per call.
            "warm": lambda: warm_dec}
    prefilled = {}

    def run(dec):
      before = dec.stats["prefill_tokens"]
      t = time.perf_counter()
      out = dec.generate(prompts, max_new_tokens=new, seed=1, **knobs)
      elapsed = time.perf_counter() - t
      assert all(g[0].completion_tokens == new for g in out)
      return elapsed, dec.stats["prefill_tokens"] - before

    for m in decs:  # Compile (and fill the warm store).
      run(decs[m]())
    best = {m: float("inf") for m in decs}
    for _ in range(_REPEATS.value):
      for m in decs:  # Interleaved: a noisy spell hits every mode.
        elapsed, prefilled[m] = run(decs[m]())
        best[m] = min(best[m], elapsed)
    rows = len(prompts)
    for m in decs:
      print(f"{name:8s} shared prefix {_SHARED_PREFIX.value} + "
            f"{_SUFFIX_LEN.value} x {rows} prompts, {new} new, {mode:6s} "
            f"store {m:8s} {best[m]:7.3f} s ({rows * new / best[m]:8.1f} "
            f"tok/s), {prefilled[m]} prompt tokens prefilled", flush=True)
    ratio = lambda a, b: best[a] / best[b]
    print(f"{name:8s} {mode}: disabled/cold {ratio('disabled', 'cold'):5.2f}x"
          f", disabled/warm {ratio('disabled', 'warm'):5.2f}x, cold/warm "
          f"{ratio('cold', 'warm'):5.2f}x (time ratios, > 1: the store is "
          f"faster)", flush=True)
    times = best
  return times


def rss_probe(setting: str) -> None:
  """One SmolLM2 call of --peak_rows rows (histories x 4 samples) over a
  --peak_prefix-token shared prompt; prints the peak RSS before and after."""
  import resource

  import jax.numpy as jnp
  import numpy as np

  from armap_jax import decoding
  from armap_jax.decoding.prefix import PrefixCache
  from armap_jax.models import load_pretrained
  model, _, config = load_pretrained("smollm2-135m-instruct",
                                     dtype=jnp.dtype(_DTYPE.value))
  n = 4
  rows = _PEAK_ROWS.value if setting == "store" else (
      _PEAK_ROWS_DISABLED.value or _PEAK_ROWS.value)
  rng = np.random.default_rng(0)
  prefix = rng.integers(3, config.vocab_size, size=_PEAK_PREFIX.value).tolist()
  prompts = [prefix + rng.integers(3, config.vocab_size, size=int(k)).tolist()
             for k in rng.integers(16, 48, size=max(1, rows // n))]
  dec = decoding.Decoder(model, None, eos_token_ids=[],
                         prefix_cache=PrefixCache() if setting == "store"
                         else None, kv_dtype=_KV_DTYPE.value)
  gib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  loaded = gib()
  t = time.perf_counter()
  dec.generate(prompts, n=n, max_new_tokens=_NEW_TOKENS.value)
  elapsed = time.perf_counter() - t
  print(f"RSS_PROBE {setting} rows {len(prompts) * n} prompt "
        f"{_PEAK_PREFIX.value}+16..47 tokens, {_NEW_TOKENS.value} new, kv "
        f"{dec.kv_dtype or _DTYPE.value}: peak RSS {gib():.2f} GiB (after "
        f"loading the model {loaded:.2f} GiB), call {elapsed:.1f} s, "
        f"prefilled {dec.stats['prefill_tokens']} of "
        f"{dec.stats['prompt_tokens']} prompt tokens", flush=True)


def peak_memory() -> None:
  """Runs `rss_probe` for both settings, each in a fresh subprocess."""
  import subprocess
  import sys
  for setting in ("store", "disabled"):
    args = [sys.executable, os.path.abspath(__file__),
            f"--rss_probe={setting}", f"--peak_rows={_PEAK_ROWS.value}",
            f"--peak_rows_disabled={_PEAK_ROWS_DISABLED.value}",
            f"--peak_prefix={_PEAK_PREFIX.value}",
            f"--new_tokens={_NEW_TOKENS.value}", f"--dtype={_DTYPE.value}"]
    if _KV_DTYPE.value:
      args.append(f"--kv_dtype={_KV_DTYPE.value}")
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RSS_PROBE")]
    print(lines[0][len("RSS_PROBE "):] if lines else
          f"{setting}: probe failed (exit {out.returncode}): "
          f"{out.stderr.strip().splitlines()[-1:]}", flush=True)


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  if _RSS_PROBE.value:
    rss_probe(_RSS_PROBE.value)
    return
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
  if _PEAK_ROWS.value:
    peak_memory()
    return
  new = _NEW_TOKENS.value
  rng = np.random.default_rng(0)
  summary = {}
  for name in _MODELS.value:
    if _SHARED_PREFIX.value:
      ours, _, config = load(name, _DTYPE.value, with_torch=False)
      shared_prefix_bench(name, ours, config, rng)
      continue
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
  if _SHARED_PREFIX.value:
    pass
  elif key:
    parts = ", ".join(f"{k[2]} {summary[k]:.2f}x" for k in key)
    print(f"SmolLM2-135M batch 16 ours/torch tokens/s ratio: {parts}")
  else:
    print("SmolLM2-135M batch 16 ours/torch ratio: not measured "
          "(needs --models=smollm2 --batches=16 --torch)")


if __name__ == "__main__":
  launch.run_main(main)

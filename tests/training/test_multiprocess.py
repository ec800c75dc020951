"""Two processes on loopback (4 CPU devices each, gloo collectives) run the
same sharded train step as one process with 8 devices.

Run as a script, this file is the worker: `python test_multiprocess.py
<process_id> <port> <out.npz>`.
"""

import os
import socket
import subprocess
import sys

import numpy as np

STEPS = 3
BATCH = 8


def _setup(process_index=0, process_count=1):
  import jax
  from armap_jax import sharding as shd
  from armap_jax.training import trainer as T
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import rm_helpers as H

  tok = H.tiny_tokenizer()
  tds = H.tokenized(tok, H.marker_pairs(32), "pair")
  it = H.pair_iter(tds, BATCH, process_index=process_index,
                   process_count=process_count)
  mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2),
                       jax.devices())
  cfg = T.TrainConfig(batch_size=BATCH, lr=3e-3, warmup_steps=1)
  model = H.tiny_rm(tok)
  tr = T.Trainer(cfg, model, mesh)
  return tr, tr.init_state(model), it


def _train(tr, state, it):
  import jax
  from jax.experimental import multihost_utils
  losses = []
  for _ in range(STEPS):
    state, m = tr.train_step(state, next(it))
    losses.append(float(m["loss"]))
  params = multihost_utils.process_allgather(state["params"], tiled=True)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  return np.array(losses), flat


def _worker(pid: int, port: int, out: str):
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                             num_processes=2, process_id=pid)
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  tr, state, it = _setup(pid, 2)
  losses, params = _train(tr, state, it)
  if pid == 0:
    np.savez(out, losses=losses, **params)
  jax.distributed.shutdown()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, eight_devices):
  out = str(tmp_path / "mp.npz")
  port = _free_port()
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), str(i), str(port), out],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=900)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  got = np.load(out)

  tr, state, it = _setup()
  losses, params = _train(tr, state, it)
  np.testing.assert_allclose(got["losses"], losses, atol=1e-5)
  for k, v in params.items():
    np.testing.assert_allclose(got[k], v, atol=1e-5, err_msg=k)


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

"""Waiting for a server launched as a subprocess by a test."""

import time

import requests


def wait_healthy(proc, url: str, timeout_s: float = 120.0) -> None:
  """Polls `url`/health until it answers ok; fails with the server's stderr
  (when captured) if the process exits first, or after `timeout_s`."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      if requests.get(url + "/health", timeout=2).json()["ok"]:
        return
    except requests.RequestException:
      pass
    if proc.poll() is not None:
      err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
      raise AssertionError(f"server exited with {proc.returncode}: {err}")
    assert time.monotonic() < deadline, f"{url} not healthy in {timeout_s} s"
    time.sleep(0.2)

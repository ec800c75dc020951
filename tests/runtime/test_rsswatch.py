"""launch.RSSWatch: the highest resident memory sampled while a block runs."""

import time

import numpy as np

from armap_jax.runtime import launch


def test_rsswatch_sees_a_transient_allocation():
  before = launch.current_rss_bytes()
  assert before > 0
  with launch.RSSWatch(interval=0.01) as w:
    a = np.ones(64 << 20, np.uint8)  # 64 MiB, touched.
    time.sleep(0.1)
    del a
  assert w.peak_bytes >= before + (48 << 20)
  assert 0 < w.end_bytes <= w.peak_bytes

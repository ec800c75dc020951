"""launch.RSSWatch: the highest resident memory sampled while a block runs."""

import time

import numpy as np

from armap_jax.runtime import launch


def test_rsswatch_sees_a_transient_allocation():
  # The rest of a loaded test process moves its RSS by tens of MiB on its
  # own (a CI run saw 50 MiB of a 64 MiB block), so the block is large and
  # the margin half of it.
  before = launch.current_rss_bytes()
  assert before > 0
  with launch.RSSWatch(interval=0.01) as w:
    a = np.ones(256 << 20, np.uint8)  # 256 MiB, touched.
    time.sleep(0.1)
    del a
  assert w.peak_bytes >= before + (128 << 20)
  assert 0 < w.end_bytes <= w.peak_bytes

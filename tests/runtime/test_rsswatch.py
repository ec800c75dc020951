"""launch.RSSWatch: the highest resident memory sampled while a block runs."""

import time

import numpy as np
import pytest

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


def test_rsswatch_timeline_is_bounded_and_keeps_the_peak():
  with launch.RSSWatch(interval=0.001, points=8) as w:
    time.sleep(0.03)
    a = np.ones(256 << 20, np.uint8)
    time.sleep(0.03)
    del a
    time.sleep(0.1)
  assert 2 <= len(w.timeline) <= 8
  times = [t for t, _ in w.timeline]
  assert times == sorted(times)
  # The merged points keep the largest sample, so the peak is on the line.
  assert max(b for _, b in w.timeline) == w.peak_bytes
  assert w.timeline[-1][1] >= w.end_bytes  # The last point holds the end.


def test_rsswatch_rejects_a_one_point_timeline():
  with pytest.raises(ValueError, match="points"):
    launch.RSSWatch(points=1)

"""A store of prompt prefixes' keys/values, reused across decode calls.

`Decoder.generate` / `start` find the longest prefix (whole blocks of
`PrefixCache.block` tokens) that all prompts of a call share, take its
keys/values from here (or prefill them once, batch 1, and put them here) and
prefill only the prompts' suffixes. Searches call the decoder again and again
with prompts that share the task prompt (few-shot examples) and histories, so
later calls skip those tokens.

Keys: a chain hash per block boundary (the hash of block i covers every token
up to the end of block i), in a namespace per model weights + KV dtype (a
`Decoder.update` moves to a new namespace and drops the old one). One entry
holds the keys/values of `length` tokens, padded to `slots` (a few buckets,
`prefix_slots`) so that compiled programs stay few; it serves any of its block
boundaries (attention reads only a prefix's first `length` slots), so a call
whose prompts leave a stored prefix mid-way reuses the part before. Entries
are evicted least recently used first when their bytes would exceed
`max_bytes`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
from collections.abc import Hashable, Sequence
from typing import Any

import jax
import numpy as np

# Default `PrefixCache.block`: tokens per hashed block (a stored prefix is a
# whole number of blocks; shorter shared prefixes are not stored).
DEFAULT_BLOCK = 64
# The default store's bound (`default_max_bytes`): at most this, and at most
# `DEFAULT_MEMORY_FRACTION` of the memory the KV lives in.
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MEMORY_FRACTION = 1 / 8


def memory_bytes() -> int:
  """Memory of the default device: the accelerator's limit, or on CPU the
  machine's physical memory."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(stats["bytes_limit"])
  return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_max_bytes() -> int:
  """The bound of `Decoder(prefix_cache="auto")`'s store: min(1 GiB, an
  eighth of `memory_bytes()`)."""
  return int(min(DEFAULT_MAX_BYTES,
                 memory_bytes() * DEFAULT_MEMORY_FRACTION))


def prefix_slots(n: int, block: int) -> int:
  """Slots of a stored n-token prefix: n rounded up to a multiple of a
  quarter of its power-of-two octave (and of `block`): 512 -> 512, 576 ->
  768, 960 -> 1024, 1152 -> 1536. At most a third of the slots are padding,
  with four compiled shapes per octave."""
  step = max(block, (1 << max(0, (int(n) - 1).bit_length())) // 4)
  return -(-int(n) // step) * step


def chain_hashes(tokens: Sequence[int], block: int) -> list[bytes]:
  """Hash i covers tokens [0, (i + 1) * block): one per whole block."""
  ids = np.asarray(tokens, np.int64)
  out, h = [], b""
  for i in range(len(ids) // block):
    h = hashlib.blake2b(h + ids[i * block:(i + 1) * block].tobytes(),
                        digest_size=16).digest()
    out.append(h)
  return out


@dataclasses.dataclass
class Entry:
  """A stored prefix: `kv` {"k": [L, 1, K, H, slots], "v": [L, 1, K, slots,
  H]} whose first `length` slots hold its tokens' keys/values."""

  kv: Any
  length: int
  nbytes: int
  keys: tuple[tuple[Hashable, bytes], ...]  # (namespace, hash) it serves.


class PrefixCache:
  """Prefix keys/values by token blocks; LRU-bounded by bytes.

  Args:
    max_bytes: bound on the stored arrays' bytes (None: `default_max_bytes`).
      0 stores nothing (a `Decoder` then still shares one prefix within each
      call). An entry larger than the bound is not stored.
    block: tokens per block; only whole blocks are stored and matched.
  """

  def __init__(self, max_bytes: int | None = None,
               block: int = DEFAULT_BLOCK):
    if max_bytes is None:
      max_bytes = default_max_bytes()
    if int(max_bytes) < 0:
      raise ValueError(f"PrefixCache: max_bytes must be >= 0, got {max_bytes}")
    if int(block) < 1:
      raise ValueError(f"PrefixCache: block must be >= 1, got {block}")
    self.max_bytes = int(max_bytes)
    self.block = int(block)
    self._entries: collections.OrderedDict[int, Entry] = (
        collections.OrderedDict())
    self._index: dict[tuple[Hashable, bytes], dict[int, None]] = {}
    self._next_id = 0
    self._bytes = 0
    self._hits = self._misses = self._reused = self._evictions = 0

  def hashes(self, tokens: Sequence[int]) -> list[bytes]:
    return chain_hashes(tokens, self.block)

  def lookup(self, namespace: Hashable, hashes: Sequence[bytes]
             ) -> tuple[Entry | None, int]:
    """The entry holding the longest stored prefix among `hashes` (block
    boundaries of one token sequence) and that prefix's length in tokens;
    (None, 0) if none. Counts a hit or a miss."""
    for i in range(len(hashes) - 1, -1, -1):
      ids = self._index.get((namespace, hashes[i]))
      if ids:
        entry_id = next(reversed(ids))
        self._entries.move_to_end(entry_id)
        n = (i + 1) * self.block
        self._hits += 1
        self._reused += n
        return self._entries[entry_id], n
    self._misses += 1
    return None, 0

  def put(self, namespace: Hashable, hashes: Sequence[bytes], kv,
          length: int) -> bool:
    """Stores `kv` holding the first `length` tokens (a multiple of `block`;
    `hashes` their block hashes); evicts least recently used entries to stay
    within `max_bytes`. False if it is larger than the bound or shorter than
    a block (not stored)."""
    if length % self.block or length < self.block:
      raise ValueError(f"PrefixCache.put: length {length} is not a positive "
                       f"multiple of the block ({self.block})")
    if len(hashes) != length // self.block:
      raise ValueError(f"PrefixCache.put: {len(hashes)} hashes for {length} "
                       f"tokens")
    nbytes = sum(int(a.nbytes) for a in jax.tree.leaves(kv))
    if nbytes > self.max_bytes:
      return False
    while self._entries and self._bytes + nbytes > self.max_bytes:
      self._drop(next(iter(self._entries)))
      self._evictions += 1
    keys = tuple((namespace, h) for h in hashes)
    entry_id = self._next_id
    self._next_id += 1
    self._entries[entry_id] = Entry(kv=kv, length=int(length), nbytes=nbytes,
                                    keys=keys)
    self._bytes += nbytes
    for key in keys:
      self._index.setdefault(key, {})[entry_id] = None
    return True

  def _drop(self, entry_id: int) -> None:
    entry = self._entries.pop(entry_id)
    self._bytes -= entry.nbytes
    for key in entry.keys:
      ids = self._index.get(key)
      if ids is not None:
        ids.pop(entry_id, None)
        if not ids:
          del self._index[key]

  def invalidate(self, namespace: Hashable | None = None) -> None:
    """Drops the entries of `namespace` (None: all)."""
    for entry_id in [i for i, e in self._entries.items()
                     if namespace is None or e.keys[0][0] == namespace]:
      self._drop(entry_id)

  def stats(self) -> dict[str, int]:
    """hits / misses (lookups), tokens_reused (prefix tokens found),
    bytes and entries (now stored), evictions."""
    return {"hits": self._hits, "misses": self._misses,
            "tokens_reused": self._reused, "bytes": self._bytes,
            "entries": len(self._entries), "evictions": self._evictions}

  def __repr__(self) -> str:
    return (f"PrefixCache(max_bytes={self.max_bytes}, block={self.block}, "
            f"{self.stats()})")

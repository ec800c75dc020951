"""BM25 product search (bm25s), standing in for WebShop's Pyserini/Lucene index.

WebShop indexes each product as one document (title, description, bullet
points, options) and returns the top 50 hits for the keywords; we do the same
with `bm25s` (Lucene's BM25 variant, k1=1.5... defaults of bm25s). Only
documents that share a term with the query are returned (as Lucene does), in
order of decreasing score with ties broken by catalog order, so results are
deterministic. Retrieval is read-only and guarded by a lock, so one index can
serve many envs on many threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import bm25s
import numpy as np

from armap_jax.envs.webshop.catalog import Product

SEARCH_RETURN_N = 50


def product_document(p: Product) -> str:
  """The text indexed for a product."""
  opts = " ".join(v for vals in p.options.values() for v in vals)
  return " ".join([p.title, p.description, " ".join(p.bullet_points), opts])


class SearchEngine:
  """A BM25 index over a list of products."""

  def __init__(self, products: Sequence[Product]):
    self._asins = [p.asin for p in products]
    corpus = [product_document(p) for p in products]
    tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    self._bm25 = bm25s.BM25()
    self._bm25.index(tokens, show_progress=False)
    self._lock = threading.Lock()

  def search(self, keywords: str, k: int = SEARCH_RETURN_N) -> list[str]:
    """Asins of the top-`k` products for `keywords` (may be fewer, or none)."""
    toks = bm25s.tokenize([keywords], stopwords="en", show_progress=False,
                          return_ids=False)[0]
    if not toks or not self._asins:
      return []
    with self._lock:
      scores = np.asarray(self._bm25.get_scores(toks), dtype=np.float64)
    hits = np.nonzero(scores > 0)[0]
    if hits.size == 0:
      return []
    # Stable sort on -score keeps catalog order among ties.
    order = hits[np.argsort(-scores[hits], kind="stable")][:k]
    return [self._asins[i] for i in order]

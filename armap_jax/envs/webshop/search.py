"""BM25 product search (bm25s), standing in for WebShop's Pyserini/Lucene index.

WebShop (`search_engine/convert_product_file_format.py`) indexes each product
as one lowercased document: title, description, the first bullet point and the
options ("color: black, white, and size: s, m"), and returns the top 50 hits;
we index the same text with `bm25s` using Lucene's BM25 and Pyserini's default
parameters (k1=0.9, b=0.4) and English stop words. Deviation: Pyserini's
analyzer Porter-stems; we fold plurals with Harman's S-stemmer
("deodorants" -> "deodorant", "batteries" -> "battery"), which is simpler. Only documents that share a term
with the query are returned (as Lucene does), by decreasing score with ties
broken by catalog order, so results are deterministic. Retrieval is read-only
and guarded by a lock, so one index serves many envs on many threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import bm25s
import numpy as np

from armap_jax.envs.webshop.catalog import Product

SEARCH_RETURN_N = 50


def s_stem_word(w: str) -> str:
  """Harman's (1991) S-stemmer: folds English plurals."""
  if len(w) > 3 and w.endswith("ies") and not w.endswith(("eies", "aies")):
    return w[:-3] + "y"
  if len(w) > 3 and w.endswith("es") and not w.endswith(("aes", "ees", "oes")):
    return w[:-1]
  if len(w) > 2 and w.endswith("s") and not w.endswith(("us", "ss")):
    return w[:-1]
  return w


def s_stem(words: list[str]) -> list[str]:
  return [s_stem_word(w) for w in words]


def product_document(p: Product) -> str:
  """The text indexed for a product."""
  opts = ", and ".join(f"{name}: {', '.join(vals)}"
                       for name, vals in p.options.items())
  first_bullet = p.bullet_points[0] if p.bullet_points else ""
  return " ".join([p.title, p.description, first_bullet, opts]).lower()


class SearchEngine:
  """A BM25 index over a list of products."""

  def __init__(self, products: Sequence[Product]):
    self._asins = [p.asin for p in products]
    corpus = [product_document(p) for p in products]
    tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=s_stem,
                            show_progress=False)
    self._bm25 = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    self._bm25.index(tokens, show_progress=False)
    self._lock = threading.Lock()

  def search(self, keywords: str, k: int = SEARCH_RETURN_N) -> list[str]:
    """Asins of the top-`k` products for `keywords` (may be fewer, or none)."""
    toks = bm25s.tokenize([keywords], stopwords="en", stemmer=s_stem,
                          show_progress=False, return_ids=False)[0]
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

"""Small text helpers for WebShop: tokenizer, fuzzy matching, colour normalisation.

WebShop's reward (princeton-nlp/WebShop, `web_agent_site/engine/goal.py`) uses
`thefuzz.fuzz.token_set_ratio` (a thin wrapper over rapidfuzz) and spaCy noun
tags. We keep the package light and deterministic:

* `token_set_ratio` re-implements thefuzz's scorer (full-process the strings:
  lowercase, non-alphanumerics to spaces, ASCII only; then rapidfuzz's
  token-set ratio on Indel similarity; round to an int). It agrees with
  `thefuzz`/`rapidfuzz` (checked in tests when rapidfuzz is installed).
* `type_words` replaces spaCy's NOUN/PROPN filter with a tokenizer that keeps
  alphabetic words that are not stop words, colour/size adjectives or a short
  list of common descriptive adjectives. This is the one documented deviation
  from the original reward: titles whose nouns spaCy would tag differently can
  get a different `title_score`.
"""

from __future__ import annotations

import re
import unicodedata

# The colour list of WebShop's `engine/normalize.py` (data, kept verbatim).
COLOR_SET = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana",
    "beige", "black", "blue", "blush", "bordeaux", "bronze", "brown",
    "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper",
    "coral", "cranberry", "cream", "crystal", "dark", "denim", "eggplant",
    "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite",
    "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy",
    "khaki", "lavender", "lemon", "leopard", "light", "lilac", "lime",
    "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive",
    "orange", "peach", "pewter", "pink", "plum", "purple", "rainbow", "red",
    "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver", "skull",
    "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe",
    "teal", "tiger", "turquoise", "violet", "walnut", "wheat", "white", "wine",
    "yellow")

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just me more most my myself no
nor not now of off on once only or other our ours ourselves out over own same
she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself
yourselves x pack count oz ounce ounces inch inches lb lbs ml g kg pcs pc set
""".split())

# Common descriptive words a POS tagger would call adjectives (not nouns).
ADJECTIVES = frozenset("""
new best great high low long short small large big mini extra super premium
natural organic soft hard light heavy durable portable compact classic modern
vintage casual comfortable adjustable waterproof wireless professional
original fresh sweet hot cold warm cool pure simple strong thin thick slim
fit non free easy quick fast full double single multi ultra deluxe luxury
elegant cute fashion stylish unisex womens mens women's men's kids
""".split()) | frozenset(COLOR_SET)

_WORD = re.compile(r"[a-z][a-z']*")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_color(value: str) -> str:
  """WebShop's `normalize_color`: the first colour of COLOR_SET in `value`."""
  for color in COLOR_SET:
    if color in value:
      return color
  return value


def words(text: str) -> list[str]:
  """Lowercase alphabetic words of `text` (apostrophes kept inside words)."""
  return _WORD.findall(text.lower())


def type_words(title: str) -> list[str]:
  """Approximate spaCy's NOUN/PROPN tokens of a product title (see module doc)."""
  out = []
  for w in words(title):
    w = w.strip("'")
    if len(w) < 2 or w in STOP_WORDS or w in ADJECTIVES:
      continue
    out.append(w)
  return out


def full_process(text: str) -> str:
  """thefuzz's `full_process(force_ascii=True)`."""
  text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
  return _NON_ALNUM.sub(" ", text.lower()).strip()


def _lcs_len(a: str, b: str) -> int:
  """Length of the longest common subsequence (for the Indel distance)."""
  if len(a) < len(b):
    a, b = b, a
  prev = [0] * (len(b) + 1)
  for ca in a:
    cur = [0]
    for j, cb in enumerate(b):
      cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
    prev = cur
  return prev[-1]


def _indel(a: str, b: str) -> int:
  return len(a) + len(b) - 2 * _lcs_len(a, b)


def _norm_sim(dist: int, lensum: int) -> float:
  return 100.0 if lensum == 0 else 100.0 - 100.0 * dist / lensum


def token_set_ratio(s1: str, s2: str) -> int:
  """`thefuzz.fuzz.token_set_ratio(s1, s2)`: an int in [0, 100]."""
  p1, p2 = full_process(s1), full_process(s2)
  if not p1 or not p2:
    return 0
  a, b = set(p1.split()), set(p2.split())
  sect = a & b
  diff_ab, diff_ba = a - b, b - a
  if sect and (not diff_ab or not diff_ba):
    return 100
  ab = " ".join(sorted(diff_ab))
  ba = " ".join(sorted(diff_ba))
  sect_len = len(" ".join(sorted(sect)))
  sect_ab_len = sect_len + (1 if sect_len else 0) + len(ab)
  sect_ba_len = sect_len + (1 if sect_len else 0) + len(ba)
  result = _norm_sim(_indel(ab, ba), sect_ab_len + sect_ba_len)
  if sect_len:
    # "sect" vs "sect diff": the distance is the appended part.
    result = max(
        result,
        _norm_sim((1 if sect_len else 0) + len(ab), sect_len + sect_ab_len),
        _norm_sim((1 if sect_len else 0) + len(ba), sect_len + sect_ba_len))
  return int(round(result))

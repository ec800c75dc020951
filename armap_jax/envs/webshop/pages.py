"""WebShop pages as text.

A page is a list of elements (kind, text) with kind in
{"text", "button", "optname", "option"}, the visible strings of WebShop's HTML
templates in order. Two renderings:

* "text" (default): the form ReAct/ETO/ARMAP prompts use: one element a line,
  clickables in brackets (``[Back to Search]``, ``[B078GWRC1J]``,
  ``[Buy Now]``), each option group on one line (``size: [small] [large]``),
  and, as WebShop's `text_rich` mode does, a ``You have clicked X.`` line per
  selected option.
* "simple": WebShop's own `text` observation mode (what AgentGym's WebShop
  server returns): all visible strings joined by `` [SEP] ``, with the
  instruction shown on every page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from armap_jax.envs.webshop.catalog import Product

PRODUCT_WINDOW = 10
BACK_TO_SEARCH = "Back to Search"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BUY_NOW = "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")

Element = tuple[str, str]


def index_page(instruction: str) -> list[Element]:
  return [("text", "WebShop"), ("text", "Instruction:"), ("text", instruction),
          ("button", "Search")]


def results_page(products: Sequence[Product], page: int,
                 total: int) -> list[Element]:
  els: list[Element] = [("button", BACK_TO_SEARCH),
                        ("text", f"Page {page} (Total results: {total})")]
  if page > 1:
    els.append(("button", PREV_PAGE))
  if total > page * PRODUCT_WINDOW:
    els.append(("button", NEXT_PAGE))
  for p in products:
    els += [("button", p.asin), ("text", p.title), ("text", p.price_tag)]
  return els


def item_page(p: Product, show_attrs: bool = False) -> list[Element]:
  els: list[Element] = [("button", BACK_TO_SEARCH), ("button", PREV_PAGE)]
  for name, values in p.options.items():
    els.append(("optname", name))
    els += [("option", v) for v in values]
  els += [("text", p.title), ("text", f"Price: {p.price_tag}"),
          ("text", f"Rating: {p.rating}")]
  els += [("button", s) for s in SUB_PAGES]
  if show_attrs:
    els.append(("button", "Attributes"))
  els.append(("button", BUY_NOW))
  return els


def sub_page(p: Product, which: str) -> list[Element]:
  els: list[Element] = [("button", BACK_TO_SEARCH), ("button", PREV_PAGE)]
  if which == "Description":
    els.append(("text", p.description or "(no description)"))
  elif which == "Features":
    els += [("text", b) for b in p.bullet_points] or [("text", "(no features)")]
  elif which == "Reviews":
    for r in p.reviews:
      els += [("text", str(r.get("title", ""))),
              ("text", f"Rating: {r.get('score', 'N.A.')}"),
              ("text", str(r.get("body", "")))]
    if not p.reviews:
      els.append(("text", "(no reviews)"))
  else:  # Attributes
    els += [("text", a) for a in p.attributes]
  return els


# Observation text that states the verdict (removed by `data.rm_view`): the
# done page's score line and the score after it, in both renderings ("text":
# one element a line; "simple": elements joined by " [SEP] ").
OUTCOME_PATTERNS = (
    r"(?:\s*\[SEP\])?\s*Your score \(min 0\.0, max 1\.0\)"
    r"(?:\s*\[SEP\])?\s*[-+]?\d+(?:\.\d+)?",
)


def done_page(asin: str, options: Mapping[str, str],
              reward: float) -> list[Element]:
  opts = ", ".join(f"{k}: {v}" for k, v in options.items()) or "none"
  return [("text", "Thank you for shopping with us!"), ("text", "Purchased"),
          ("text", f"asin: {asin}"), ("text", f"options: {opts}"),
          ("text", "Your score (min 0.0, max 1.0)"), ("text", f"{reward:.4f}")]


def render(elements: Sequence[Element], mode: str, instruction: str,
           selected: Mapping[str, str] | None = None,
           is_index: bool = False) -> str:
  """Renders a page in `mode` ("text" or "simple")."""
  if mode == "simple":
    head: list[Any] = []
    if not is_index:
      head = ["Instruction:", instruction]
    return " [SEP] ".join(head + [t for _, t in elements])
  if mode != "text":
    raise ValueError(f"unknown observation mode {mode!r}; use 'text' or 'simple'")
  lines = [f"You have clicked {v}." for v in (selected or {}).values()]
  for kind, t in elements:
    if kind == "button":
      lines.append(f"[{t}]")
    elif kind == "optname":
      lines.append(f"{t}:")
    elif kind == "option":
      lines[-1] += f" [{t}]"
    else:
      lines.append(t)
  return "\n".join(lines)

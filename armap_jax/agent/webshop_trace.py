"""The WebShop state-trace prompt format (`WebShopTraceFormat`) and its tokenizer.

The shipped policy ``webshop-tiny`` reads one compact page and writes one
action. The prompt is built from the `History` (the goal and the *current*
page only: a shopping page shows everything the next action needs, and what
was already chosen shows as "clicked ..."):

    goal: find me tea tree, natural ingredients scrubs & body treatments,
     with color: red, and price lower than 40.00 dollars
    page: results 1
    [1] tea tree, natural ingredients, essential oils $12
    [2] ...
    [next >]
    last: search[tea tree, natural ingredients scrubs & body treatments]
    action:

and the model continues with `` search[...]`` / `` click[...]`` and a newline.
A listed product is named by its place on the page (``click[2]``, what a
small model can point at) and a search for the goal's own request (its text
without "find me", the options and the price) is written ``search[@goal]``
(a 1.4M-parameter model does not learn to copy ten words in minutes of CPU
training; other searches are written out); `parse_for(history, reply)` turns
both back into env actions (`LocalPolicy` calls it where a format has it).
Everything is lowercased (the env's clicks and searches are case-insensitive);
prices show whole dollars. `compact_page` parses the env's text rendering
(`envs/webshop/pages.render`, "text" mode).

`webshop_tokenizer(words)` is a word-level tokenizer: a word with its leading
space is one token (`` tea``), asins (``b0`` + 8 characters) are one token,
every digit, punctuation mark and lowercase letter is one token, so any text
in the trace alphabet round-trips exactly; words outside the vocabulary fall
back to letters.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History

FORMAT_NAME = "webshop-trace"
_ASIN = re.compile(r"^\[(b0[a-z0-9]{8})\]$", re.IGNORECASE)
_PRICE = re.compile(r"^\$(\d+)(?:\.\d+)?(?: to \$(\d+)(?:\.\d+)?)?$")
# Pre-tokenization: asins, words, then single characters (spaces attach to
# the following piece).
PIECE = r" ?b0[a-z0-9]{8}| ?[a-z]+| ?[0-9]| ?[^\sa-z0-9]|\s"


def _dollars(tag: str) -> str:
  m = _PRICE.match(tag.strip())
  return f"${m.group(1)}" if m else tag.strip()


MAX_ATTRS = 6  # Attributes shown per product (long titles are cut).


def _attrs_of(title: str) -> str:
  """A listed title's attribute part ("Brand Type - A, B" -> "a, b")."""
  attrs = title.split(" - ", 1)[-1].strip().lower().split(", ")
  return ", ".join(attrs[:MAX_ATTRS])


def compact_page(obs: str) -> list[str]:
  """The lines of the compact page for a text-mode WebShop observation."""
  lines = [ln.strip() for ln in obs.strip().split("\n") if ln.strip()]
  out: list[str] = []
  if lines and lines[0].startswith("Invalid action"):
    out.append("invalid action")
    lines = lines[1:]
  if lines and lines[0] == "WebShop":
    return out + ["page: search"]
  if any(ln.startswith("Thank you for shopping") for ln in lines):
    return out + ["page: done"]
  clicked = [ln[len("You have clicked "):-1].lower() for ln in lines
             if ln.startswith("You have clicked ")]
  lines = [ln for ln in lines if not ln.startswith("You have clicked ")]
  if len(lines) > 1 and lines[1].startswith("Page "):
    m = re.match(r"Page (\d+)", lines[1])
    out.append(f"page: results {m.group(1) if m else 1}")
    i = 2
    buttons = []
    k = 0
    while i < len(lines):
      ln = lines[i]
      am = _ASIN.match(ln)
      if am:
        title = lines[i + 1] if i + 1 < len(lines) else ""
        price = lines[i + 2] if i + 2 < len(lines) else ""
        k += 1
        out.append(f"[{k}] {_attrs_of(title)} {_dollars(price)}")
        i += 3
        continue
      if ln in ("[Next >]", "[< Prev]"):
        buttons.append(ln.lower())
      i += 1
    return out + buttons
  if any(ln.startswith("[Buy Now]") for ln in lines):
    out.append("page: item")
    for ln in lines:
      if re.match(r"^[a-z ]+: \[", ln):
        out.append(ln.lower())
      elif ln.startswith("Price: "):
        out.append(f"price {_dollars(ln[len('Price: '):])}")
    titles = [ln for ln in lines if " - " in ln and not ln.startswith("[")]
    if titles:
      out.insert(len(out) - 1, _attrs_of(titles[0]))
    if clicked:
      out.append("clicked: " + ", ".join(clicked))
    return out
  return out + ["page: other"]


def listed_asins(obs: str) -> list[str]:
  """The asins a results page lists, in order (the page's [1], [2], ...)."""
  if "Instruction:" in obs.split("\n", 3)[:2] or "[Buy Now]" in obs:
    return []
  return [m.group(1) for m in (
      _ASIN.match(ln.strip()) for ln in obs.split("\n")) if m]


GOAL_SEARCH = "search[@goal]"


def _goal_query(instruction: str) -> str:
  from armap_jax.envs.webshop.env import goal_query
  return goal_query(instruction)


def page_action(obs: str, action: str, instruction: str = "") -> str:
  """`action` as the trace writes it on page `obs`: a click on a listed
  product becomes ``click[k]`` (its place on the page); a search for the
  goal's own request (`envs.webshop.env.goal_query`) becomes
  ``search[@goal]``."""
  if instruction and action.strip().lower() == (
      f"search[{_goal_query(instruction)}]"):
    return GOAL_SEARCH
  m = re.match(r"^\s*click\[(b0[a-z0-9]{8})\]\s*$", action, re.IGNORECASE)
  asins = [a.lower() for a in listed_asins(obs)]
  if m and m.group(1).lower() in asins:
    return f"click[{asins.index(m.group(1).lower()) + 1}]"
  return action


def env_action(obs: str, action: str, instruction: str = "") -> str:
  """The env's action for a trace action on page `obs` (``click[k]`` -> the
  k-th listed product's asin; ``search[@goal]`` -> the goal's request)."""
  if instruction and action.strip().lower() == GOAL_SEARCH:
    return f"search[{_goal_query(instruction)}]"
  m = re.match(r"^click\[(\d+)\]$", action.strip())
  asins = listed_asins(obs)
  if m and 1 <= int(m.group(1)) <= len(asins):
    return f"click[{asins[int(m.group(1)) - 1]}]"
  return action


def trace_prompt(instruction: str, obs: str, last_action: str,
                 last_obs: str = "") -> str:
  """The prompt for one state (see the module docstring)."""
  body = "\n".join(compact_page(obs))
  last_action = page_action(last_obs, last_action, instruction)
  last = f"last: {prompts_lib.one_line(last_action).lower()}\n" if (
      last_action) else ""
  return (f"goal: {prompts_lib.one_line(instruction).lower()}\n{body}\n"
          f"{last}action:")


@dataclasses.dataclass(frozen=True)
class WebShopTraceFormat:
  """The prompt format of ``webshop-tiny`` (a `PromptFormat`)."""

  name: str = FORMAT_NAME
  stop: tuple[str, ...] = ("\n",)

  def text(self, history: History) -> str:
    obs = _current(history)
    last = history.steps[-1].action if history.steps else ""
    before = (history.steps[-2].observation if len(history.steps) > 1 else
              history.observation)
    return trace_prompt(history.instruction, obs, last, before)

  def parse_for(self, history: History, reply: str
               ) -> prompts_lib.ParsedAction:
    """`parse`, then ``click[k]`` -> the k-th product listed on the page."""
    pa = self.parse(reply)
    return dataclasses.replace(pa, action=env_action(
        _current(history), pa.action, history.instruction))

  def messages(self, history: History) -> list[prompts_lib.Message]:
    return [{"role": "user", "content": self.text(history)}]

  def parse(self, reply: str) -> prompts_lib.ParsedAction:
    line = next((ln.strip() for ln in reply.split("\n") if ln.strip()), "")
    ok = bool(re.match(r"^(search|click)\[.*\]$", line))
    return prompts_lib.ParsedAction(action=line, ok=ok)

  def target(self, action: str, thought: str = "") -> str:
    del thought
    return " " + prompts_lib.one_line(action).lower() + "\n"


def _current(history: History) -> str:
  return (history.steps[-1].observation if history.steps else
          history.observation)


# ----------------------------------------------------------------------------
# Tokenizer

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
_BASE = ([f"{s}{c}" for s in ("", " ") for c in
          "abcdefghijklmnopqrstuvwxyz0123456789"] +
         [f"{s}{c}" for s in ("", " ") for c in
          "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"] + ["\n", " "])
_FRAME = ("goal", "page", "search", "results", "item", "done", "other",
          "action", "last", "click", "clicked", "invalid", "price", "next",
          "prev", "buy", "now", "back", "to", "with", "and", "lower", "than",
          "dollars", "find", "me", "color", "size", "for")


def vocabulary(texts: Iterable[str], asins: Iterable[str]) -> list[str]:
  """The tokenizer's vocabulary: base characters, frame words, every word
  of `texts` (with and without its leading space) and every asin."""
  words = set(_FRAME)
  for t in texts:
    words.update(re.findall(r"[a-z]+", t.lower()))
  out = list(_BASE)
  for w in sorted(words):
    out += [w, " " + w]
  for a in sorted({a.lower() for a in asins}):
    out += [a, " " + a]
  return list(dict.fromkeys(out))


def webshop_tokenizer(vocab: list[str]):
  """A `PreTrainedTokenizerFast` over `vocab` (see the module docstring)."""
  import transformers
  from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                          pre_tokenizers, processors)
  specials = (PAD, BOS, EOS, UNK)
  pieces = list(specials) + list(vocab) + [
      f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
  ids = {t: i for i, t in enumerate(dict.fromkeys(pieces))}
  # WordPiece: an out-of-vocabulary word becomes its longest known prefix
  # followed by "##letter" pieces; the decoder drops the "##".
  tok = Tokenizer(models.WordPiece(vocab=ids, unk_token=UNK,
                                   continuing_subword_prefix="##",
                                   max_input_chars_per_word=200))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
  tok.decoder = decoders.Sequence([decoders.Replace("##", ""),
                                   decoders.Fuse()])
  tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                          for s in specials])
  tok.post_processor = processors.TemplateProcessing(
      single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
      special_tokens=[(BOS, ids[BOS])])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
      unk_token=UNK, clean_up_tokenization_spaces=False)

"""Offline search-tree viewer: one self-contained static HTML file per task.

No server, no CDN: inline CSS and a few lines of inline JS; opens from disk.
Each search tree (MCTS, beam, DVTS results carry `tree` node dicts) is drawn
as nested ``<details>`` (collapsible subtrees) showing each node's action,
observation, visits, Q, scorer score and ground truth; the chosen path is
highlighted and open by default. Below, the methods' final trajectories on
the task side by side. All model/env text is HTML-escaped (untrusted).

Test hook: a URL hash ``#expand=<node element id>[,<id>...]`` clicks those
nodes' summaries on load (opening them and their ancestors); the page then
writes the ids of the nodes the browser actually renders into
``#viewer-status[data-visible-ids]`` (recomputed on every toggle).
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from armap_jax.search.common import SearchResult

MAX_TEXT = 2000  # Characters of an observation shown (the rest elided).

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
.meta{color:#555}.tree ul{list-style:none;margin:0;padding-left:1.4em;
border-left:1px dotted #bbb}.tree>ul{border-left:none;padding-left:0}
li.node{margin:2px 0}summary{cursor:pointer;padding:1px 4px;border-radius:3px}
li.chosen>details>summary{background:#fff3b0;font-weight:600}
.act{font-family:monospace;background:#eef;padding:0 3px;border-radius:3px}
.stat{color:#555;font-size:.9em;margin-left:.5em}
.ok{color:#0a7d2c;font-weight:600}.bad{color:#b00020}
.obs{font-family:monospace;white-space:pre-wrap;font-size:.85em;
background:#f6f6f6;margin:2px 0 4px 1.2em;padding:3px 6px;max-height:12em;
overflow:auto}table.side{border-collapse:collapse;width:100%}
table.side td,table.side th{border:1px solid #ccc;vertical-align:top;
padding:4px;font-size:.9em}table.side th{background:#f0f0f0}
.legend span{margin-right:1em}button{margin-right:.5em}
"""

_JS = """
(function(){
  function nodes(){return Array.prototype.slice.call(
      document.querySelectorAll('li.node'));}
  function summaryOf(li){return li.querySelector(':scope > details > summary');}
  function shown(el){
    // Closed <details> hide their content (display:none or, in newer
    // engines, content-visibility:hidden): checkVisibility sees both.
    if(typeof el.checkVisibility==='function'){return el.checkVisibility();}
    return el.getClientRects().length>0;
  }
  function update(){
    var vis=[];
    nodes().forEach(function(li){var s=summaryOf(li);
      if(s && shown(s)){vis.push(li.id);}});
    var st=document.getElementById('viewer-status');
    st.setAttribute('data-visible-ids',vis.join(' '));
    st.setAttribute('data-visible-count',String(vis.length));
    st.textContent=vis.length+' of '+nodes().length+' nodes shown';
  }
  function openTo(li){
    var p=li.parentElement;
    while(p){if(p.tagName==='DETAILS'&&!p.open){p.open=true;}p=p.parentElement;}
  }
  function setAll(open){document.querySelectorAll('li.node > details')
      .forEach(function(d){d.open=open;});update();}
  document.getElementById('expand-all').addEventListener('click',
      function(){setAll(true);});
  document.getElementById('collapse-all').addEventListener('click',
      function(){setAll(false);});
  document.addEventListener('toggle',update,true);
  var m=/^#expand=(.+)$/.exec(window.location.hash||'');
  if(m){decodeURIComponent(m[1]).split(',').forEach(function(id){
    var li=document.getElementById(id);
    if(!li){console.warn('viewer: no node '+id);return;}
    openTo(li);var s=summaryOf(li);var d=s.parentElement;
    if(!d.open){s.click();}
  });}
  update();
})();
"""


def _e(x: Any) -> str:
  return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 3) -> str:
  if x is None:
    return "–"
  try:
    v = float(x)
  except (TypeError, ValueError):
    return _e(x)
  if not math.isfinite(v):
    return "–"
  return f"{v:.{digits}g}"


def _text(s: Any) -> str:
  s = "" if s is None else str(s)
  if len(s) > MAX_TEXT:
    s = s[:MAX_TEXT] + f"… [{len(s) - MAX_TEXT} more characters]"
  return _e(s)


def task_filename(task_id: str) -> str:
  """A safe, unique file name for a task id."""
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", task_id)[:60].strip("._") or "task"
  h = hashlib.sha1(task_id.encode("utf-8")).hexdigest()[:8]
  return f"{safe}-{h}.html"


def node_element_id(tree_index: int, node_id: Any) -> str:
  return f"t{tree_index}-n{node_id}"


def _children(tree: Sequence[Mapping[str, Any]]) -> dict[Any, list[Mapping]]:
  kids: dict[Any, list[Mapping]] = {}
  for n in tree:
    kids.setdefault(n.get("parent", -1), []).append(n)
  return kids


def _roots(tree: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  ids = {n["id"] for n in tree}
  return [n for n in tree if n.get("parent", -1) not in ids]


def _node_html(ti: int, n: Mapping[str, Any], kids: dict, out: list[str]
              ) -> None:
  """Appends node `n` and its subtree (iteratively: trees may be deep)."""
  stack: list[Any] = [("open", n)]
  while stack:
    kind, item = stack.pop()
    if kind == "close":
      out.append(item)
      continue
    n = item
    ch = kids.get(n["id"], [])
    chosen = bool(n.get("chosen"))
    cls = "node" + (" chosen" if chosen else "") + (" leaf" if not ch else "")
    gt = ""
    if n.get("terminal"):
      gt = ('<span class="ok">✔ success</span>' if n.get("success") else
            '<span class="bad">✘ failed</span>')
    action = n.get("action") or ("(root)" if n.get("parent", -1) < 0 else
                                 "(empty action)")
    extra = []
    for k in ("kept", "group", "prior"):
      if k in n and n[k] is not None:
        extra.append(f"{k} {_num(n[k]) if k == 'prior' else _e(n[k])}")
    out.append(
        f'<li class="{cls}" id="{node_element_id(ti, n["id"])}" '
        f'data-node="{_e(n["id"])}" data-children="{len(ch)}">'
        f'<details{" open" if chosen else ""}><summary>'
        f'<span class="act">{_text(action)}</span>'
        f'<span class="stat">#{_e(n["id"])} · visits {_e(n.get("visits", 0))}'
        f' · Q {_num(n.get("q"))} · score {_num(n.get("score"))}'
        f' · reward {_num(n.get("reward"))}'
        f' · children {len(ch)}{"".join(" · " + x for x in extra)}</span>'
        f' {gt}</summary>'
        f'<div class="obs">{_text(n.get("observation", ""))}</div>')
    stack.append(("close", "</details></li>"))
    if ch:
      stack.append(("close", "</ul>"))
      for c in reversed(ch):
        stack.append(("open", c))
      stack.append(("close", "<ul>"))


def tree_section(ti: int, label: str, result: SearchResult) -> str:
  """One result's tree as nested <details> (empty string if no tree)."""
  tree = list(result.tree)
  if not tree:
    return ""
  kids = _children(tree)
  out = [f'<section class="tree" data-tree="{ti}" data-label="{_e(label)}" '
         f'data-nodes="{len(tree)}"><h2>Search tree: {_e(label)} '
         f'({_e(result.method)} + {_e(result.scorer)}'
         f'{", upper bound" if result.scorer_is_oracle else ""}), '
         f'{len(tree)} nodes</h2><ul>']
  for r in _roots(tree):
    _node_html(ti, r, kids, out)
  out.append("</ul></section>")
  return "".join(out)


def _outcome(success: float) -> str:
  if success >= 1.0:
    return "<span class='ok'>✔ success</span>"
  if success <= 0.0:
    return "<span class='bad'>✘ no success</span>"
  return f"success {success:.2f} (mean over samples)"


def side_by_side(results: Mapping[str, SearchResult]) -> str:
  """The methods' final (chosen) trajectories in columns, step by step."""
  labels = list(results)
  if not labels:
    return ""
  head = "".join(
      f"<th>{_e(lab)}<br><span class='stat'>{_e(r.method)} + {_e(r.scorer)}"
      f"{' (upper bound)' if r.scorer_is_oracle else ''}</span></th>"
      for lab, r in results.items())
  rows = ["<tr><th>outcome</th>" + "".join(
      f"<td>{_outcome(r.success)}"
      f" · reward {_num(r.reward)} · scorer {_num(r.chosen_score)}"
      f" · {len(r.chosen.steps)} steps · {len(r.candidates)} candidates"
      "</td>" for r in results.values()) + "</tr>"]
  depth = max(len(r.chosen.steps) for r in results.values())
  for k in range(depth):
    cells = []
    for r in results.values():
      if k < len(r.chosen.steps):
        s = r.chosen.steps[k]
        th = (f"<div class='stat'>{_text(s.thought)}</div>" if s.thought
              else "")
        cells.append(f"<td>{th}<span class='act'>{_text(s.action)}</span>"
                     f"<div class='obs'>{_text(s.observation)}</div></td>")
      else:
        cells.append("<td></td>")
    rows.append(f"<tr><th>step {k + 1}</th>{''.join(cells)}</tr>")
  return ("<h2>Final trajectories side by side</h2><table class='side'>"
          f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")


def render_task(task_id: str, results: Mapping[str, SearchResult]) -> str:
  """The whole self-contained page for one task (label -> its result)."""
  first = next(iter(results.values()))
  # Trees are numbered in label order among the results that have one.
  trees = [tree_section(i, lab, r) for i, (lab, r) in
           enumerate((lab, r) for lab, r in results.items() if r.tree)]
  total = sum(len(r.tree) for r in results.values())
  return (
      "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
      "<meta name='viewport' content='width=device-width'>"
      f"<title>Task {_e(task_id)}</title><style>{_CSS}</style></head><body>"
      f"<h1>Task {_e(task_id)} <span class='meta'>({_e(first.env)})</span></h1>"
      f"<p class='meta'>Instruction: {_text(first.chosen.instruction)}</p>"
      "<p class='legend'><span style='background:#fff3b0'>chosen path</span>"
      "<span class='ok'>✔ terminal success</span><span class='bad'>✘ terminal"
      " failure</span><span>Q: the search's value; score: scorer; reward:"
      " env ground truth</span></p>"
      "<p><button id='expand-all' type='button'>Expand all</button>"
      "<button id='collapse-all' type='button'>Collapse all</button>"
      f"<span id='viewer-status' data-total-nodes='{total}'></span></p>"
      + ("".join(trees) if trees else
         "<p class='meta'>No search trees recorded for this task (only tree "
         "searches such as MCTS and beam record one).</p>")
      + side_by_side(results)
      + f"<script>{_JS}</script></body></html>")


def by_task(results_by_label: Mapping[str, Sequence[SearchResult]]
           ) -> dict[str, dict[str, SearchResult]]:
  """task id -> {label: result} (first result per label and task)."""
  out: dict[str, dict[str, SearchResult]] = {}
  for label, rs in results_by_label.items():
    for r in rs:
      out.setdefault(r.task_id, {}).setdefault(label, r)
  return out


def write_viewers(results_by_label: Mapping[str, Sequence[SearchResult]],
                  out_dir: str, max_tasks: int = 0) -> dict[str, str]:
  """Writes one page per task (the first `max_tasks`; 0 = all) and an
  index.html; returns task id -> path."""
  os.makedirs(out_dir, exist_ok=True)
  tasks = by_task(results_by_label)
  ids = list(tasks)[:max_tasks] if max_tasks else list(tasks)
  paths = {}
  for tid in ids:
    p = os.path.join(out_dir, task_filename(tid))
    with open(p, "w", encoding="utf-8") as f:
      f.write(render_task(tid, tasks[tid]))
    paths[tid] = p
  items = "".join(
      f"<li><a href='{_e(os.path.basename(p))}'>{_e(tid)}</a> "
      f"<span class='meta'>{_e(', '.join(tasks[tid]))}</span></li>"
      for tid, p in paths.items())
  with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
    f.write("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Search trees</title><style>{_CSS}</style></head><body>"
            f"<h1>Search trees ({len(paths)} tasks)</h1><ul>{items}</ul>"
            "</body></html>")
  return paths

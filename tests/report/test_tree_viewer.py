"""The offline search-tree viewer in a real headless browser (Debian's
chromium): loads from disk without console messages, shows every node,
expanding a node reveals its children, untrusted text stays text."""

import os
import re
import subprocess

import pytest

from armap_jax.records import Step, Trajectory
from armap_jax.report import tree_html
from armap_jax.rewards.oracle import make_oracle
from armap_jax.search import SEARCHERS, Budget
from armap_jax.search.common import Candidate, Compute, SearchResult

from search_helpers import env_factory, puzzles, random_policy

CHROMIUM = "/usr/bin/chromium"
EVIL_ACTION = "<script>console.error('pwned')</script>"
EVIL_OBS = "<img src=x onerror=\"console.error('xss')\"> & \"quotes\""

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent (Debian: apt-get install -y chromium); the "
    "viewer is tested in a real headless browser")


def _chromium(tmp, url, *extra):
  """Runs headless chromium once (--dump-dom unless a --screenshot is
  asked for: either makes it exit after load); returns (DOM, console lines).
  """
  profile = tmp / "profile"
  profile.mkdir(exist_ok=True)
  if not any(e.startswith("--screenshot") for e in extra):
    extra = ("--dump-dom", *extra)
  cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", *extra, url]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  console = [l for l in out.stderr.splitlines()
             if ":CONSOLE" in l or "Uncaught" in l]
  return out.stdout, console


def _evil_result(task_id):
  """A hand-made result whose every text field is hostile markup.
  Tree: 0 -> {1 (chosen), 2}; 2 -> {3, 4}."""
  steps = (Step(action=EVIL_ACTION, observation=EVIL_OBS, reward=1.0),)
  traj = Trajectory(task_id=task_id, env="game24", instruction=EVIL_OBS,
                    steps=steps, reward=1.0, success=True)
  tree = [
      {"id": 0, "parent": -1, "action": "", "observation": EVIL_OBS,
       "visits": 5, "q": 0.5, "score": None, "reward": 0.0, "success": False,
       "terminal": False, "chosen": True},
      {"id": 1, "parent": 0, "action": EVIL_ACTION, "observation": EVIL_OBS,
       "visits": 3, "q": 1.0, "score": 1.0, "reward": 1.0, "success": True,
       "terminal": True, "chosen": True},
      {"id": 2, "parent": 0, "action": "b", "observation": "o", "visits": 2,
       "q": 0.0, "score": 0.0, "reward": 0.0, "success": False,
       "terminal": False, "chosen": False},
      {"id": 3, "parent": 2, "action": "c", "observation": "o", "visits": 1,
       "q": 0.0, "score": 0.0, "reward": 0.0, "success": False,
       "terminal": True, "chosen": False},
      {"id": 4, "parent": 2, "action": "d", "observation": "o", "visits": 1,
       "q": 0.0, "score": 0.0, "reward": 0.0, "success": False,
       "terminal": True, "chosen": False},
  ]
  return SearchResult(
      task_id=task_id, env="game24", method="mcts", policy="evil",
      scorer="rm", scorer_is_oracle=False, chosen=traj, chosen_score=1.0,
      candidates=(Candidate(traj, 1.0),), reward=1.0, success=1.0,
      oracle_reward=1.0, oracle_success=1.0, compute=Compute(),
      budget=Budget(), tree=tuple(tree))


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
  """Viewer pages of 2 puzzles: a real beam search (oracle scorer, random
  legal policy), a real Best-of-N (no tree), and the hostile result."""
  ids = puzzles(2)
  budget = Budget(n=4, max_steps=4, width=2, expansions=2)
  policy, oracle = random_policy(), make_oracle("game24")
  beam = SEARCHERS["beam"]().run(ids, policy, oracle, env_factory, budget)
  bon = SEARCHERS["bon"]().run(ids, policy, oracle, env_factory, budget)
  evil = [_evil_result(ids[0])]
  out = tmp_path_factory.mktemp("viewer")
  paths = tree_html.write_viewers(
      {"beam-oracle": beam, "bon-oracle": bon, "zz-evil": evil}, str(out))
  return out, paths, {"beam": beam, "evil": evil[0]}


def _visible_ids(dom):
  m = re.search(r'id="viewer-status"[^>]*data-visible-ids="([^"]*)"', dom)
  assert m, "the page's script did not run (no data-visible-ids)"
  return set(m.group(1).split())


def _expected_visible(ti, tree, opened=()):
  """Nodes whose ancestors are all open (chosen nodes open by default)."""
  by_id = {n["id"]: n for n in tree}
  vis = set()
  for n in tree:
    p, ok = n["parent"], True
    while p in by_id:
      ok &= bool(by_id[p]["chosen"]) or p in opened
      p = by_id[p]["parent"]
    if ok:
      vis.add(tree_html.node_element_id(ti, n["id"]))
  return vis


def test_console_messages_are_caught(tmp_path):
  """Negative control: the console scan does see a page's errors."""
  p = tmp_path / "bad.html"
  p.write_text("<html><body><script>console.error('boom');"
               "undefinedFn();</script></body></html>")
  _, console = _chromium(tmp_path, p.as_uri())
  assert any("boom" in l for l in console)
  assert any("Uncaught" in l for l in console)


def test_viewer_in_headless_chromium(pages, tmp_path):
  out, paths, res = pages
  ids = list(paths)
  assert len(ids) == 2 and os.path.exists(out / "index.html")
  page = paths[ids[0]]
  src = open(page, encoding="utf-8").read()
  # Self-contained: no external resource of any kind.
  assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", src)
  assert "<link" not in src and "<script src" not in src
  beam_tree = res["beam"][0].tree
  evil_tree = res["evil"].tree
  assert beam_tree, "beam search recorded no tree"

  dom, console = _chromium(tmp_path, f"file://{page}")
  assert console == [], console
  # Every node of both trees is in the page (beam = tree 0, evil = tree 1).
  for ti, tree in ((0, beam_tree), (1, evil_tree)):
    got = re.findall(rf'<li class="node[^"]*" id="t{ti}-n(\d+)"', dom)
    assert sorted(map(int, got)) == sorted(n["id"] for n in tree)
  total = re.search(r'data-total-nodes="(\d+)"', dom).group(1)
  assert int(total) == len(beam_tree) + len(evil_tree)
  # Chosen path open, everything else collapsed, as rendered.
  before = _visible_ids(dom)
  assert before == (_expected_visible(0, beam_tree) |
                    _expected_visible(1, evil_tree))
  # Hostile text stays text: no element was injected, the text is shown.
  assert "<img" not in dom and "pwned" not in "".join(console)
  assert "&lt;script&gt;console.error('pwned')&lt;/script&gt;" in dom
  assert dom.count("<script>") == 1  # Only the viewer's own script.

  # Expanding node 2 of the hostile tree reveals exactly its children.
  kids = {"t1-n3", "t1-n4"}
  assert not kids & before
  dom2, console2 = _chromium(tmp_path, f"file://{page}#expand=t1-n2")
  assert console2 == [], console2
  assert _visible_ids(dom2) == before | kids
  # The same on the real beam tree, for a collapsed visible inner node.
  inner = [n for n in beam_tree if not n["chosen"] and
           tree_html.node_element_id(0, n["id"]) in before and
           any(c["parent"] == n["id"] for c in beam_tree)]
  if inner:
    n = inner[0]
    dom3, _ = _chromium(tmp_path, f"file://{page}#expand=t0-n{n['id']}")
    assert _visible_ids(dom3) == before | {
        tree_html.node_element_id(0, c["id"]) for c in beam_tree
        if c["parent"] == n["id"]}

  # Side by side: one column per method on this task.
  assert "Final trajectories side by side" in dom
  for label in ("beam-oracle", "bon-oracle", "zz-evil"):
    assert f"<th>{label}<br>" in dom

  shot = tmp_path / "viewer.png"
  _chromium(tmp_path, f"file://{page}#expand=t1-n2",
            f"--screenshot={shot}", "--window-size=1200,1400",
            "--hide-scrollbars")
  assert shot.read_bytes()[:4] == b"\x89PNG"
  print(f"viewer screenshot: {shot}")

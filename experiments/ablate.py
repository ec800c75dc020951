r"""Ablation grid over the main job's config: every combination of values,
each in its own resumable work directory, then one comparison table.

  python experiments/ablate.py --workdir=runs/ablate --quick \
      --grid='orm.train.steps=30,60;budget.n=4,8'
  python experiments/ablate.py --workdir=runs/ablate_maze --env=maze --quick \
      --grid='search.temperature=0.5,1.0' --parallel=2 \
      --config.eval.methods=greedy,bon

--grid: `field=v1,v2,...` axes separated by `;` over the main job's config
fields (`armap_jax/configs/armap.py`; a value holding a comma is quoted:
`eval.methods="greedy,bon","bon"`). --env, --quick, --config and
--config.<field>=... set the base config of every point, as for `armap-jax`.

Points run one after another in this process; --parallel=K runs them as K
independent `armap-jax` processes at a time. A point that fails (an
exception, or a process that exits non-zero or dies) is recorded with its
error and the others still run; the command exits 1 when any point failed.
Re-running the same command resumes: finished points are skipped, the others
resume their own stages. Writes <workdir>/grid.json (the base config and the
points), <workdir>/points.jsonl (each attempt's status, seconds and error),
<workdir>/<point>/ (a main-job work directory; --parallel: its log in
ablate.log) and <workdir>/comparison.{md,csv,png} (`report.compare`).
"""

import copy
import csv
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import traceback

from absl import app, flags, logging

from armap_jax import cli
from armap_jax.configs.sections import ConfigValueError
from armap_jax.pipeline.core import read_json, write_json
from armap_jax.report import compare
from armap_jax.runtime import launch

_GRID = flags.DEFINE_string(
    "grid", None, "Axes `field=v1,v2;field2=...` over the main job's config.")
_PARALLEL = flags.DEFINE_integer(
    "parallel", 0, "0: points one after another in this process; K >= 1: K "
    "independent armap-jax processes at a time.")
_RERUN = flags.DEFINE_bool("rerun", False, "Run finished points again too "
                           "(their stages are still skipped: resumes).")
_DRY = flags.DEFINE_bool("dry_run", False, "List the points and exit.")
flags.mark_flag_as_required("grid")

GRID_FILE = "grid.json"
POINTS_FILE = "points.jsonl"
LOG_FILE = "ablate.log"
ERROR_FILE = "ablate_error.txt"


class GridError(ConfigValueError):
  """A --grid that names no config field or holds an unusable value, or a
  work directory that holds another grid's points."""


def _fields(cfg, prefix=""):
  out = []
  for k, v in cfg.items():
    if hasattr(v, "items") and not isinstance(v, dict):
      out += _fields(v, f"{prefix}{k}.")
    else:
      out.append(f"{prefix}{k}")
  return out


def _get(cfg, dotted):
  node = cfg
  for k in dotted.split("."):
    if not hasattr(node, "items") or k not in node:
      return None, False
    node = node[k]
  return node, True


def _parse_value(field: str, text: str, current):
  """`text` as the type of the field's current value."""
  t = text.strip()
  try:
    if isinstance(current, bool):
      if t.lower() in ("true", "1", "yes"):
        return True
      if t.lower() in ("false", "0", "no"):
        return False
      raise ValueError(t)
    if isinstance(current, int):
      return int(t)
    if isinstance(current, float):
      return float(t)
  except ValueError:
    raise GridError(f"--grid: {field}={t!r}: expected "
                    f"{type(current).__name__} (the field's current value is "
                    f"{current!r})") from None
  if isinstance(current, str) or current is None:
    return t
  raise GridError(f"--grid: {field} holds a {type(current).__name__} "
                  f"({current!r}); only int, float, bool and str fields can "
                  "be a grid axis")


def parse_grid(text: str, cfg) -> list[tuple[str, list]]:
  """[(field, [values])] of `text` ("f=a,b;g=c"), each field checked against
  `cfg` and each value parsed as the field's type."""
  if not text or not text.strip():
    raise GridError("--grid: empty (expected `field=v1,v2;field2=...`)")
  axes, names = [], _fields(cfg)
  for part in [p for p in text.split(";") if p.strip()]:
    field, eq, values = part.partition("=")
    field = field.strip().removeprefix("config.")
    if not eq or not field:
      raise GridError(f"--grid: {part.strip()!r}: expected field=v1,v2,...")
    current, found = _get(cfg, field)
    if not found or hasattr(current, "items"):
      import difflib
      leaf = field.rsplit(".", 1)[-1]
      near = [f for f in names if f.rsplit(".", 1)[-1] == leaf][:3] or \
          difflib.get_close_matches(field, names, n=3, cutoff=0.5)
      hint = f" (did you mean {', '.join(near)}?)" if near else ""
      raise GridError(f"--grid: no config field {field!r} in the main job's "
                      f"config{hint}")
    if field in (a for a, _ in axes):
      raise GridError(f"--grid: {field} is given twice")
    raw = next(csv.reader([values], skipinitialspace=True), [])
    vals = [_parse_value(field, v, current) for v in raw if v.strip()]
    if not vals:
      raise GridError(f"--grid: {field} has no values")
    if len(set(map(repr, vals))) != len(vals):
      raise GridError(f"--grid: {field} repeats a value: {vals}")
    axes.append((field, vals))
  return axes


def point_name(assign: list[tuple[str, object]]) -> str:
  """A directory name from the assignments (a hash suffix where characters
  had to be replaced or the name is long)."""
  text = "__".join(f"{k}={v}" for k, v in assign)
  safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", text)
  if safe != text or len(safe) > 120:
    h = hashlib.sha256(json.dumps(assign).encode()).hexdigest()[:8]
    safe = f"{safe[:100]}-{h}"
  return safe


def points(axes) -> list[dict]:
  out = []
  for combo in itertools.product(*(vals for _, vals in axes)):
    assign = [(f, v) for (f, _), v in zip(axes, combo)]
    out.append({"name": point_name(assign), "overrides": dict(assign)})
  return out


def _flag_text(v) -> str:
  return repr(v) if isinstance(v, float) else str(v)


def base_args(argv: list[str]) -> list[str]:
  """The --config and --config.<field> arguments of the command line (the
  base config of every point)."""
  out, skip = [], False
  for k, a in enumerate(argv[1:], 1):
    if skip:
      skip = False
      continue
    if a == "--config" or (a.startswith("--config.") and "=" not in a):
      out += [a, argv[k + 1]] if k + 1 < len(argv) else [a]
      skip = True
    elif a.startswith("--config=") or a.startswith("--config."):
      out.append(a)
  return out


def _record(root: str, row: dict) -> None:
  with open(os.path.join(root, POINTS_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(row, sort_keys=True) + "\n")


def is_finished(point_dir: str) -> bool:
  return os.path.exists(os.path.join(point_dir, "stages", "report.done"))


def run_inline(cfg, overrides: dict, point_dir: str) -> str | None:
  """One point in this process; the error (type and first line) or None."""
  from armap_jax import pipeline
  c = copy.deepcopy(cfg)
  for k, v in overrides.items():
    node, _, leaf = k.rpartition(".")
    (c if not node else _get(c, node)[0])[leaf] = v
  try:
    pipeline.run(c, point_dir)
    return None
  except Exception as e:  # pylint: disable=broad-except
    os.makedirs(point_dir, exist_ok=True)
    with open(os.path.join(point_dir, ERROR_FILE), "w", encoding="utf-8") as f:
      f.write(traceback.format_exc())
    logging.error("point %s failed: %s: %s", point_dir, type(e).__name__, e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:500]


def _command(base: list[str], overrides: dict, point_dir: str) -> list[str]:
  return ([sys.executable, "-m", "armap_jax.cli", f"--workdir={point_dir}"] +
          base + [f"--config.{k}={_flag_text(v)}" for k, v in
                  overrides.items()])


def _process_error(log_path: str, rc: int) -> str:
  try:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      lines = [l.rstrip() for l in f if l.strip()]
  except OSError:
    lines = []
  err = [l for l in lines if l.startswith("error:")]
  tail = err[-1] if err else (lines[-1] if lines else "")
  return f"exit {rc}: {tail}"[:500]


def run_processes(todo: list[dict], root: str, base: list[str], k: int,
                  on_done) -> None:
  """Runs the points as `armap-jax` processes, `k` at a time."""
  queue, running = list(todo), []
  try:
    _schedule(queue, running, root, base, k, on_done)
  finally:  # Interrupted: no point keeps running without its grid.
    for _, proc, log, _ in running:
      proc.terminate()
      proc.wait()
      log.close()


def _schedule(queue, running, root, base, k, on_done) -> None:
  while queue or running:
    while queue and len(running) < k:
      p = queue.pop(0)
      d = os.path.join(root, p["name"])
      os.makedirs(d, exist_ok=True)
      log = open(os.path.join(d, LOG_FILE), "a", encoding="utf-8")
      cmd = _command(base, p["overrides"], d)
      log.write(f"$ {' '.join(cmd)}\n")
      log.flush()
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
      logging.info("point %s: started (pid %d)", p["name"], proc.pid)
      running.append((p, proc, log, time.perf_counter()))
    time.sleep(0.5)
    for item in list(running):
      p, proc, log, t0 = item
      rc = proc.poll()
      if rc is None:
        continue
      log.close()
      running.remove(item)
      err = None if rc == 0 else _process_error(
          os.path.join(root, p["name"], LOG_FILE), rc)
      on_done(p, time.perf_counter() - t0, err)


def check_grid_file(root: str, base: list[str], env: str, pts) -> None:
  """Records the base config in grid.json, or refuses a different one (the
  points would mix two base configs)."""
  path = os.path.join(root, GRID_FILE)
  known = read_json(path) if os.path.exists(path) else None
  if known is not None and known.get("base_args") != base:
    raise GridError(
        f"{path}: this grid was run with base arguments "
        f"{known.get('base_args')}, this command has {base}; use another "
        "--workdir (or remove it) rather than mixing points")
  names = {p["name"]: p for p in (known or {}).get("points", [])}
  names.update({p["name"]: p for p in pts})
  write_json(path, {"base_args": base, "env": env,
                    "points": sorted(names.values(), key=lambda p: p["name"])})


def run_grid(cfg, root: str, axes, base: list[str], parallel: int = 0,
             rerun: bool = False, title: str = "Ablation"):
  """Runs every point of `axes` over the base config `cfg` (`base`: the same
  as command-line arguments, for --parallel's processes) into `root`.

  Returns ({point name: error or None for the points run}, the
  `report.compare.Comparison` of the finished points or None)."""
  pts = points(axes)
  os.makedirs(root, exist_ok=True)
  check_grid_file(root, base, cfg.env.name, pts)
  todo = []
  for p in pts:
    if is_finished(os.path.join(root, p["name"])) and not rerun:
      logging.info("point %s: finished, skipped", p["name"])
    else:
      todo.append(p)
  status: dict[str, str | None] = {}

  def on_done(p, seconds, err):
    status[p["name"]] = err
    _record(root, {"point": p["name"], "overrides": p["overrides"],
                   "status": "ok" if err is None else "failed",
                   "seconds": round(seconds, 2), "error": err,
                   "mode": "process" if parallel else "inline",
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime())})
    logging.info("point %s: %s in %.1fs", p["name"],
                 "ok" if err is None else f"FAILED ({err})", seconds)

  logging.info("ablation: %d points (%d to run) in %s", len(pts), len(todo),
               root)
  if parallel:
    run_processes(todo, root, base, parallel, on_done)
  else:
    for p in todo:
      t0 = time.perf_counter()
      err = run_inline(cfg, p["overrides"], os.path.join(root, p["name"]))
      on_done(p, time.perf_counter() - t0, err)
  done = [p["name"] for p in pts if is_finished(os.path.join(root,
                                                             p["name"]))]
  comparison = None
  if done:
    comparison = compare.compare([os.path.join(root, n) for n in done], done)
    compare.write(comparison, root, title)
  return status, comparison


def main(argv):
  del argv
  cfg = cli._config()  # pylint: disable=protected-access
  axes = parse_grid(_GRID.value, cfg)
  if _PARALLEL.value < 0:
    raise app.UsageError(f"--parallel={_PARALLEL.value}: expected >= 0")
  if _DRY.value:
    for p in points(axes):
      print(f"{p['name']}: {p['overrides']}")
    return
  if not _PARALLEL.value:
    from armap_jax.runtime import hostmem
    hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  root = _root(cfg)
  status, comparison = run_grid(cfg, root, axes, base_args(sys.argv),
                                _PARALLEL.value, _RERUN.value,
                                f"Ablation: {_GRID.value}")
  if comparison is not None:
    with open(os.path.join(root, "comparison.md"), encoding="utf-8") as f:
      sys.stdout.write(f.read())
  failed = {k: v for k, v in status.items() if v}
  for name, err in failed.items():
    sys.stderr.write(f"point {name} failed: {err}\n")
  if failed:
    sys.stderr.write(f"{len(failed)} of {len(points(axes))} points failed; "
                     f"see {os.path.join(root, POINTS_FILE)}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _root(cfg=None) -> str:
  wd = cli._WORKDIR.value  # pylint: disable=protected-access
  if not wd:
    cfg = cfg or cli._config()  # pylint: disable=protected-access
    wd = f"runs/ablate_{cfg.env.name}"
  return os.path.abspath(wd)


if __name__ == "__main__":
  launch.run_main(main, argv=cli.with_default_config(list(sys.argv)),
                  workdir=_root)

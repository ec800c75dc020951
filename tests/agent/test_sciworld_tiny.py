"""The shipped ScienceWorld policy reads the observation: it looks around in
a room it has not seen, and focuses on a thing the room it saw holds (another
room, another thing), on dev tasks."""

import shutil

import pytest

pytest.importorskip("scienceworld")
if shutil.which("java") is None:
  pytest.skip("ScienceWorld needs Java on PATH", allow_module_level=True)

from armap_jax.agent.policy import GREEDY, History  # noqa: E402
from armap_jax.agent.sciworld_trace import (SciWorldTraceFormat,  # noqa: E402
                                            parse_room, state_of)
from armap_jax.configs import sections  # noqa: E402
from armap_jax.envs import registry  # noqa: E402
from armap_jax.records import Step  # noqa: E402


@pytest.fixture(scope="module")
def policy():
  from armap_jax.agent.factory import make_policy, prompt_format
  pcfg, ecfg = sections.policy("sciworld-tiny"), sections.env("sciworld")
  assert isinstance(prompt_format(pcfg, ecfg), SciWorldTraceFormat)
  return make_policy(pcfg, ecfg)


def _history(env, tid, actions):
  obs0 = env.reset(tid)
  steps = []
  for a in actions:
    r = env.step(a)
    steps.append(Step(a, r.observation, info=dict(r.info)))
  return History(env="sciworld", task_id=tid, instruction=env.instruction,
                 observation=obs0, steps=tuple(steps))


def _outside(env, tid):
  """The history of `tid` up to its gold plan's first focus, with a look
  around in the room where the focus happens."""
  gold = env.gold_actions(tid)
  i = next(k for k, a in enumerate(gold) if a.startswith("focus on"))
  acts = list(gold[:i])
  if not acts or acts[-1] != "look around":
    acts.append("look around")
  return _history(env, tid, acts)


def test_format_shows_room_things_and_recent_actions():
  obs = ("This outside location is called the outside. Here you see: \n"
         "\tthe agent\n\ta substance called air\n\ta baby beaver\n"
         "\ta parrot egg\nYou also see:\n"
         "\tA door to the kitchen (that is closed)\n")
  h = History(env="sciworld", task_id="x/1", instruction="Your task is to X.",
              observation="This room is called the hallway. In it, you see: "
              "\n\tthe agent\nYou also see:\n\tA door to the kitchen (that "
              "is open)\n")
  h = h.extend(Step("go to outside", "You move to the outside."))
  text = SciWorldTraceFormat().text(h)
  assert "room: outside\nsee: (not looked)" in text
  assert "> go to outside: you move to the outside." in text
  h = h.extend(Step("look around", obs))
  text = SciWorldTraceFormat().text(h)
  assert "see: air, baby beaver, parrot egg" in text
  assert "doors: kitchen closed" in text and text.startswith("task: x.")
  assert state_of(h)["room"] == "outside" and parse_room(obs)


def test_actions_follow_the_observation(policy):
  """Where it looks and what it focuses on come from the observation: in the
  room a non-living thing is to be found, it focuses on a thing that room
  lists; shown another room (another task's), on a thing of that room; just
  arrived in that room, it looks around first."""
  spec = registry.get_spec("sciworld")
  env = spec.factory(max_steps=20)()
  try:
    dev = [t for t in spec.splits("dev")
           if t.startswith("find-non-living-thing/")]
    hs = {t: _outside(env, t) for t in dev[:4]}
    room = {t: parse_room(h.steps[-1].observation)["room"]
            for t, h in hs.items()}
    a = dev[0]
    b = next(t for t in dev[1:4] if room[t] != room[a])
    ha, hb = hs[a], hs[b]
    # Task a, but the room that task b's plan reaches.
    swapped = History(env="sciworld", task_id=a, instruction=ha.instruction,
                      observation=ha.observation, steps=hb.steps)
    # Just arrived in the room, before looking around.
    fresh = History(env="sciworld", task_id=a, instruction=ha.instruction,
                    observation=ha.observation, steps=ha.steps[:-1])
    assert fresh.steps and fresh.steps[-1].observation.startswith(
        "You move to")
    acts = [p[0].action for p in policy.propose([ha, swapped, fresh], 1,
                                                GREEDY)]
  finally:
    env.close()
  assert acts[2] == "look around", acts
  for act, h in zip(acts[:2], (ha, swapped)):
    assert act.startswith("focus on "), acts
    seen = " ".join(parse_room(h.steps[-1].observation)["see"])
    assert all(w in seen for w in act[len("focus on "):].split()), (act, seen)
  assert acts[0] != acts[1]  # Another room: another thing.

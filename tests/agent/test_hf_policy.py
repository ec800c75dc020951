"""HFPolicy (transformers generate, one history per call) against LocalPolicy:
the same prompts, greedy proposals equal on the same weights, n candidates
per history, and its prefill count (n copies of each prompt)."""

import dataclasses

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agent_helpers import byte_tokenizer  # noqa: E402
from torch_helpers import torch_and_ours  # noqa: E402

from armap_jax.agent import prompts  # noqa: E402
from armap_jax.agent.hf_policy import HFPolicy, completion_length  # noqa: E402
from armap_jax.agent.local_policy import LocalPolicy  # noqa: E402
from armap_jax.agent.policy import GREEDY, History, Sampling  # noqa: E402
from armap_jax.models.config import ModelConfig  # noqa: E402
from armap_jax.records import Step  # noqa: E402


def _pair(tok):
  config = ModelConfig.tiny(vocab_size=272, bos_token_id=1, eos_token_id=2,
                            pad_token_id=0, max_position_embeddings=1024,
                            tie_word_embeddings=False)
  return torch_and_ours(config)


def _histories():
  h = History(env="game24", task_id="game24/1", instruction="Use 4 5 6 10.",
              observation="Numbers: 4 5 6 10")
  return [h, h.extend(Step(action="4 + 5 = 9 (left: 6 9 10)",
                           observation="Numbers: 6 9 10"))]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
  """torch's spinning worker threads crawl on a busy shared CPU; the tiny
  model needs one."""
  n = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(n)


@pytest.fixture(scope="module", params=[True, False], ids=["chat", "text"])
def policies(request):
  tok = byte_tokenizer(chat=request.param)
  tmodel, ours = _pair(tok)
  fmt = prompts.get_format("game24", "tot")
  local = LocalPolicy(ours, tok, fmt=fmt)
  ref = HFPolicy(tmodel, tok, fmt=fmt, eos_token_ids=local.decoder.eos_token_ids,
                 context_length=local.decoder.context)
  assert ref.chat == local.chat == request.param
  return local, ref


def test_same_prompts(policies):
  local, ref = policies
  for h in _histories():
    assert ref.prompt_ids(h, 16) == local.prompt_ids(h, 16)
  # Left truncation to the context follows the same rule.
  short = HFPolicy(ref.model, ref.tokenizer, fmt=ref.fmt, context_length=40)
  h = _histories()[1]
  ids = short.prompt_ids(h, 8)
  assert len(ids) == 32 and ids == local.prompt_ids(h, 8)[-32:]


def test_greedy_proposals_equal_ours(policies):
  local, ref = policies
  samp = dataclasses.replace(GREEDY, max_new_tokens=12)
  before = dict(ref.stats)
  got = ref.propose(_histories(), 2, samp)
  want = local.propose(_histories(), 2, samp)
  assert [[p.text for p in ps] for ps in got] == [[p.text for p in ps]
                                                  for ps in want]
  assert [[p.completion_tokens for p in ps] for ps in got] == [
      [p.completion_tokens for p in ps] for ps in want]
  assert [[p.action for p in ps] for ps in got] == [[p.action for p in ps]
                                                    for ps in want]
  lens = [local.prompt_ids(h, 12) for h in _histories()]
  assert ref.stats["calls"] - before["calls"] == 2  # One per history.
  # Greedy: one row per call, copied n times.
  assert (ref.stats["prefill_tokens"] - before["prefill_tokens"] ==
          sum(len(x) for x in lens))
  assert (ref.stats["generated_tokens"] - before["generated_tokens"] ==
          sum(ps[0].completion_tokens for ps in want))


def test_sampled_n_per_history_seeded(policies):
  _, ref = policies
  samp = Sampling(temperature=1.0, max_new_tokens=10, seed=3)
  before = dict(ref.stats)
  a = ref.propose(_histories(), 3, samp)
  assert [len(ps) for ps in a] == [3, 3]
  assert all(1 <= p.completion_tokens <= 10 for ps in a for p in ps)
  assert (ref.stats["prefill_tokens"] - before["prefill_tokens"] ==
          3 * sum(ps[0].prompt_tokens for ps in a))
  b = ref.propose(_histories(), 3, samp)
  assert [[p.text for p in ps] for ps in a] == [[p.text for p in ps]
                                                for ps in b]
  c = ref.propose(_histories(), 3, dataclasses.replace(samp, seed=4))
  assert [[p.text for p in ps] for ps in a] != [[p.text for p in ps]
                                                for ps in c]


def test_completion_length():
  dec = lambda ids: "".join(chr(96 + i) for i in ids)  # 1 -> "a", ...
  assert completion_length([5, 6, 2, 0, 0], [2], (), dec) == 3  # EOS kept.
  assert completion_length([5, 6, 7], [2], (), dec) == 3  # Ran out.
  # The token that completes a stop string ends the row; padding follows.
  assert completion_length([1, 2, 3, 4, 4], [9], ("bc",), dec) == 3
  assert completion_length([1, 2, 3, 9, 4], [9], ("cd",), dec) == 4


def test_stop_strings_read_the_completion_only():
  """A prompt ending in "\\n" and a row whose first word is "Obs" must not
  match the stop string "\\nObs" (transformers' `stop_strings` would)."""
  from armap_jax.agent.hf_policy import stop_on_completion
  dec = lambda ids: "".join(chr(i) for i in ids)
  prompt = [ord(c) for c in "Task\n"]
  rows = torch.tensor([prompt + [ord(c) for c in "Obs.."],
                       prompt + [ord(c) for c in "a\nObs"]])
  crit = stop_on_completion(len(prompt), ("\nObs",), dec)
  assert crit(rows, None).tolist() == [False, True]

"""Continuous batching in the llama.cpp loader (parallel=N, loaders/llamacpp_batch.py),
on the built-in model through real llama.cpp: replies decode together, each with its
own limits, stop strings and seed; a newcomer starts while others run; a cancelled
reply or a client that hangs up frees its sequence at once; a chat's next turn
evaluates only its new tokens; a lone greedy reply is the one parallel=1 gives."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from loaders.errors import UserError
from loaders.params import GenerationParams
from tests.support import running_server
from webui.hearth import Hearth
from webui.runtime.generation import Delta, Finished, GenerationJob, LogprobsRequest

PROMPT = "<|im_start|>user\nWrite a story about {}.<|im_end|>\n<|im_start|>assistant\n"
LONG = GenerationParams(temperature=0, max_new_tokens=900, ignore_eos=True)
WAIT = 60.0  # seconds: generous for a shared, loaded 2-core machine


@pytest.fixture(scope="module")
def batched(default_model):
    core = Hearth(models_dir=Path(__file__).parent / "no-models-here")
    core.load_model(None, "llama.cpp", {"n_ctx": 1024, "parallel": 4, "n_threads": 1, "n_threads_batch": 1})
    yield core
    core.unload_model()
    core.engine.close()


class Watch:
    """A job's events read in a thread of their own, with the time of each token."""

    def __init__(self, job: GenerationJob):
        self.job, self.times, self.text, self.end = job, [], [], None
        self.tokens = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for event in self.job.events():
            if isinstance(event, Delta):
                self.times.append(time.perf_counter())
                self.text.append(event.text)
                self.tokens.release()
            else:
                self.end = event
        self.tokens.release()

    def wait_first(self) -> None:
        assert self.tokens.acquire(timeout=WAIT), "no token came"

    def result(self) -> Finished:
        self._thread.join(WAIT)
        assert isinstance(self.end, Finished), self.end
        return self.end


def test_four_replies_decode_together_each_with_its_own_limits_stop_and_seed(batched):
    jobs = [batched.complete(PROMPT.format("a cat"), GenerationParams(temperature=0, max_new_tokens=12, ignore_eos=True)),
            batched.complete(PROMPT.format("a dog"), GenerationParams(temperature=0, max_new_tokens=20, ignore_eos=True)),
            batched.complete(PROMPT.format("a ship"), GenerationParams(temperature=0, max_new_tokens=30, stop=("a",))),
            batched.complete(PROMPT.format("a tree"), GenerationParams(temperature=1.0, seed=7, max_new_tokens=16,
                                                                       ignore_eos=True))]
    watches = [Watch(job) for job in jobs]
    ends = [w.result() for w in watches]
    assert [e.stats.completion_tokens for e in ends[:2]] == [12, 20]
    assert ends[2].stats.finish_reason == "stop" and "a" not in "".join(watches[2].text)
    assert ends[3].stats.completion_tokens == 16
    # Together, not one after another: the longer replies' first tokens came before
    # the shortest one's last.
    assert max(w.times[0] for w in watches[1:]) < watches[0].times[-1]


def test_a_lone_greedy_reply_is_the_one_parallel_1_gives_and_repeats(batched, hearth, greedy):
    prompt = PROMPT.format("a lighthouse")
    alone, _ = hearth.complete(prompt, greedy).result()
    first, _ = batched.complete(prompt, greedy).result()
    again, stats = batched.complete(prompt, greedy).result()
    assert first == alone and again == first
    assert stats.prompt_eval_tokens == 1  # the whole prompt came from its sequence's cache


def logprobs_of(core: Hearth, prompt: str) -> list[tuple[str, float, tuple]]:
    job = core.complete(prompt, GenerationParams(temperature=0, max_new_tokens=6), LogprobsRequest(top=2))
    return [(lp.token, round(lp.logprob, 4), tuple(t[0] for t in lp.top))
            for event in job.events() if isinstance(event, Delta) for lp in event.logprobs]


def test_token_logprobs_of_a_batched_reply_are_its_own(batched, hearth):
    """Each reply's logprobs come from its own logits row, kept while others decode."""
    prompt = PROMPT.format("a garden")
    watches = [Watch(batched.complete(PROMPT.format(f"noise {i}"), LONG)) for i in range(2)]
    try:
        for w in watches:
            w.wait_first()
        assert logprobs_of(batched, prompt) == logprobs_of(hearth, prompt)
    finally:
        for w in watches:
            w.job.stop()
            w.result()


def test_a_newcomer_starts_beside_three_and_a_cancelled_reply_frees_its_slot(batched):
    running = [Watch(batched.complete(PROMPT.format(f"river {i}"), LONG)) for i in range(3)]
    for w in running:
        w.wait_first()
    asked = time.perf_counter()
    newcomer = Watch(batched.complete(PROMPT.format("a newcomer"), LONG))
    newcomer.wait_first()
    # It started at once, not after the others (900 tokens each).
    assert newcomer.times[0] - asked < 10 and all(w.end is None for w in running)
    fifth = Watch(batched.complete(PROMPT.format("a fifth"), LONG))
    assert not fifth.tokens.acquire(timeout=1.0)  # four slots, all busy
    running[0].job.stop()
    assert running[0].result().stats.finish_reason == "cancelled"
    fifth.wait_first()  # the freed slot serves it while the others go on
    assert all(w.end is None for w in running[1:] + [newcomer])
    for w in running[1:] + [newcomer, fifth]:
        w.job.stop()
        assert w.result().stats.finish_reason == "cancelled"


def test_a_chats_next_turn_evaluates_only_its_new_tokens(batched, greedy):
    turn1 = PROMPT.format("a clock")
    other = PROMPT.format("the sea")  # another chat, in another sequence, between the turns
    reply, _ = batched.complete(turn1, greedy).result()
    batched.complete(other, greedy).result()
    turn2 = f"{turn1}{reply}<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
    _, stats = batched.complete(turn2, greedy).result()
    model = batched.models.current.model
    new = len(model.encode(turn2)) - len(model.encode(turn1 + reply))
    assert stats.prompt_eval_tokens <= new + 2, (stats.prompt_eval_tokens, new)


def test_a_chat_whose_oldest_turn_was_dropped_goes_back_to_its_own_sequence(batched):
    # Every chat here shares the system prompt, and the dropped turn leaves chat A's
    # prompt no longer prefix with its own sequence than with any other: only the
    # kept later turn (context shift) tells its sequence apart.
    brief = GenerationParams(temperature=0, max_new_tokens=24)
    system = "<|im_start|>system\nYou are a storyteller who answers in one paragraph.<|im_end|>\n"

    def turn(question: str, answer: str) -> str:
        return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"

    ask = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    first = turn("Tell me about clocks.", batched.complete(system + ask.format("Tell me about clocks."),
                                                           brief).result()[0])
    kept_question = "Now tell me a long story about the bells in an old clock tower, their ringers and their town."
    kept = turn(kept_question, batched.complete(system + first + ask.format(kept_question), brief).result()[0])
    # Other chats, shorter, in the other sequences: the tie-break (shortest first) would pick one.
    for topic in ("rivers", "owls", "bread"):
        batched.complete(system + ask.format(f"Tell me about {topic}."), brief).result()
    truncated = system + kept + ask.format("And then?")
    _, stats = batched.complete(truncated, brief).result()
    model = batched.models.current.model
    new = len(model.encode(truncated)) - len(model.encode(system + kept))
    # + the kept turn's closing <|im_end|>, which a reply cut at its token limit never wrote.
    assert stats.prompt_eval_tokens <= new + 4, (stats.prompt_eval_tokens, new)


def test_refused_combinations_are_one_line_and_keep_the_model(batched, greedy):
    before = batched.models.current
    with pytest.raises(UserError) as refused:
        batched.load_model(None, "llama.cpp", {"parallel": 2, "prompt_lookup_ngram": 3})
    assert str(refused.value) == ("prompt_lookup_ngram works only with parallel=1 (got parallel=2); "
                                  "turn prompt_lookup_ngram off or set parallel to 1")
    assert batched.models.current is before
    with pytest.raises(UserError, match=r"^logprobs of the prompt \(echo\) need the model loaded with parallel=1"):
        before.model.prompt_logprobs([1, 2, 3], 0)
    text, _ = batched.complete(PROMPT.format("a test"), greedy).result()
    assert text


def test_a_client_hanging_up_mid_stream_frees_its_sequence_at_once(default_model):
    """Through the real HTTP API: two slots, two streams; one client closes its
    connection, and a third stream starts while the second still runs."""
    # 4000 tokens take longer than WAIT: a slot that was not freed times the third out.
    body = {"model": "m", "max_tokens": 4000, "temperature": 0, "ignore_eos": True, "stream": True}

    def open_stream(client: httpx.Client, subject: str):
        response = client.send(client.build_request("POST", "/v1/completions",
                                                    json={**body, "prompt": PROMPT.format(subject)}), stream=True)
        response.raise_for_status()
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: ") and '"text":""' not in line.replace(" ", ""):
                return response, lines
        raise AssertionError("the stream ended before its first token")

    with running_server("--parallel", "2", "--n-ctx", "4096", "--n-threads", "1", "--n-threads-batch", "1", timeout=120) as url, \
            httpx.Client(base_url=url, timeout=WAIT) as client:
        first, _ = open_stream(client, "a hang-up")
        second, second_lines = open_stream(client, "a stayer")
        first.close()  # the client hangs up mid-reply
        third, third_lines = open_stream(client, "a third")  # a slot was freed for it
        for _ in range(5):  # the second goes on beside the third
            next(second_lines)
            next(third_lines)
        second.close()
        third.close()

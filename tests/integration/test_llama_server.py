"""The remote loader against llama.cpp's own llama-server, built from the same llama.cpp
the wheel vendors (scripts/setup.sh ensure_llama_server): the llama.cpp dialect is
detected, greedy replies stream the same text as llama.cpp in process, stop strings and
samplers reach the engine under its names, and a cancelled reply frees its slot."""
from __future__ import annotations

import json
import time
import urllib.request

import httpx
import pytest

from loaders.params import GenerationParams
from tests.support import ROOT
from webui.hearth import Hearth
from webui.runtime.generation import Delta, Finished

PROMPT = "The three primary colours are"


def busy_slots(url: str) -> int:
    with urllib.request.urlopen(url + "/slots", timeout=5) as reply:
        return sum(1 for slot in json.load(reply) if slot["is_processing"])


@pytest.fixture(scope="module")
def remote(llama_server):
    core = Hearth(models_dir=ROOT / "no-models-here")
    core.load_model(llama_server)  # the URL alone: loader, dialect and context are detected
    yield core
    core.unload_model()
    core.engine.close()


def test_the_llama_cpp_dialect_and_context_are_detected(remote, hearth):
    loaded = remote.models.current
    assert loaded.loader == "remote"
    model = loaded.model
    assert model.context_length == 2048  # one slot's share of llama-server's context
    assert {"dry_multiplier", "xtc_probability", "typical_p", "top_n_sigma", "grammar"} <= model.supported_params
    assert model.encode(PROMPT) == hearth.models.current.model.encode(PROMPT)


def test_a_greedy_reply_streams_what_the_engine_itself_answers(remote, hearth, greedy, llama_server):
    job = remote.complete(PROMPT, greedy)
    events = list(job.events())
    pieces = [e.text for e in events if isinstance(e, Delta)]
    assert len(pieces) > 5  # streamed a token at a time, not in one piece
    text = "".join(pieces)
    # The engine's own answer to the same request, not streamed, asked directly.
    body = {**remote.models.current.model.request_body(PROMPT, greedy, greedy.max_new_tokens), "stream": False}
    direct = httpx.post(llama_server + "/v1/completions", json=body, timeout=60).json()
    assert text == direct["choices"][0]["text"]
    stats = events[-1].stats
    assert (stats.completion_tokens, stats.prompt_tokens) == (direct["usage"]["completion_tokens"],
                                                             direct["usage"]["prompt_tokens"])
    # The same model as llama.cpp in process: greedy replies agree until two tokens are all
    # but tied (the builds' kernels differ in the last bits), here after 7 words.
    expected, _ = hearth.complete(PROMPT, greedy).result()
    assert text.split()[:6] == expected.split()[:6]


def test_stop_strings_and_llama_cpp_samplers_reach_the_engine(remote):
    full, _ = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=20)).result()
    stop = full.split()[2]
    cut, stats = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=20, stop=(stop,))).result()
    assert cut == full[: full.index(stop)] and stats.finish_reason == "stop"
    # Samplers only llama.cpp's dialect has: sent, and the reply still comes.
    dry = GenerationParams(temperature=0.7, seed=3, max_new_tokens=6, ignore_eos=True, dry_multiplier=0.8,
                           xtc_probability=0.5, typical_p=0.9)
    assert remote.complete(PROMPT, dry).result()[1].completion_tokens == 6


def test_a_cancelled_reply_frees_its_slot_at_once(remote, llama_server):
    job = remote.complete("Once upon a time", GenerationParams(max_new_tokens=1500, ignore_eos=True))
    events = job.events()
    assert isinstance(next(events), Delta)
    assert busy_slots(llama_server) == 1
    job.stop()
    last = list(events)[-1]
    assert isinstance(last, Finished) and last.stats.finish_reason == "cancelled"
    deadline = time.monotonic() + 5
    while busy_slots(llama_server):
        assert time.monotonic() < deadline, "llama-server kept generating the cancelled reply"
        time.sleep(0.05)

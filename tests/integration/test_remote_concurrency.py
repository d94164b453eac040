"""The remote loader forwards up to remote_concurrency replies to the engine at once, on
llama.cpp's own llama-server (4 slots): the engine really serves them together; one
cancelled reply (a client hanging up, through Hearth's API) frees its slot while the
others go on; an engine that dies with 4 in flight fails each with one line, and the
next request after it is back works."""
from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import urllib.request

import openai

from loaders.base import GenerationError
from loaders.params import GenerationParams
from tests.support import ROOT, free_port, running_llama_server, running_server
from webui.hearth import Hearth
from webui.runtime.generation import Delta

LONG = GenerationParams(max_new_tokens=1500, ignore_eos=True, temperature=0)


def busy_slots(url: str) -> int:
    with urllib.request.urlopen(url + "/slots", timeout=5) as reply:
        return sum(1 for slot in json.load(reply) if slot["is_processing"])


def wait_for_busy_slots(url: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (busy := busy_slots(url)) != count:
        assert time.monotonic() < deadline, f"llama-server is serving {busy} replies, not {count}"
        time.sleep(0.05)


def remote_hearth(url: str, concurrency: int) -> Hearth:
    core = Hearth(models_dir=ROOT / "no-models-here")
    core.load_model(url, "remote", {"remote_concurrency": concurrency})
    return core


def close(core: Hearth) -> None:
    core.unload_model()
    core.engine.close()


def test_four_replies_run_at_once_and_one_cancelled_frees_its_slot(llama_server):
    core = remote_hearth(llama_server, 4)
    jobs = [core.complete(f"Story number {i}:", LONG) for i in range(4)]
    try:
        streams = [job.events() for job in jobs]
        for stream in streams:
            assert isinstance(next(stream), Delta)
        wait_for_busy_slots(llama_server, 4)  # the engine holds all four at once
        jobs[0].stop()
        assert list(streams[0])[-1].stats.finish_reason == "cancelled"
        wait_for_busy_slots(llama_server, 3)
        for stream in streams[1:]:  # the others go on
            for _ in range(3):
                assert isinstance(next(stream), Delta)
    finally:
        for job in jobs:
            job.stop()
        close(core)
    wait_for_busy_slots(llama_server, 0)


def test_an_engine_dying_with_four_in_flight_fails_each_in_one_line(default_model):
    port = free_port()
    with running_llama_server(default_model, parallel=4, port=port) as (proc, url):
        core = remote_hearth(url, 4)
        jobs = [core.complete(f"Story number {i}:", LONG) for i in range(4)]
        streams = [job.events() for job in jobs]
        for stream in streams:
            assert isinstance(next(stream), Delta)
        proc.kill()
        for stream in streams:
            last = list(stream)[-1]
            assert isinstance(last.error, GenerationError)
            assert last.message == f"the engine at {url} dropped the connection mid-reply"
    try:
        with running_llama_server(default_model, parallel=4, port=port):
            text, stats = core.complete("Hello", GenerationParams(max_new_tokens=4, temperature=0)).result()
            assert stats.completion_tokens == 4
    finally:
        close(core)


def test_hearths_api_in_front_serves_four_streams_at_once_and_a_hang_up_frees_one(llama_server):
    """Four streaming clients of Hearth's own API (the official openai client) are served
    together; the one that hangs up has its sequence freed at once, the others go on."""
    with running_server("--model", llama_server, "--remote-concurrency", "4") as server:
        client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=60)
        chunks = [0] * 4
        streaming = [threading.Event() for _ in range(4)]
        hang_up = [threading.Event() for _ in range(4)]

        def chat(i: int) -> None:
            stream = client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": f"Tell story number {i}."}],
                max_tokens=1500, temperature=0, stream=True, extra_body={"ignore_eos": True})
            for _ in stream:
                chunks[i] += 1
                if chunks[i] == 2:
                    streaming[i].set()
                if hang_up[i].is_set():
                    stream.close()  # closes the connection mid-reply
                    return

        def chunks_grow(others, by: int, timeout: float = 30.0) -> None:
            before = {i: chunks[i] for i in others}
            deadline = time.monotonic() + timeout
            while any(chunks[i] < before[i] + by for i in others):
                assert time.monotonic() < deadline, "the other streams stalled"
                time.sleep(0.05)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(chat, i) for i in range(4)]
            try:
                for event in streaming:
                    assert event.wait(60), "a stream did not start"
                wait_for_busy_slots(llama_server, 4)
                hang_up[0].set()
                futures[0].result(timeout=30)
                wait_for_busy_slots(llama_server, 3)  # freed at once, the others still generating
                chunks_grow([1, 2, 3], by=5)
            finally:
                for event in hang_up:
                    event.set()
            for f in futures:
                f.result(timeout=30)
        wait_for_busy_slots(llama_server, 0)

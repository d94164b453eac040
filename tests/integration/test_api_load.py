"""Many clients at once through the official `openai` client, and a client that is
killed mid-stream, against a real Hearth server with the real SmolLM2 model."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import openai
import pytest

from tests.support import ROOT, run_on_own_loop, running_server

PROMPTS = ["Name a fruit.", "What colour is the sky?", "Say hello.", "Count to three."]
GREEDY = dict(temperature=0, seed=1, max_tokens=16)


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "2048") as url:
        yield url


def ask(server: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": prompt}], **GREEDY)
    return reply.choices[0].message.content


def test_twenty_concurrent_streaming_clients_all_get_their_own_reply(server):
    expected = {p: ask(server, p) for p in PROMPTS}  # one at a time: the reference

    async def stream(client: openai.AsyncOpenAI, prompt: str) -> str:
        chunks = await client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": prompt}], stream=True, **GREEDY)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    async def crowd() -> list[str]:
        limits = httpx.Limits(max_connections=40)
        async with openai.AsyncOpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=300,
                                      http_client=openai.DefaultAsyncHttpxClient(limits=limits)) as client:
            return await asyncio.gather(*(stream(client, PROMPTS[i % len(PROMPTS)]) for i in range(20)))

    replies = run_on_own_loop(crowd())
    assert len(replies) == 20
    for i, reply in enumerate(replies):
        assert reply == expected[PROMPTS[i % len(PROMPTS)]], i


KILLED_CLIENT = textwrap.dedent("""
    import sys, openai
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="none", max_retries=0)
    stream = client.completions.create(model="x", prompt="Once upon a time", max_tokens=1800,
                                       stream=True, extra_body={"ignore_eos": True})
    for n, chunk in enumerate(stream):
        if n == 3:
            print("streaming", flush=True)
""")


def test_a_killed_client_frees_the_queue_at_once_and_stops_only_its_own_reply(server):
    alone = ask(server, PROMPTS[0])
    victim = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    seen: dict = {}

    def info() -> dict:
        return httpx.get(server + "/v1/internal/model/info", timeout=10).json()

    def queued_client() -> None:
        client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
        chunks = client.chat.completions.create(model="x", messages=[{"role": "user", "content": PROMPTS[0]}],
                                                stream=True, **GREEDY)
        parts = []
        for chunk in chunks:
            seen.setdefault("first_at", time.monotonic())
            parts.extend(c.delta.content or "" for c in chunk.choices)
        seen["text"] = "".join(parts)

    try:
        assert victim.stdout.readline().strip() == "streaming"
        other = threading.Thread(target=queued_client, daemon=True)
        other.start()
        deadline = time.monotonic() + 10
        while info()["queue_length"] < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.05)
        time.sleep(0.3)
        assert "first_at" not in seen  # it waits behind the long reply (~30 s of it left)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Freed means the worker has dropped the killed reply and taken the next one
        # from the queue (timed to that, not to the next reply's prompt reading, which
        # on a busy 2-core machine can take a second of its own).
        while info()["queue_length"] > 0:
            assert time.monotonic() - killed_at < 1.0, "the killed client's reply kept the model busy"
            time.sleep(0.02)
        other.join(timeout=60)
    finally:
        victim.kill()
        victim.wait()
    # The other request was not stopped with it: it is whole, and the same as alone.
    assert seen["text"] == alone

"""The generation queue takes turns between owners, on the real model through the
real core, and refuses an owner's request past the per-owner limit: a 429 naming the
limit in the API."""
from __future__ import annotations

import dataclasses
import threading

from fastapi import FastAPI
from fastapi.testclient import TestClient

from loaders.params import GenerationParams
from webui.api import install_api
from webui.config import ServerSettings


def started_at(job) -> float:
    _, stats = job.result()
    return job.submitted_at + stats.queued_seconds


def test_a_second_owner_is_served_second_behind_three_queued(hearth, greedy):
    short = dataclasses.replace(greedy, max_new_tokens=4)
    # A queued task that waits on a gate holds the worker, so all four replies are
    # queued before any starts.
    gate = threading.Event()
    hearth.engine.submit_task(lambda cancel: gate.wait())
    alice = [hearth.engine.submit("The sky is", short, owner="fair-alice") for _ in range(3)]
    bob = hearth.engine.submit("The sea is", short, owner="fair-bob")
    gate.set()
    order = sorted([*alice, bob], key=started_at)
    assert order == [alice[0], bob, alice[1], alice[2]]


def test_a_full_per_user_queue_answers_429_naming_the_limit(hearth):
    long = GenerationParams(max_new_tokens=1500, ignore_eos=True)
    app = FastAPI()
    install_api(app, hearth, ServerSettings())
    hearth.engine.per_owner_limit = 1
    running = hearth.complete("Once upon a time", long)
    try:
        events = running.events()
        next(events)  # running, so no longer waiting
        waiting = hearth.complete("Once upon a time", long)  # the one this owner may have waiting
        with TestClient(app) as client:
            full = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
            assert full.status_code == 429
            error = full.json()["error"]
            assert "--max-queue-per-user 1" in error["message"] and "\n" not in error["message"]
            assert error["type"] == "rate_limit_error"
            waiting.stop()
            running.stop()
            list(events)
            waiting.result()  # taken off the queue: this owner has none waiting now
            assert client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}).status_code == 200
    finally:
        hearth.engine.per_owner_limit = None
        running.stop()

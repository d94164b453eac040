"""The generation queue takes turns between owners, on the real model through the
real core, and refuses an owner's request past the per-owner limit: a 429 naming the
limit in the API."""
from __future__ import annotations

import dataclasses
import threading
import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient

from loaders.params import GenerationParams
from tests.support import eventually
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


def held_worker(hearth) -> threading.Event:
    """A task that holds the generation worker until the returned gate is set, so the
    replies sent meanwhile are all queued before any starts."""
    gate, started = threading.Event(), threading.Event()
    hearth.engine.submit_task(lambda cancel: (started.set(), gate.wait(60)))
    assert started.wait(30)
    return gate


def test_the_openai_user_field_makes_each_end_user_of_a_key_an_owner_within_its_user(hearth):
    """One key (here: no key, the local user) serving ann and ben: ben's one request is not
    queued behind ann's three, and the key's user as a whole still takes turns with bob.
    Each request is known by its length (max_tokens with ignore_eos); recent_stats is
    the order they ran in."""
    app = FastAPI()
    install_api(app, hearth, ServerSettings())
    fresh = uuid.uuid4().hex[:8]  # owners no earlier test has been served as
    ann, ben = f"ann-{fresh}", f"ben-{fresh}"
    sent = [(ann, 1), (ann, 2), (ann, 3), (ben, 4)]
    hearth.complete("Hi", GenerationParams(max_new_tokens=1)).result()  # the local user: served last
    with TestClient(app) as client:
        gate = held_worker(hearth)
        threads = []
        try:
            for end_user, tokens in sent:  # one at a time, so they arrive in this order
                body = {"prompt": "The sky is", "max_tokens": tokens, "ignore_eos": True, "temperature": 0,
                        "user": end_user}
                threads.append(threading.Thread(target=client.post, args=("/v1/completions",), kwargs={"json": body}))
                threads[-1].start()
                eventually(lambda: hearth.engine.queue_length == len(threads), 30, what=f"{end_user}'s request queued")
            bob = hearth.engine.submit("The sea is", GenerationParams(max_new_tokens=5, ignore_eos=True,
                                                                      temperature=0), owner=f"bob-{fresh}")
        finally:
            gate.set()
            for thread in threads:
                thread.join(60)
        bob.result()
    ran = [stats.completion_tokens for stats in list(hearth.engine.recent_stats)[-5:]]
    # bob (never served) first, then the local user's turns: ann, ben, ann, ann. Without
    # end users the local user's four would run in arrival order: [5, 1, 2, 3, 4].
    assert ran == [5, 1, 4, 2, 3]


def test_naming_end_users_does_not_get_a_key_past_its_users_queue_limit(hearth):
    app = FastAPI()
    install_api(app, hearth, ServerSettings())
    hearth.engine.per_owner_limit = 1
    body = {"prompt": "Hi", "max_tokens": 1, "user": "ann"}
    try:
        with TestClient(app) as client:
            gate = held_worker(hearth)
            waiting = threading.Thread(target=client.post, args=("/v1/completions",), kwargs={"json": body})
            try:
                waiting.start()
                eventually(lambda: hearth.engine.queue_length == 1, 30, what="ann's request queued")
                full = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                                "max_tokens": 1, "user": "ben"})
                assert full.status_code == 429 and "--max-queue-per-user 1" in full.json()["error"]["message"]
                anthropic = client.post("/v1/messages", json={"model": "x", "max_tokens": 1, "metadata": {"user_id": "cid"},
                                                              "messages": [{"role": "user", "content": "Hi"}]})
                assert anthropic.status_code == 429 and "--max-queue-per-user 1" in anthropic.text
                too_long = client.post("/v1/completions", json={**body, "user": "x" * 257})
                assert too_long.status_code in (400, 422) and "user" in too_long.json()["error"]["message"]
            finally:
                gate.set()
                waiting.join(60)
    finally:
        hearth.engine.per_owner_limit = None

"""An idle Hearth: what it costs with nothing to do, how fast a UI event still starts,
and --idle-unload (the model unloaded after so long without a request, loaded again
with the same options by the next one).

Real servers (subprocesses) with the built-in model, no browser: UI events go through
Gradio's own queue protocol (join, then the event stream), the API through the
official openai client."""
from __future__ import annotations

import json
import statistics
import time
import uuid
from email.utils import parsedate_to_datetime

import httpx
import openai
import psutil

from tests.support import eventually, run_time_by_thread, running_server
from webui.runtime.default_model import DEFAULT_MODEL_NAME
from webui.ui.quiet_queue import GRADIO_SOURCES, gradio_matches

# The goal: under 0.1 CPU-second per 30 s idle, measured over 30 s. On an otherwise
# idle machine (/proc/PID/task/*/schedstat, exact): 0.026-0.037 s per 30 s, all on the
# main thread (8-9 wake-ups of the loop: the quiet queue's 5 s backstop, the state
# sweep and the server's tick, 3-4 ms each there: cold caches, low clocks), against
# 1.2-3.0 s per 30 s with Gradio's and uvicorn's polling. The idle-unload thread sleeps
# while nothing is loaded.
IDLE_WINDOW_S = 30.0
IDLE_CPU_LIMIT_S = 0.1
# The last request's connection closing (uvicorn ticks each second while one is open)
# belongs to that request, not to the idle spell.
SETTLE_S = 2.0
# From the answer to the join (the event is queued) to Gradio's process_starts message
# on the event stream (its handler starts): 30-80 ms, most of it opening the stream,
# with Gradio's 1 ms polling and with the quiet queue alike, even on a busy machine
# where the join itself takes 200-800 ms. A queue woken only by its 5 s backstop
# would add 2.5 s on average.
EVENT_START_LIMIT_S = 0.15
EVENTS_MEASURED = 5


def server_process(url: str) -> psutil.Process:
    port = url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        cmdline = child.cmdline()
        if "webui" in cmdline and port in cmdline:
            return child
    raise AssertionError(f"no server process on port {port}")


def cpu_spent(before: dict[str, int], after: dict[str, int]) -> tuple[float, str]:
    """(CPU-seconds between two run_time_by_thread readings, the threads that spent them)."""
    spent = {thread: ns - before.get(thread, 0) for thread, ns in after.items()}
    busiest = sorted((ns, thread) for thread, ns in spent.items() if ns)[::-1][:4]
    return sum(spent.values()) / 1e9, ", ".join(f"{thread} {ns / 1e6:.1f} ms" for ns, thread in busiest)


def dependency(url: str, api_name: str) -> tuple[int, int]:
    """(fn_index, trigger_id) of the UI event whose handler Gradio names `api_name`."""
    config = httpx.get(url + "/config", timeout=30).json()
    for dep in config["dependencies"]:
        if dep.get("api_name") == api_name:
            return dep["id"], dep["targets"][0][0]
    raise AssertionError(f"no UI event named {api_name}")


def run_event(url: str, event: tuple[int, int], data: list) -> tuple[float, list[dict]]:
    """Run one UI event as the browser does; (seconds from the queue's answer to the join
    to the handler starting, every message the event stream sent)."""
    session = uuid.uuid4().hex
    fn_index, trigger = event
    with httpx.Client(base_url=url, timeout=60) as client:
        joined = client.post("/gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": fn_index, "trigger_id": trigger,
            "session_hash": session})
        assert joined.status_code == 200, joined.text
        queued = time.perf_counter()
        started = None
        messages = []
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                messages.append(message)
                if message.get("msg") == "process_starts" and started is None:
                    started = time.perf_counter() - queued
                if message.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                    break
    assert started is not None, messages
    return started, messages


def event_output(messages: list[dict]) -> list:
    done = next(m for m in messages if m.get("msg") == "process_completed")
    assert done["success"], done
    return done["output"]["data"]


def test_quiet_queue_copies_the_installed_gradio_loops():
    # QuietQueue replaces two of Gradio's Queue methods with edited copies: a Gradio
    # whose loops differ must be looked at (the server falls back to Gradio's own).
    assert not gradio_matches(), f"Gradio's {sorted(GRADIO_SOURCES)} changed: redo webui/ui/quiet_queue.py"


def model_info(url: str) -> dict:
    info = httpx.get(url + "/v1/internal/model/info", timeout=30).json()
    return {k: info[k] for k in ("model_name", "loader", "path", "options", "context_length")}


def idle_unloaded(url: str) -> bool:
    """Whether the model has been unloaded for being idle (and that unload has ended)."""
    health = httpx.get(url + "/healthz", timeout=30).json()  # not a use: it never wakes the model
    return health["idle_unloaded"] == DEFAULT_MODEL_NAME and health["model"] is None


def test_an_idle_server_sleeps_unloads_its_model_and_answers_the_next_request_as_before():
    # One server for everything idle (each start costs seconds): --idle-unload 0.02
    # minutes (1.2 s), and a non-default option to see it survive the reloads.
    with running_server("--idle-unload", "0.02", "--n-ctx", "1536") as url:
        server = server_process(url)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        ask = dict(model="any", messages=[{"role": "user", "content": "Name a colour."}], temperature=0,
                   max_tokens=12)
        first = client.chat.completions.create(**ask).choices[0].message.content
        loaded = model_info(url)
        assert loaded["options"]["n_ctx"] == 1536

        # The UI says why a request waits: the Notebook's token count needs the model.
        eventually(lambda: idle_unloaded(url), what="the idle model to be unloaded")
        count = dependency(url, "count")
        woke, messages = run_event(url, count, ["Hello"])
        notices = [m["log"] for m in messages if m.get("msg") == "log"]
        assert any(n.startswith(f"Loading {DEFAULT_MODEL_NAME} again after") for n in notices), messages
        assert "tokens in the notebook" in event_output(messages)[0]
        starts = [woke] + [run_event(url, count, ["Hello"])[0] for _ in range(EVENTS_MEASURED - 1)]

        # Idle: model unloaded, no browser, no request.
        eventually(lambda: idle_unloaded(url), what="the idle model to be unloaded again")
        time.sleep(SETTLE_S)
        before = run_time_by_thread(server.pid)
        time.sleep(IDLE_WINDOW_S)  # the measurement itself: nothing is waited for
        idle, threads = cpu_spent(before, run_time_by_thread(server.pid))
        # The server's housekeeping slept through the quiet spell: the first answer
        # after it still carries a fresh Date.
        dated = parsedate_to_datetime(httpx.get(url + "/healthz", timeout=30).headers["date"]).timestamp()
        assert abs(dated - time.time()) < 3, "a stale Date header after an idle spell"
        after = [run_event(url, count, ["Hello"])[0] for _ in range(EVENTS_MEASURED)]

        eventually(lambda: idle_unloaded(url), what="the idle model to be unloaded once more")
        # Clients that list models first still see the one that will answer, without waking it.
        assert [m.id for m in client.models.list().data] == [DEFAULT_MODEL_NAME]
        assert idle_unloaded(url)
        again = client.chat.completions.create(**ask).choices[0].message.content
        assert again == first
        assert model_info(url) == loaded

        # An explicit unload stays: the next request is told no model is loaded.
        assert httpx.post(url + "/v1/internal/model/unload", timeout=30).status_code == 200
        try:
            client.chat.completions.create(**ask)
        except openai.APIStatusError as e:
            assert e.status_code == 503
        else:
            raise AssertionError("a request after an explicit unload was answered")
    assert idle < IDLE_CPU_LIMIT_S, f"{idle:.3f} CPU-s in {IDLE_WINDOW_S:g} s idle: {threads}"
    print(f"idle: {idle:.3f} CPU-s in {IDLE_WINDOW_S:g} s: {threads}")
    for when, times in (("at first", starts), ("after idling", after)):
        assert statistics.median(times) < EVENT_START_LIMIT_S, f"UI events {when} took {times} s to start"

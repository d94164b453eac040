"""Shared helpers for tests: free ports, polling, and real servers in subprocesses."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(predicate: Callable[[], T], timeout: float = 15.0, what: str = "the condition",
               interval: float = 0.1) -> T:
    """Call `predicate` until it returns something truthy, and return that; raise
    TimeoutError naming `what` after `timeout` seconds. For state a test cannot wait on
    directly (a file the server writes after the page changes, a server coming up); an
    exception from `predicate` ends the wait at once."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return result


def wait_until_answering(proc: subprocess.Popen, url: str, log_path: Path, name: str, timeout: float) -> None:
    """Wait until `url` answers (any 2xx/3xx); RuntimeError with the log's tail if the
    process exits first or `timeout` seconds pass."""
    def answering() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:  # not listening yet, or an error status while it starts (llama-server: 503)
            return False

    try:
        eventually(answering, timeout, what=f"{name} at {url}", interval=0.2)
    except TimeoutError:
        raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}") from None


@contextmanager
def running_server(*args: str, env: dict | None = None, timeout: float = 60.0,
                   health_path: str = "/healthz") -> Iterator[str]:
    """Start `python -m webui` with `args` on a free port; yield its base URL.

    Unless `args` name their own, the server gets an empty user-data folder and an
    empty models folder, so a developer's chats, settings and models never leak into
    a test (and a test never writes into them)."""
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="hearth-test-")
    if "--user-data" not in args and "HEARTH_USER_DATA" not in (env or {}):
        args = (*args, "--user-data", str(Path(scratch.name) / "user_data"))
    if "--models-dir" not in args:
        args = (*args, "--models-dir", str(Path(scratch.name) / "models"))
    log_path = ARTIFACTS / f"server-{port}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webui", "--port", str(port), *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, url + health_path, log_path, "server", timeout)
        yield url
    finally:
        stop_process(proc)
        log.close()
        scratch.cleanup()


def run_time_by_thread(pid: int) -> dict[str, int]:
    """Each thread's run time in nanoseconds, exact: the scheduler's own count in
    /proc/PID/task/*/schedstat ("name (tid)" -> ns). user + system time counts in 10 ms
    ticks, coarse next to an idle server's few milliseconds per wake-up."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            times[f"{name} ({task.name})"] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return times


def llama_server_binary() -> Path:
    """llama.cpp's llama-server, built from the wheel's own vendored sources by
    scripts/setup.sh (ensure_llama_server: instant once built, minutes the first time)."""
    out = subprocess.run(["bash", "-c", "source scripts/setup.sh && ensure_llama_server"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def running_llama_server(model: Path, parallel: int = 1, n_ctx: int = 2048, port: int | None = None,
                         timeout: float = 60.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """llama-server serving `model` with `parallel` slots of n_ctx tokens each, on a free
    port (or `port`); yields the process and its base URL, and stops it."""
    port = port or free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"llama-server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(llama_server_binary()), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
             "--parallel", str(parallel), "--ctx-size", str(n_ctx * parallel), "--threads", "2"],
            stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(proc, url + "/health", log_path, "llama-server", timeout)
            yield proc, url
        finally:
            stop_process(proc)


def run_on_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(coroutine) in a thread of its own. The browser tests run first in a
    full run, and the session's Playwright browser keeps an event loop running in the
    main thread, where asyncio.run() refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def stop_process(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """Ask a server to stop; kill it if it has not within grace_s seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()

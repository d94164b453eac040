"""How often, and after how many tokens, a greedy reply decoded beside others differs
from the same reply decoded alone (llama.cpp loader, parallel=4, the built-in model).

Batched kernels sum in another order than single-token ones, so a reply's logits
carry slightly different rounding when other sequences share its batch; greedy
picks the same token until two candidates are nearly tied, then may not. For each of
K prompts: its reply alone (and, as a check, with parallel=1), then the same prompt
decoded in a group of 4 started together. Reported: how many replies differ, and the
first differing token of each.

    .venv/bin/python bench/batch_drift.py [--prompts 8] [--tokens 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

SUBJECTS = ("a lighthouse keeper", "a lost cat", "a mountain village", "a river pilot", "an old clock",
            "a night train", "a beekeeper", "a glass city", "a tired robot", "a paper boat", "a desert well",
            "a winter fox", "a kite maker", "a sunken bell", "a map seller", "a quiet moon")
PROMPT = "<|im_start|>user\nWrite a long story about {}.<|im_end|>\n<|im_start|>assistant\n"


def reply(model, prompt: str, tokens: int) -> list[str]:
    params = GenerationParams(temperature=0, max_new_tokens=tokens, ignore_eos=True, repetition_penalty=1.0)
    return list(model.generate(model.encode(prompt), params, threading.Event()))


def together(model, prompts: list[str], tokens: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in prompts]

    def run(i: int) -> None:
        out[i] = reply(model, prompts[i], tokens)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def first_difference(a: list[str], b: list[str]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8, help="a multiple of 4, at most 16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    path = default_model_path()
    prompts = [PROMPT.format(s) for s in SUBJECTS[:args.prompts]]
    options = dict(n_ctx=1024, n_threads=args.threads, n_threads_batch=args.threads)
    single = LlamaCppLoader().load(path, LlamaCppOptions(**options, parallel=1))
    batched = LlamaCppLoader().load(path, LlamaCppOptions(**options, parallel=4))
    start = time.perf_counter()
    try:
        reference = [reply(single, p, args.tokens) for p in prompts]
        alone = [reply(batched, p, args.tokens) for p in prompts]
        beside: list[list[str]] = []
        for g in range(0, len(prompts), 4):
            beside += together(batched, prompts[g:g + 4], args.tokens)
    finally:
        single.unload()
        batched.unload()
    same_alone = sum(a == r for a, r in zip(alone, reference, strict=True))
    drifts = [first_difference(a, b) for a, b in zip(alone, beside, strict=True)]
    differ = [d for d in drifts if d is not None]
    print(f"model {path.name}, {len(prompts)} prompts, {args.tokens} greedy tokens each, {args.threads} threads, "
          f"{time.perf_counter() - start:.0f}s")
    print(f"alone with parallel=4 == parallel=1: {same_alone}/{len(prompts)}")
    print(f"beside 3 others != alone: {len(differ)}/{len(prompts)}; first differing token: "
          + (", ".join(str(d) for d in sorted(differ)) or "none"))


if __name__ == "__main__":
    main()

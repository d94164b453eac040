"""LoRA adapters on llama.cpp: what switching costs, and what an adapter costs per token.

Switching: Hearth's set_adapters (apply, then remove) against loading the model again,
the only way to change adapters without it. Per token: Hearth's LlamaCppModel with the
test LoRA applied against raw llama-cpp-python given the same file as `lora_path`, and
against the same model without an adapter; rounds interleaved so a shared machine's noise
hits every side alike. The LoRA is the tests' (tests/model_factory.py: ensure_lora).

    .venv/bin/python bench/lora.py [--rounds 4] [--tokens 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402

import loaders  # noqa: E402
from loaders.fields import build  # noqa: E402
from loaders.lora import parse_entries  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from tests.model_factory import ensure_lora  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

PROMPT = "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"
N_CTX = 1024


def raw_round(llm: llama_cpp.Llama, n: int) -> float:
    """Tokens/s after the first, raw library."""
    ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    llm.reset()
    first, count = None, 0
    for token in llm.generate(ids, temp=0.0):
        llm.detokenize([token])
        count += 1
        if first is None:
            first = time.perf_counter()
        if count >= n:
            break
    return (count - 1) / (time.perf_counter() - first)


def hearth_round(model, n: int) -> float:
    """Tokens/s after the first, through Model.generate."""
    ids = model.encode(PROMPT)
    model._llm.reset()
    params = GenerationParams(temperature=0.0, max_new_tokens=n, ignore_eos=True)
    first, count = None, 0
    for _ in model.generate(ids, params, threading.Event()):
        count += 1
        if first is None:
            first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    path, lora = default_model_path(), ensure_lora() / "banana.gguf"
    loader = loaders.get("llama.cpp")
    options = build(loader.Options, {"n_ctx": N_CTX, "n_threads": args.threads})

    loads = []
    for _ in range(3):
        start = time.perf_counter()
        loader.load(path, options).unload()
        loads.append(time.perf_counter() - start)
    model = loader.load(path, options)
    applies, removes = [], []
    for _ in range(10):
        start = time.perf_counter()
        model.set_adapters(parse_entries([str(lora)]))
        applies.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.set_adapters(())
        removes.append(time.perf_counter() - start)
    print(f"reload the model: {statistics.median(loads) * 1000:.0f} ms; set_adapters: apply "
          f"{statistics.median(applies) * 1000:.1f} ms, remove {statistics.median(removes) * 1000:.1f} ms "
          f"(medians of 3, 10, 10)")

    raw = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_threads=args.threads, lora_path=str(lora),
                          verbose=False)
    speeds: dict[str, list[float]] = {"raw + LoRA": [], "Hearth + LoRA": [], "Hearth, no adapter": []}
    for _ in range(args.rounds):
        speeds["raw + LoRA"].append(raw_round(raw, args.tokens))
        model.set_adapters(parse_entries([str(lora)]))
        speeds["Hearth + LoRA"].append(hearth_round(model, args.tokens))
        model.set_adapters(())
        speeds["Hearth, no adapter"].append(hearth_round(model, args.tokens))
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    for name, value in medians.items():
        print(f"{name:20s} {value:6.1f} tok/s")
    print(f"Hearth + LoRA / raw + LoRA: {medians['Hearth + LoRA'] / medians['raw + LoRA']:.3f}; "
          f"with / without the LoRA: {medians['Hearth + LoRA'] / medians['Hearth, no adapter']:.3f}")
    raw.close()
    model.unload()


if __name__ == "__main__":
    main()

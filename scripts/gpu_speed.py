"""Tokens/s of one backend through Hearth against the raw library, on the same loaded
model in one process (scripts/gpu_check.py runs it once per backend).

Hearth's side is the path the UI and the API take: the engine's queue and worker
thread, the loader's Model.generate, stop-string matching and stats. The raw side
calls the library the same loader holds: llama_cpp.Llama.generate, Transformers'
model.generate, or exllamav2's dynamic generator. Both generate exactly --tokens
tokens greedily (end of text ignored) after the contract's prompt, rounds
interleaved with their order alternated, and each rate is the whole request's:
tokens / (prompt + generation seconds), medians over the rounds.

    python scripts/gpu_speed.py MODEL BACKEND... [--device cuda|cpu] [--tokens 256] [--rounds 5] [--json OUT]

BACKEND: llama.cpp (MODEL a GGUF), transformers-fp16 / -bf16 / -fp32 (a Hugging Face
folder), exllamav2 (an EXL2 folder).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loaders.cpu_repack import model_params  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from tests.integration.test_loader_contract import QUESTION  # noqa: E402
from webui.chat.prompts import chat_prompt  # noqa: E402
from webui.runtime.generation import GenerationEngine  # noqa: E402
from webui.runtime.model_manager import ModelManager  # noqa: E402

BACKENDS = ("llama.cpp", "transformers-fp16", "transformers-bf16", "transformers-fp32", "exllamav2")


def llama_fix() -> dict:
    """Hearth's llama.cpp options that scripts/gpu_llama_probe.py found a crashing load
    needs (gpu_check.py passes them on), applied to both sides."""
    return json.loads(os.environ.get("HEARTH_CONTRACT_LLAMA_OPTIONS") or "{}")


def load_options(backend: str, device: str) -> tuple[str, dict]:
    if backend == "llama.cpp":
        return "llama.cpp", {"n_ctx": 2048, "n_gpu_layers": -1 if device == "cuda" else 0, **llama_fix()}
    if backend.startswith("transformers-"):
        dtype = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[backend.split("-", 1)[1]]
        return "Transformers", {"dtype": dtype, "device": device}
    if backend == "exllamav2":
        return "ExLlamaV2", {"max_seq_len": 2048}
    raise SystemExit(f"unknown backend {backend!r}")


def raw_side(backend: str, model, prompt: str, tokens: int, raw_llm=None) -> Callable[[], int]:
    """A call that generates `tokens` tokens with the raw library; returns the count."""
    if backend == "llama.cpp":
        llm = raw_llm
        ids = model.encode(prompt)

        def run() -> int:
            llm.reset()  # both sides read the whole prompt every round
            count = 0
            for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
                llm.detokenize([token])
                count += 1
                if count >= tokens:
                    break
            return count
        return run
    if backend.startswith("transformers-"):
        import torch

        hf = model.hf_model
        input_ids = torch.tensor([model.encode(prompt)], device=hf.device)

        def run() -> int:
            with torch.inference_mode():
                out = hf.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                  max_new_tokens=tokens, min_new_tokens=tokens,
                                  pad_token_id=hf.generation_config.pad_token_id)
            if hf.device.type == "cuda":
                torch.cuda.synchronize()
            return int(out.shape[-1] - input_ids.shape[-1])
        return run
    from exllamav2.generator import ExLlamaV2Sampler

    generator = model._generator  # the ExLlamaV2DynamicGenerator Hearth's loader made

    def run() -> int:
        generator.generate(prompt=prompt, max_new_tokens=tokens, gen_settings=ExLlamaV2Sampler.Settings.greedy(),
                           stop_conditions=[], encode_special_tokens=True, add_bos=False, completion_only=True)
        return tokens
    return run


def hearth_side(backend: str, engine: GenerationEngine, model, prompt: str, tokens: int) -> Callable[[], int]:
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens, ignore_eos=True)

    def run() -> int:
        if backend == "llama.cpp":
            model._llm.reset()  # as the raw side: no KV reuse between rounds
        _, stats = engine.submit(prompt, params).result()
        return stats.completion_tokens
    return run


def measure(backend: str, path: Path, device: str, tokens: int, rounds: int) -> dict:
    loader, options = load_options(backend, device)
    if device == "cuda":
        import torch  # noqa: F401  (as in the contract: its CUDA libraries are loaded before llama.cpp's)
    manager = ModelManager()
    engine = GenerationEngine(manager)
    start = time.perf_counter()
    manager.load(path, loader, options)
    load_seconds = time.perf_counter() - start
    raw_llm = None
    if backend == "llama.cpp":
        import llama_cpp

        # A Llama of its own: Hearth's loader swaps in its own sampler chain on the one it holds.
        fix = llama_fix()
        params = model_params(use_extra_bufts=False) if fix.get("cpu_repack") == "off" else contextlib.nullcontext()
        with params:
            raw_llm = llama_cpp.Llama(str(path), n_ctx=options["n_ctx"], n_gpu_layers=options["n_gpu_layers"],
                                      use_mmap=fix.get("use_mmap", True), verbose=False)
    try:
        model = manager.current.model
        prompt = chat_prompt(model.chat_template, QUESTION)
        sides = {"raw": raw_side(backend, model, prompt, tokens, raw_llm),
                 "hearth": hearth_side(backend, engine, model, prompt, tokens)}
        for run in sides.values():
            run()  # warm-up: first calls pay for lazy initialisation (kernels, graphs, caches)
        rates: dict[str, list[float]] = {"raw": [], "hearth": []}
        for r in range(rounds):
            for side in (("raw", "hearth") if r % 2 == 0 else ("hearth", "raw")):
                t = time.perf_counter()
                n = sides[side]()
                rates[side].append(n / (time.perf_counter() - t))
    finally:
        if raw_llm is not None:
            raw_llm.close()
        manager.unload()
        engine.close()
    med = {side: statistics.median(v) for side, v in rates.items()}
    return {"backend": backend, "device": device, "model": path.name, "tokens": tokens, "rounds": rounds,
            "load_s": round(load_seconds, 2), "hearth_tok_s": round(med["hearth"], 1),
            "raw_tok_s": round(med["raw"], 1), "ratio": round(med["hearth"] / med["raw"], 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("backends", nargs="+", choices=BACKENDS)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here, a JSON list")
    args = parser.parse_args(argv)
    results = []
    for backend in args.backends:
        r = measure(backend, args.model, args.device, args.tokens, args.rounds)
        print(f"{backend} on {args.device}: Hearth {r['hearth_tok_s']} tok/s, raw {r['raw_tok_s']} tok/s, "
              f"ratio {r['ratio']} ({args.tokens} tokens, median of {args.rounds} interleaved rounds; "
              f"loaded in {r['load_s']} s)", flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

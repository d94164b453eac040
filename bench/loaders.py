"""The Transformers-family loaders, measured.

1. Transformers through Hearth vs raw `model.generate`: the same folder, the same
   in-memory model, the same sampler settings and seed, the same torch threads;
   rounds interleaved (and their order alternated) so that noise from a shared
   machine hits both sides alike. Goal: Hearth >= 0.95 x raw tokens/s. Hearth's side
   is the whole path a user gets: the core's queue and worker thread, the loader's
   streaming thread, incremental detokenizing, stop-string matching, stats.
   Besides wall-clock tokens/s it reports tokens per CPU-second of this process (all
   its threads): on a machine that other jobs keep busy, wall-clock rates measure the
   OS scheduler as much as the code, while CPU time is what each side itself costs.
2. Every loader that runs here on the same prompt (llama.cpp Q4_1, Transformers
   fp32 and bf16, GPTQ 4-bit), each in its own process so its RAM is its own: load
   time, prompt and generation tokens/s, and the RAM the model adds.

The test models come from tests/model_factory.py (built once, cached).

    .venv/bin/python bench/loaders.py [--rounds 15] [--tokens 32] [--all-rounds 3] [--skip-compare] [--skip-all]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = [{"role": "user", "content": "Tell me about the history of Paris in a few paragraphs."}]
SAMPLING = dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0, repetition_penalty=1.0,
                seed=1234, ignore_eos=True)
LOADERS = {
    "llama.cpp (GGUF Q4_1)": ("llama.cpp", "gguf", {"n_ctx": 2048}),
    "Transformers fp32": ("Transformers", "fp32", {"dtype": "float32", "device": "cpu"}),
    "Transformers bf16": ("Transformers", "fp32", {"dtype": "bfloat16", "device": "cpu"}),
    "GPTQ 4-bit (g64)": ("GPTQ", "gptq", {"device": "cpu"}),
}


def model_path(kind: str) -> Path:
    from tests import model_factory
    from webui.runtime.default_model import default_model_path

    return {"gguf": default_model_path, "fp32": model_factory.ensure_fp32, "gptq": model_factory.ensure_gptq}[kind]()


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 20)


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it does not carry over the
    parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def compare(rounds: int, tokens: int) -> dict:
    import torch

    from loaders.params import GenerationParams
    from webui.chat.prompts import chat_prompt
    from webui.hearth import Hearth

    hearth = Hearth(models_dir=ROOT / "no-models-here")
    loaded = hearth.load_model(str(model_path("fp32")), "Transformers", {"dtype": "float32", "device": "cpu"})
    model = loaded.model
    hf = model.hf_model
    prompt = chat_prompt(model.chat_template, QUESTION)
    ids = model.encode(prompt)
    params = GenerationParams(max_new_tokens=tokens, **SAMPLING)
    input_ids = torch.tensor([ids])

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - wall, time.process_time() - cpu, out

    def raw() -> list[int]:
        torch.manual_seed(SAMPLING["seed"])
        with torch.inference_mode():
            out = hf.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                              temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                              min_p=params.min_p, max_new_tokens=tokens, min_new_tokens=tokens,
                              repetition_penalty=1.0, pad_token_id=hf.generation_config.pad_token_id)
        return out[0, len(ids):].tolist()

    def ours():
        return hearth.complete(prompt, params).result()

    raw(), ours()  # warm-up: first calls pay for lazy initialisation
    rates = {"raw": [], "hearth": []}
    cpu_rates = {"raw": [], "hearth": []}
    same_text = True
    for r in range(rounds):
        for side in (("raw", "hearth") if r % 2 == 0 else ("hearth", "raw")):
            wall, cpu, out = timed(raw if side == "raw" else ours)
            n = len(out) if side == "raw" else out[1].completion_tokens
            rates[side].append(n / wall)
            cpu_rates[side].append(n / cpu)
            if side == "raw":
                raw_text = model.decode(out)
            else:
                text = out[0]
        same_text &= text == raw_text
    hearth.unload_model()
    hearth.engine.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_rates.items()}
    # Each round's two runs are back to back, so a round's ratio sees the same
    # background load on both sides: the median of those is the figure to read.
    paired = [h / r for h, r in zip(rates["hearth"], rates["raw"], strict=True)]
    cpu_paired = [h / r for h, r in zip(cpu_rates["hearth"], cpu_rates["raw"], strict=True)]
    return {"rounds": rounds, "tokens": tokens, "torch_threads": torch.get_num_threads(),
            "raw_tok_s": med["raw"], "hearth_tok_s": med["hearth"], "ratio": statistics.median(paired),
            "raw_tok_cpu_s": cpu_med["raw"], "hearth_tok_cpu_s": cpu_med["hearth"],
            "cpu_ratio": statistics.median(cpu_paired), "same_text": same_text,
            "raw_all": rates["raw"], "hearth_all": rates["hearth"]}


def measure_one(label: str, rounds: int, tokens: int) -> dict:
    """Run in a child process: one loader, its RAM measured from just before loading."""
    from loaders.params import GenerationParams
    from webui.hearth import Hearth

    loader, kind, options = LOADERS[label]
    path = model_path(kind)
    if loader != "llama.cpp":
        import torch  # noqa: F401  (the library's own RAM is not the model's)
        import transformers  # noqa: F401
        if loader == "GPTQ":
            os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
            import gptqmodel  # noqa: F401
    hearth = Hearth(models_dir=ROOT / "no-models-here")
    before = rss_mib()
    loaded = hearth.load_model(str(path), loader, options)
    params = GenerationParams(max_new_tokens=tokens, **SAMPLING)
    hearth.chat(QUESTION, params).result()  # warm-up
    gen, prompt = [], []
    for _ in range(rounds):
        _, stats = hearth.chat(QUESTION, params).result()
        gen.append(stats.generation_tokens_per_second)
        prompt.append(stats.prompt_tokens_per_second)
    after = rss_mib()
    peak = peak_rss_mib()
    size = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.glob("*.safetensors"))
    hearth.unload_model()
    return {"label": label, "load_s": loaded.load_seconds, "gen_tok_s": statistics.median(gen),
            "prompt_tok_s": statistics.median(prompt), "model_ram_mib": after - before,
            "process_peak_mib": peak, "unloaded_ram_mib": rss_mib() - before, "file_mib": size / (1 << 20)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--all-rounds", type=int, default=3, help="rounds per loader in the every-loader table")
    ap.add_argument("--skip-compare", action="store_true", help="skip Hearth vs raw model.generate")
    ap.add_argument("--skip-all", action="store_true", help="skip the every-loader table")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure one loader
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.rounds, args.tokens)))
        return 0
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    if not args.skip_compare:
        r = compare(args.rounds, args.tokens)
        print(f"\nTransformers fp32, {r['tokens']} tokens sampled (seed fixed), {r['rounds']} interleaved rounds, "
              f"torch threads {r['torch_threads']}")
        print("| path | tok/s (wall, median) | ratio (median of rounds) | tokens per CPU-second (median) | "
              "ratio (median of rounds) |")
        print("|---|---:|---:|---:|---:|")
        print(f"| raw `model.generate` | {r['raw_tok_s']:.1f} | 1.000 | {r['raw_tok_cpu_s']:.1f} | 1.000 |")
        print(f"| Hearth (core queue + Transformers loader) | {r['hearth_tok_s']:.1f} | {r['ratio']:.3f} | "
              f"{r['hearth_tok_cpu_s']:.1f} | {r['cpu_ratio']:.3f} |")
        print(f"same text as raw with the same seed: {'yes' if r['same_text'] else 'NO'}")
        print("all rounds, raw:", " ".join(f"{x:.1f}" for x in r["raw_all"]),
              "| Hearth:", " ".join(f"{x:.1f}" for x in r["hearth_all"]), flush=True)
    if not args.skip_all:
        rows = []
        for label in LOADERS:
            out = subprocess.run([sys.executable, __file__, "--one", label, "--rounds", str(args.all_rounds),
                                  "--tokens", str(args.tokens)], capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                print(f"{label}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"\nEvery loader, the same chat prompt, {args.tokens} tokens sampled, median of {args.all_rounds}")
        print("| loader | file MiB | load s | prompt tok/s | gen tok/s | RAM added MiB | "
              "process peak MiB | left after unload MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['label']} | {r['file_mib']:.0f} | {r['load_s']:.1f} | {r['prompt_tok_s']:.0f} | "
                  f"{r['gen_tok_s']:.1f} | {r['model_ram_mib']:.0f} | {r['process_peak_mib']:.0f} | "
                  f"{r['unloaded_ram_mib']:.0f} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

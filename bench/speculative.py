"""Speculative decoding in the llama.cpp backend, against the same model without it,
in the same run, rounds interleaved so a shared machine's noise hits every side alike.

1. Prompt lookup on an editing task (the model rewrites a paragraph with one small
   change, greedy): tokens/s with and without, and whether the text is the same. The
   peer is llama-cpp-python's own LlamaPromptLookupDecoding (Llama(draft_model=...)).
2. A draft model: the built-in model requantized to Q8_0 as the target, the built-in
   Q4_1 file as the draft: speed ratio and acceptance rate.
3. Greedy divergence: for N prompts, where (if anywhere) the reply with speculation
   parts from the reply without it (rounding of batched evaluation).

One process, all sides driven from the main thread, 1 thread by default: no idle side
keeps a spinning OpenMP team (see the generation benchmark in docs/BENCHMARKS.md).

    .venv/bin/python bench/speculative.py [--rounds 3] [--prompts 12] [--threads 1]
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
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding  # noqa: E402

from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from loaders.speculative import DraftModel  # noqa: E402
from tests.model_factory import requantized_gguf  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

PARAGRAPHS = [
    ("The old lighthouse stood on the northern cliff for two hundred years. Every night its keeper climbed "
     "the spiral stairs, trimmed the wick and watched the ships pass safely into the harbour. When the great "
     "storm came in the winter of 1893, the light never went out, and the village still tells the story.",
     "northern", "southern"),
    ("Our team meets every Tuesday at ten in the small conference room on the second floor. Please bring your "
     "notes from the previous week, a short list of blockers, and any questions for the product owners. "
     "Coffee and biscuits are provided, but lunch is not, so plan accordingly.",
     "Tuesday", "Thursday"),
    ("To bake the bread, mix the flour, salt and yeast in a large bowl, then add warm water and stir until a "
     "soft dough forms. Knead it for ten minutes, leave it to rise for an hour, shape it into a loaf and bake "
     "it at two hundred degrees for thirty minutes.",
     "thirty", "forty"),
]

CHAT_PROMPTS = [
    "What is the capital of France?", "Write a haiku about autumn.", "Explain photosynthesis in two sentences.",
    "List three uses of a paperclip.", "What is 17 times 3?", "Give me a tip for learning a new language.",
    "Describe a cat to someone who has never seen one.", "Why is the sky blue?",
    "Write a short thank-you note to a neighbour.", "What does a compiler do?",
    "Name the planets of the solar system.", "Summarise the plot of Cinderella.",
    "How do I boil an egg?", "What is the difference between weather and climate?",
    "Suggest a name for a bakery.", "Explain recursion to a child.",
]


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def edit_prompt(paragraph: str, old: str, new: str) -> str:
    return chat(f"Rewrite the paragraph below, replacing the word \"{old}\" with \"{new}\". "
                f"Keep everything else exactly the same.\n\n{paragraph}")


def read_prompt(llm, ids: list[int]) -> float:
    """Evaluate all of the prompt but its last token, from scratch, as both sides do
    before generating; its seconds. Timed apart so that tokens/s is generation's alone
    (the prompt is the same work with and without speculation)."""
    llm.reset()
    start = time.perf_counter()
    llm.eval(ids[:-1])
    return time.perf_counter() - start


def hearth_reply(model, prompt: str, n: int) -> tuple[str, int, float, float]:
    """(text, tokens, prompt seconds, generation seconds) through Model.generate."""
    ids = model.encode(prompt)
    prompt_s = read_prompt(model._llm, ids)
    if isinstance(model._drafter, DraftModel):
        # The draft model reads the prompt too, inside generation: from scratch every round.
        model._drafter._llm.reset()
    params = GenerationParams(temperature=0.0, max_new_tokens=n)
    start = time.perf_counter()
    pieces = list(model.generate(ids, params, threading.Event()))
    return "".join(pieces), len(pieces), prompt_s, time.perf_counter() - start


def raw_reply(llm: llama_cpp.Llama, prompt: str, n: int) -> tuple[str, int, float, float]:
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    prompt_s = read_prompt(llm, ids)
    out = []
    start = time.perf_counter()
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        out.append(token)
        if len(out) >= n:
            break
    end = time.perf_counter()
    return llm.detokenize(out).decode("utf-8", errors="replace"), len(out), prompt_s, end - start


def token_ids(model, prompt: str, n: int) -> list[int]:
    """The reply's own token ids (not re-encoded text), for finding where two replies part."""
    ids = model.encode(prompt)
    params = GenerationParams(temperature=0.0, max_new_tokens=n)
    llm = model._llm
    llm.reset()
    tokens = []
    original = llm.detokenize

    def record(tokens_in, *args, **kwargs):
        tokens.extend(tokens_in)
        return original(tokens_in, *args, **kwargs)

    llm.detokenize = record  # LlamaCppModel.generate detokenizes each token as it comes
    try:
        for _ in model.generate(ids, params, threading.Event()):
            pass
    finally:
        del llm.detokenize
    return tokens


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_speed(sides: dict, prompts: list[str], n: int, rounds: int, counts_of=None) -> dict:
    """Interleaved rounds; per side: generation tokens/s and whole-reply tokens/s (the
    prompt included), over all prompts, median over rounds."""
    results = {name: {"tps": [], "whole_tps": [], "texts": None, "drafted": 0, "accepted": 0, "tokens": 0}
               for name in sides}
    for _ in range(rounds):
        for name, (kind, obj) in sides.items():
            tokens = seconds = prompt_seconds = 0.0
            texts = []
            drafted = accepted = 0
            for prompt in prompts:
                reply = hearth_reply if kind == "hearth" else raw_reply
                text, count, prompt_s, gen_s = reply(obj, prompt, n)
                texts.append(text)
                tokens += count
                seconds += gen_s
                prompt_seconds += prompt_s
                spec = getattr(obj, "last_speculation", None)
                if spec is not None:
                    drafted += spec.drafted
                    accepted += spec.accepted
            r = results[name]
            r["tps"].append(tokens / seconds)
            r["whole_tps"].append(tokens / (seconds + prompt_seconds))
            r["texts"], r["drafted"], r["accepted"], r["tokens"] = texts, drafted, accepted, tokens
    return results


def report(title: str, results: dict, base: str) -> None:
    print(f"\n{title}")
    b = statistics.median(results[base]["tps"])
    bw = statistics.median(results[base]["whole_tps"])
    for name, r in results.items():
        tps, wtps = statistics.median(r["tps"]), statistics.median(r["whole_tps"])
        same = "same text" if r["texts"] == results[base]["texts"] else "TEXT DIFFERS"
        acc = (f", accepted {r['accepted']}/{r['drafted']} ({r['accepted'] / r['drafted']:.0%})"
               if r["drafted"] else "")
        print(f"  {name:28s} {tps:6.1f} tok/s ({tps / b:.2f}x); with the prompt {wtps:5.1f} ({wtps / bw:.2f}x); "
              f"{r['tokens']:.0f} tokens, {same}{acc}")


def divergence(title: str, plain, fast, prompts: list[str], n: int) -> None:
    parted = []
    for prompt in prompts:
        a, b = token_ids(plain, prompt, n), token_ids(fast, prompt, n)
        at = first_difference(a, b)
        if at is not None:
            parted.append((prompt[:40], at, len(a)))
    print(f"\n{title}: {len(prompts) - len(parted)} of {len(prompts)} greedy replies identical "
          f"(up to {n} tokens)")
    for prompt, at, length in parted:
        print(f"  parts at token {at} of {length}: {prompt!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--prompts", type=int, default=12, help="prompts for the divergence check")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: lookup,draft,divergence")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    builtin = default_model_path()
    threads = dict(n_threads=args.threads, n_threads_batch=args.threads)
    common = LlamaCppOptions(n_ctx=2048, **threads)
    loader = LlamaCppLoader()
    print(f"model {builtin.name}, {args.threads} thread(s), {args.rounds} rounds, up to {args.tokens} tokens")

    plain = loader.load(builtin, common)
    edits = [edit_prompt(*p) for p in PARAGRAPHS]
    if "lookup" not in skip:
        lookups = {f"lookup ngram={g} max={m}": loader.load(
            builtin, LlamaCppOptions(n_ctx=2048, prompt_lookup_ngram=g, prompt_lookup_max=m, **threads))
            for g, m in ((2, 8), (3, 10), (3, 16), (4, 12))}
        raw = llama_cpp.Llama(str(builtin), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                              logits_all=True, verbose=False,
                              draft_model=LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=10))
        sides = {"without": ("hearth", plain), **{k: ("hearth", v) for k, v in lookups.items()},
                 "llama-cpp-python lookup 3/10": ("raw", raw)}
        report("1. Prompt lookup, editing task (3 paragraphs, one word replaced)",
               compare_speed(sides, edits, args.tokens, args.rounds), "without")
        # What prompt lookup costs where the reply does not repeat the prompt.
        report("1b. Prompt lookup on ordinary chat prompts (4)",
               compare_speed({"without": ("hearth", plain),
                              "lookup ngram=3 max=10": ("hearth", lookups["lookup ngram=3 max=10"])},
                             [chat(p) for p in CHAT_PROMPTS[:4]], args.tokens, args.rounds), "without")
        if "divergence" not in skip:
            divergence("3a. Divergence, prompt lookup ngram=3 max=10, chat prompts", plain,
                       lookups["lookup ngram=3 max=10"], [chat(p) for p in CHAT_PROMPTS[:args.prompts]], 64)
        for m in lookups.values():
            m.unload()
        raw.close()

    if "draft" not in skip:
        target = requantized_gguf("q8_0")
        alone = loader.load(target, common)
        pairs = {f"draft model, draft_max={d}": loader.load(
            target, LlamaCppOptions(n_ctx=2048, draft_model=str(builtin), draft_max=d, **threads))
            for d in (3, 6)}
        sides = {"Q8_0 alone": ("hearth", alone), **{k: ("hearth", v) for k, v in pairs.items()}}
        chats = [chat(p) for p in CHAT_PROMPTS[:4]]
        report("2. Draft model: Q8_0 target, Q4_1 draft (4 chat prompts)",
               compare_speed(sides, chats, args.tokens, args.rounds), "Q8_0 alone")
        report("2b. Draft model on the editing task",
               compare_speed(sides, edits, args.tokens, args.rounds), "Q8_0 alone")
        if "divergence" not in skip:
            divergence("3b. Divergence, draft model (draft_max=6), chat prompts", alone,
                       pairs["draft model, draft_max=6"], [chat(p) for p in CHAT_PROMPTS[:args.prompts]], 64)
        for m in (alone, *pairs.values()):
            m.unload()
    plain.unload()
    return 0


if __name__ == "__main__":
    sys.exit(main())

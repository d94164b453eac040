"""Generation speed with a JSON Schema grammar against unconstrained, on the built-in model.

Both sides go through Hearth.chat (template, queue, worker, llama.cpp's sampler chain)
with the same prompt and greedy sampling; one side adds response_format json_schema, so
llama.cpp's grammar sampler filters every step. Rounds are interleaved (free,
constrained, free, ...) so a shared machine's noise hits both alike; the figure that
matters is the ratio of generation tokens/s (the first token, prompt processing's, left
out, as llama-bench does).

    .venv/bin/python bench/structured.py [--rounds 6] [--tokens 96]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.params import GenerationParams  # noqa: E402
from webui.hearth import Hearth  # noqa: E402

ASK = [{"role": "user", "content": "List ten books as JSON: title, author, year and a one-line summary each."}]
SCHEMA = {"type": "object", "properties": {"books": {"type": "array", "items": {
    "type": "object", "properties": {"title": {"type": "string"}, "author": {"type": "string"},
                                     "year": {"type": "integer"}, "summary": {"type": "string"}},
    "required": ["title", "author", "year", "summary"], "additionalProperties": False}}},
    "required": ["books"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "books", "schema": SCHEMA, "strict": True}}


def one_round(core: Hearth, tokens: int, constrained: bool) -> tuple[float, int, str]:
    """(generation tok/s, tokens, text). The free side ignores end-of-text, so both sides
    generate the same number of tokens (the schema's array keeps the grammar side going)."""
    core.models.current.model._llm.reset()  # both sides read the whole prompt every round
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens, seed=1, ignore_eos=not constrained)
    text, stats = core.chat(ASK, params, response_format=FORMAT if constrained else None).result()
    return stats.generation_tokens_per_second, stats.completion_tokens, text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=96)
    args = ap.parse_args()
    core = Hearth()
    core.load_model("")
    one_round(core, 8, True)  # warm-up: first grammar parse, caches
    free, constrained, counts = [], [], {True: [], False: []}
    text = ""
    for _ in range(args.rounds):
        for side in (False, True):
            tps, n, out = one_round(core, args.tokens, side)
            (constrained if side else free).append(tps)
            counts[side].append(n)
            text = out if side else text
    print(f"model: built-in SmolLM2-135M Q4_1, greedy, up to {args.tokens} tokens, {args.rounds} interleaved rounds")
    print(f"unconstrained:        {statistics.median(free):7.1f} tok/s (median; {statistics.median(counts[False])} tokens)")
    print(f"json_schema grammar:  {statistics.median(constrained):7.1f} tok/s (median; "
          f"{statistics.median(counts[True])} tokens)")
    print(f"ratio constrained/unconstrained: {statistics.median(constrained) / statistics.median(free):.2f}")
    try:
        json.loads(text)
        print("last constrained reply: complete JSON")
    except ValueError:
        print("last constrained reply: valid JSON prefix, cut at the token limit")


if __name__ == "__main__":
    main()

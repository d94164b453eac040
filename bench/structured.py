"""Generation speed with a JSON Schema grammar against unconstrained, on the built-in model.

Both sides go through Hearth.chat (template, queue, worker, llama.cpp's sampler chain)
with the same prompt and greedy sampling; one side adds response_format json_schema, so
llama.cpp's grammar sampler checks every sampled token (loaders/grammar_sampler.py).
Rounds are interleaved (free, constrained, free, ...) so a shared machine's noise hits
both alike; the figure that
matters is the ratio of generation tokens/s (the first token, prompt processing's, left
out, as llama-bench does). On a shared machine wall-clock speed swings with the load
(per-round ratios from 0.5 to 1.8 at load 8 on 2 cores), so the process's CPU time per
generated token (from the first token on) is reported too: it counts the work done,
not the waiting for a core.

    .venv/bin/python bench/structured.py [--rounds 6] [--tokens 96]

With --tool-grammar the two sides are a plain-text reply (a poem) to a request that
offers a tool with tool_choice auto: without a grammar (--tool-grammar required-only)
and under the text-or-call grammar (--tool-grammar auto, webui/chat/structured.py),
which checks every token of the free text for the start of a call.

    .venv/bin/python bench/structured.py --tool-grammar [--rounds 6] [--tokens 96]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.params import GenerationParams  # noqa: E402
from webui.chat.structured import text_or_call_grammar  # noqa: E402
from webui.chat.tools import CALL_SHAPES, check_tool_request  # noqa: E402
from webui.hearth import Hearth  # noqa: E402
from webui.runtime.generation import Failed, Finished  # noqa: E402

ASK = [{"role": "user", "content": "List ten books as JSON: title, author, year and a one-line summary each."}]
SCHEMA = {"type": "object", "properties": {"books": {"type": "array", "items": {
    "type": "object", "properties": {"title": {"type": "string"}, "author": {"type": "string"},
                                     "year": {"type": "integer"}, "summary": {"type": "string"}},
    "required": ["title", "author", "year", "summary"], "additionalProperties": False}}},
    "required": ["books"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "books", "schema": SCHEMA, "strict": True}}
PLAIN_ASK = [{"role": "user", "content": "Write a long poem about the sea."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def submit(core: Hearth, tokens: int, constrained: bool, tool_grammar: bool):
    """One side's job: the JSON Schema comparison, or with `tool_grammar` a plain reply
    under tool_choice auto without (free side) or with the text-or-call grammar."""
    if tool_grammar:
        core.tool_grammar = "auto" if constrained else "required-only"
        params = GenerationParams(temperature=0.0, max_new_tokens=tokens, seed=1, ignore_eos=True)
        return core.chat(PLAIN_ASK, params, tools=check_tool_request([WEATHER], "auto", None, PLAIN_ASK))
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens, seed=1, ignore_eos=not constrained)
    return core.chat(ASK, params, response_format=FORMAT if constrained else None)


def one_round(core: Hearth, tokens: int, constrained: bool, tool_grammar: bool = False) -> tuple[float, float, int, str]:
    """(generation tok/s, CPU ms per token, tokens, text). The free side ignores
    end-of-text, so both sides generate the same number of tokens (the schema's array
    keeps the grammar side going). CPU time counts from the first token, as tok/s does:
    the prompt's batch runs on every core, and its threads spin at barriers on a busy
    machine (1-3 s of CPU for this 49-token prompt at load 8)."""
    core.models.current.model._llm.reset()  # both sides read the whole prompt every round
    job = submit(core, tokens, constrained, tool_grammar)
    if constrained and not job.params.grammar:
        raise SystemExit("the constrained side has no grammar")
    parts, cpu = [], None
    for event in job.events():
        if isinstance(event, Failed):
            raise SystemExit(event.message)
        if isinstance(event, Finished):
            stats = event.stats
            break
        parts.append(event.text)
        cpu = _cpu_seconds() if cpu is None else cpu
    cpu_ms = (_cpu_seconds() - cpu) * 1000 / max(stats.completion_tokens - 1, 1)
    return stats.generation_tokens_per_second, cpu_ms, stats.completion_tokens, "".join(parts)


def free_text_check_us(core: Hearth, text: str) -> float:
    """Microseconds of thread CPU time llama.cpp's grammar sampler spends per token of
    `text` under the text-or-call grammar, as loaders/grammar_sampler.py drives it: one
    candidate checked, then the token accepted."""
    import ctypes

    import llama_cpp

    llm = core.models.current.model._llm
    ids = llm.tokenize(text.encode(), add_bos=False)
    grammar = text_or_call_grammar([WEATHER["function"]], CALL_SHAPES["hermes"], parallel=True).encode()
    one = llama_cpp.llama_token_data(0, 1.0, 0.0)
    candidates = llama_cpp.llama_token_data_array(ctypes.pointer(one), 1, -1, False)
    best = float("inf")
    for _ in range(5):
        sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar, b"root")
        start = time.thread_time()
        for token in ids:
            one.id, one.logit = token, 1.0
            candidates.size, candidates.selected, candidates.sorted = 1, -1, False
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            llama_cpp.llama_sampler_accept(sampler, token)
        best = min(best, (time.thread_time() - start) / max(len(ids), 1))
        llama_cpp.llama_sampler_free(sampler)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--tool-grammar", action="store_true",
                    help="plain text under tool_choice auto, without and with the text-or-call grammar")
    args = ap.parse_args()
    core = Hearth()
    core.load_model("")
    one_round(core, 8, True, args.tool_grammar)  # warm-up: first grammar parse, caches
    free, constrained, counts, cpu = [], [], {True: [], False: []}, {True: [], False: []}
    text = {}
    for _ in range(args.rounds):
        for side in (False, True):
            tps, cpu_ms, n, out = one_round(core, args.tokens, side, args.tool_grammar)
            (constrained if side else free).append(tps)
            counts[side].append(n)
            cpu[side].append(cpu_ms)
            text[side] = out
    grammar = "text-or-call grammar" if args.tool_grammar else "json_schema grammar"
    print(f"model: built-in SmolLM2-135M Q4_1, greedy, up to {args.tokens} tokens, {args.rounds} interleaved rounds")
    print(f"unconstrained:        {statistics.median(free):7.1f} tok/s (median; {statistics.median(counts[False])} tokens)")
    print(f"{grammar + ':':22}{statistics.median(constrained):7.1f} tok/s (median; "
          f"{statistics.median(counts[True])} tokens)")
    print(f"ratio constrained/unconstrained: {statistics.median(constrained) / statistics.median(free):.2f}")
    # Each round's own ratio: on a shared machine the load changes between rounds, and
    # the two sides of one round ran seconds apart.
    rounds = [c / f for f, c in zip(free, constrained, strict=True)]
    print("per-round ratios: " + ", ".join(f"{r:.2f}" for r in rounds)
          + f" (median {statistics.median(rounds):.2f})")
    free_cpu, constrained_cpu = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"CPU per token: unconstrained {free_cpu:.1f} ms, {grammar} {constrained_cpu:.1f} ms "
          f"(medians); speed ratio by CPU time: {free_cpu / constrained_cpu:.2f}")
    if args.tool_grammar:
        print("the two sides' last replies are " + ("the same text" if text[True] == text[False] else "different"))
        print(f"the grammar's check and accept of one free-text token: {free_text_check_us(core, text[True]):.1f} us "
              "(thread CPU time, best of 5, over the last reply's tokens)")
        return
    try:
        json.loads(text[True])
        print("last constrained reply: complete JSON")
    except ValueError:
        print("last constrained reply: valid JSON prefix, cut at the token limit")


if __name__ == "__main__":
    main()

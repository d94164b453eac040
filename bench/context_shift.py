"""Context shift vs today's re-fit: a long character chat past a small context.

Two Hearth cores in one process load the built-in model with the same settings but
context_shift on and off, and hold the same chat (chat-instruct with Ember, greedy,
the same questions) turn by turn, interleaved (on, off, on, off, ...) so that noise
from a shared machine hits both alike. From the turn where the history first
outgrows the context, every turn drops the oldest turns: with context shift only the
new turn is evaluated, without it everything after the character is read again.

Per turn: wall time of the whole turn (queue, fitting, prompt, reply), time to the
first token, and prompt tokens evaluated; medians over the turns that dropped, and
ratios off / on.

    .venv/bin/python bench/context_shift.py [--ctx 1024] [--turns 40] [--tokens 64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.params import GenerationParams  # noqa: E402
from webui.chat.conversation import ChatOptions  # noqa: E402
from webui.hearth import Hearth  # noqa: E402

TOPICS = ["the old mill", "winter stars", "the river otters", "a lost lantern", "mushroom soup",
          "the northern road", "your favourite song", "the first snow", "a traveller's map",
          "the owl in the oak"]


def question(i: int) -> str:
    return f"Tell me a short story about {TOPICS[i % len(TOPICS)]}, part {i + 1}."


def turn(core: Hearth, conv, options: ChatOptions, params: GenerationParams, i: int) -> dict:
    start = time.perf_counter()
    reply = conv.send(question(i), options, params)
    text, stats = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)
    return {"seconds": time.perf_counter() - start, "prompt_seconds": stats.prompt_seconds,
            "evaluated": stats.prompt_eval_tokens, "prompt": stats.prompt_tokens,
            "reply": stats.completion_tokens, "first_kept": reply.job.prompt.built.first_kept}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens per reply")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as scratch:
        os.environ["HEARTH_USER_DATA"] = scratch  # the chats are saved there, not in user_data/
        sides = {}
        for name, shift in (("on", True), ("off", False)):
            core = Hearth(models_dir=Path(scratch) / "no-models")
            core.load_model(None, "llama.cpp", {"n_ctx": args.ctx, "context_shift": shift})
            options = ChatOptions(mode="chat-instruct", character="Ember")
            sides[name] = (core, core.conversation(options), options)
        params = GenerationParams(temperature=0.0, seed=1, max_new_tokens=args.tokens)
        rows: dict[str, list[dict]] = {"on": [], "off": []}
        try:
            for i in range(args.turns):
                for name, (core, conv, options) in sides.items():
                    rows[name].append(turn(core, conv, options, params, i))
                on, off = rows["on"][-1], rows["off"][-1]
                print(f"turn {i + 1:3d}: prompt {on['prompt']:5d}  dropped {on['first_kept']:3d}  "
                      f"evaluated on {on['evaluated']:5d} / off {off['evaluated']:5d}  "
                      f"turn on {on['seconds']:6.2f}s / off {off['seconds']:6.2f}s", flush=True)
        finally:
            for core, _, _ in sides.values():
                core.unload_model()
                core.engine.close()

    # Turns that dropped more than the turn before: the ones context shift is for.
    dropping = [i for i in range(1, args.turns) if rows["on"][i]["first_kept"] > rows["on"][i - 1]["first_kept"]]
    if not dropping:
        print("the chat never outgrew the context: use more --turns or a smaller --ctx")
        return 1
    on = [rows["on"][i] for i in dropping]
    off = [rows["off"][i] for i in dropping]
    print(f"\nn_ctx {args.ctx}, {args.turns} turns, {len(dropping)} of them dropped old turns "
          f"(from turn {dropping[0] + 1}); medians over those:")
    print(f"{'':28s}{'context shift':>15s}{'re-fit (off)':>15s}{'off / on':>10s}")
    for label, key, unit in (("prompt tokens evaluated", "evaluated", ""), ("time to first token", "prompt_seconds", "s"),
                             ("time per turn", "seconds", "s"), ("reply tokens", "reply", "")):
        a, b = median(on, key), median(off, key)
        fmt = ".3f" if unit else ".0f"
        print(f"{label:28s}{a:>14{fmt}}{unit:1s}{b:>14{fmt}}{unit:1s}{b / a if a else float('nan'):>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed and context use of recent replies, live; and a llama-bench style run."""
from __future__ import annotations

import threading
from collections import deque

from webui.extensions.api import ExtensionContext

from .bench import results_table, run_bench

EXTENSION_API = 1
TITLE = "Stats"
DESCRIPTION = ("A live plot of prompt and generation speed and context use over recent replies, "
               "and a llama-bench style pp512/tg128 run on the loaded model.")
PLOTTED = 50  # replies in the plot
REFRESH_S = 2.0

_bench_lock = threading.Lock()  # one benchmark at a time
_own = deque(maxlen=64)  # the benchmark's own runs, left out of the plot


def replies(ctx: ExtensionContext) -> list:
    own = {id(s) for s in _own}
    return [s for s in ctx.recent_replies() if id(s) not in own][-PLOTTED:]


def rows(ctx: ExtensionContext) -> dict:
    """The plot's data: per reply, both speeds and the share of the context used."""
    speed, context = [], []
    for n, s in enumerate(replies(ctx), 1):
        speed.append({"reply": n, "series": "prompt", "tokens_per_s": round(s.prompt_tokens_per_second, 1)})
        speed.append({"reply": n, "series": "generation", "tokens_per_s": round(s.generation_tokens_per_second, 1)})
        used = (s.prompt_tokens + s.completion_tokens) / s.context_length * 100 if s.context_length else 0.0
        context.append({"reply": n, "context_pct": round(used, 1)})
    return {"speed": speed, "context": context}


def summary(ctx: ExtensionContext) -> str:
    recent = replies(ctx)
    if not recent:
        return "No replies yet: chat a little, or run the benchmark below."
    last = recent[-1]
    used = (last.prompt_tokens + last.completion_tokens) / last.context_length * 100 if last.context_length else 0
    return (f"{len(recent)} recent replies. Last: generation {last.generation_tokens_per_second:.1f} tok/s, "
            f"prompt {last.prompt_tokens_per_second:.0f} tok/s, context {used:.0f}% used "
            f"({last.prompt_tokens + last.completion_tokens} of {last.context_length} tokens).")


def benchmark(ctx: ExtensionContext, repetitions: int = 3) -> str:
    if not _bench_lock.acquire(blocking=False):
        return "A benchmark is already running."
    try:
        model = ctx.model()
        if model is None:
            return "⚠️ no model is loaded: load one in the Model tab"
        results = run_bench(ctx, repetitions=repetitions, own_stats=_own)
        return results_table(model.name, results) + f"\n\n{repetitions} repetitions, through Hearth's queue."
    finally:
        _bench_lock.release()


def ui_tab(ctx: ExtensionContext) -> None:
    import gradio as gr
    import pandas as pd

    def frames():
        data = rows(ctx)
        # Plain column names: Vega-Lite reads "/" and "%" in a field name as syntax.
        if not data["speed"]:
            # None, not an empty frame: a plot first drawn from an empty frame keeps
            # an empty colour legend (no lines) and takes its columns for categories.
            return None, None, summary(ctx)
        speed = pd.DataFrame(data["speed"], columns=["reply", "series", "tokens_per_s"]).astype(
            {"reply": "int64", "series": "string", "tokens_per_s": "float64"})
        context = pd.DataFrame(data["context"], columns=["reply", "context_pct"]).astype(
            {"reply": "int64", "context_pct": "float64"})
        return speed, context, summary(ctx)

    speed0, context0, summary0 = frames()
    text = gr.Markdown(summary0, elem_id="stats-summary")
    with gr.Row():
        speed = gr.LinePlot(speed0, x="reply", y="tokens_per_s", color="series", title="Speed per reply",
                            x_title="reply", y_title="tokens/s", elem_id="stats-speed", height=280)
        context = gr.LinePlot(context0, x="reply", y="context_pct", title="Context used per reply",
                              x_title="reply", y_title="% of the context", y_lim=[0, 100],
                              elem_id="stats-context", height=280)
    gr.Markdown("**Benchmark** (like llama-bench: pp512 reads a 512-token prompt, tg128 writes 128 "
                "tokens; it waits its turn behind other people's replies).")
    with gr.Row():
        reps = gr.Slider(1, 10, value=3, step=1, label="Repetitions", scale=3, elem_id="stats-reps")
        run = gr.Button("Run pp512 / tg128", variant="primary", scale=1, elem_id="stats-bench")
    result = gr.Markdown("", elem_id="stats-bench-result")
    # Ticks only in browsers that opened this tab: every open page would otherwise
    # poll the server forever, stats extension on or off.
    timer = gr.Timer(REFRESH_S, active=False)
    timer.tick(frames, None, [speed, context, text], queue=False, show_progress="hidden")
    if ctx.tab is not None:
        ctx.tab.select(lambda: (*frames(), gr.Timer(active=True)), None, [speed, context, text, timer],
                       queue=False)
    run.click(lambda n: benchmark(ctx, int(n)), [reps], [result])


def api_router(ctx: ExtensionContext):
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/recent", summary="Speed and context use of recent replies")
    def recent() -> dict:
        return rows(ctx)

    return router

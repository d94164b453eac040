"""What the UI says about --idle-unload: a notice while a request waits for the idle
model to load again, and the Model tab's line about a model unloaded for being idle."""
from __future__ import annotations

import html

import gradio as gr

from webui.hearth import Hearth


def announce_reload(hearth: Hearth) -> None:
    """Before a handler's request reaches the core: if the model was unloaded for being
    idle, say that this request loads it again (and so waits)."""
    parked = hearth.models.parked
    if parked is not None:
        gr.Info(parked.notice)


def idle_status(hearth: Hearth) -> str | None:
    """The Model tab's status while the model is unloaded for being idle; else None."""
    parked = hearth.models.parked
    if parked is None:
        return None
    return (f"**Unloaded after {parked.idle_text} idle:** {html.escape(parked.name)} · {parked.loader} · "
            "the next message loads it again with the same options.")

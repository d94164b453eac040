"""The smallest extension that uses every hook: copy this folder to start your own.

Every function below is optional; Hearth calls the ones you define. Each hook gets
`ctx` (webui.extensions.api.ExtensionContext): your name, a logger, your own data
folder and settings, and the loaded model. See docs/EXTENSIONS.md.
"""
from __future__ import annotations

import threading

from webui.extensions.api import ExtensionContext, ModelInfo, Prompt

EXTENSION_API = 1  # the extension API this file is written for
TITLE = "Example"  # the tab's title
DESCRIPTION = "Shows every hook: tidies your message, dates the prompt, counts the reply's words."

seen = {"messages": 0, "replies": 0, "model": None}  # what this extension saw; shown in its tab
lock = threading.Lock()  # hooks run at the same time for different users: guard shared state


def setup(ctx: ExtensionContext) -> None:
    """When the extension is switched on (at start, or in the Extensions tab)."""
    ctx.log.info("example is on")


def modify_input(text: str, ctx: ExtensionContext) -> str:
    """The user's chat message, before it is saved: here, extra spaces removed."""
    with lock:
        seen["messages"] += 1
    return " ".join(text.split())


def modify_prompt(prompt: Prompt, ctx: ExtensionContext) -> Prompt | None:
    """What the model will see (the saved chat keeps what the user wrote)."""
    import datetime

    if prompt.kind == "chat":
        prompt.system_prompt = f"{prompt.system_prompt}\nToday is {datetime.date.today():%A}.".strip()
    prompt.notes[ctx.name] = {"dated": prompt.kind == "chat"}  # read by modify_output below
    return prompt


def modify_output(text: str, prompt: Prompt, ctx: ExtensionContext) -> str:
    """A finished reply, before it is shown for good and saved."""
    with lock:
        seen["replies"] += 1
    return f"{text}\n\n_(example: {len(text.split())} words)_"


def on_model_load(model: ModelInfo, ctx: ExtensionContext) -> None:
    """After a model is loaded."""
    seen["model"] = f"{model.name} ({model.loader}, context {model.context_length})"


def ui_tab(ctx: ExtensionContext) -> None:
    """Build Gradio components; Hearth has opened a tab titled TITLE for them."""
    import gradio as gr

    def report() -> str:
        return (f"Messages tidied: {seen['messages']} · replies counted: {seen['replies']} · "
                f"last model loaded: {seen['model'] or 'none since start'}")

    out = gr.Markdown(report(), elem_id="example-report")
    gr.Button("Refresh", elem_id="example-refresh").click(report, None, out, queue=False)


def api_router(ctx: ExtensionContext):
    """Routes served under /extensions/example/ (with the API key, if one is set)."""
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/seen")
    def get_seen() -> dict:
        return dict(seen)

    return router


def count_words(text: str) -> int:
    """How many words a text has.

    Args:
        text: The text whose words to count.
    """
    return len(text.split())


count_words.safe = True  # a tool marked safe runs without asking the user


def tools(ctx: ExtensionContext) -> list:
    """Functions the chat's model may call while this extension is on (the Chat tab's Tools):
    each one's schema is read from its type hints and docstring, as for a tool file."""
    return [count_words]


def teardown(ctx: ExtensionContext) -> None:
    """When the extension is switched off."""
    ctx.log.info("example is off")

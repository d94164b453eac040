"""Chat with your files: retrieval-augmented chat over .txt, .md and .pdf files."""
from __future__ import annotations

import threading
from pathlib import Path

from webui.extensions.api import ExtensionContext, Prompt, Quote

from .chunking import FILE_TYPES, DocumentError
from .quoting import quoted_message, sources_footer, strip_footer

EXTENSION_API = 1
TITLE = "Documents"
DESCRIPTION = ("Chat with your files: each message brings the best-matching passages of the .txt, "
               ".md and .pdf files you add, quoted to the model as untrusted data, with their "
               "sources under the reply.")
DEFAULT_TOP_K = 3
DEFAULT_MIN_SCORE = 0.25  # cosine similarity; unrelated text scores about 0-0.15

# Everything is per user (ctx.user: the user of the request being served): each has
# their own library, in their own data folder, and their own last prompt, so nobody
# sees another's files, prompt or passages.
_state: dict = {"ctx": None, "libraries": {}, "last_prompt": {}}
_opening = threading.Lock()  # two first requests of one user open one library


def _library() -> DocumentLibrary:  # noqa: F821 (imported in setup: NumPy is heavy)
    ctx = _state["ctx"]
    if ctx is None:
        raise DocumentError("the documents extension is off: switch it on in the Extensions tab")
    from .library import DocumentLibrary

    with _opening:
        library = _state["libraries"].get(ctx.user)
        if library is None:
            library = _state["libraries"][ctx.user] = DocumentLibrary(ctx.data_dir, ctx.embed, ctx.save_file)
    return library


def last_prompt() -> list[tuple[str, str | None]]:
    """What the model saw in the current user's last message, in pieces (text, origin)."""
    ctx = _state["ctx"]
    return list(_state["last_prompt"].get(ctx.user, [])) if ctx is not None else []


def setup(ctx: ExtensionContext) -> None:
    ctx.embed(["warm-up"])  # loads the built-in model now: a one-line install hint if it is missing
    _state.update(ctx=ctx, libraries={}, last_prompt={})


def teardown(ctx: ExtensionContext) -> None:
    _state.update(ctx=None, libraries={}, last_prompt={})


def search_documents(query: str, count: int = 3) -> str:
    """Search the user's documents library for passages about a question or topic.

    Args:
        query: What to look for, in a few words or a question.
        count: How many passages to return (1 to 8).
    """
    hits = _library().search(query, k=max(1, min(int(count), 8)))
    if not hits:
        return "No passage in the user's documents matches."
    return "\n\n".join(f"[{hit.passage.label}] {hit.passage.text}" for hit in hits)


search_documents.safe = True  # reads the library only


def tools(ctx: ExtensionContext) -> list:
    """The chat's tools this extension offers while it is on (the Chat tab's Tools)."""
    return [search_documents]


def modify_prompt(prompt: Prompt, ctx: ExtensionContext) -> Prompt | None:
    if prompt.kind != "chat" or _state["ctx"] is None:
        return None
    for message in prompt.messages:
        if message.get("role") == "assistant":
            message["content"] = strip_footer(message["content"])
    last = prompt.last_user_message()
    if last is None:
        return prompt
    hits = _library().search(last["content"], k=int(ctx.get_setting("top_k", DEFAULT_TOP_K)),
                             min_score=float(ctx.get_setting("min_score", DEFAULT_MIN_SCORE)))
    if not hits:
        return prompt
    pieces = quoted_message(last["content"], hits)
    last["content"] = "".join(text for text, _ in pieces)
    prompt.quotes.extend(Quote(ctx.name, hit.passage.label, hit.passage.text) for hit in hits)
    prompt.notes[ctx.name] = [hit.passage.label for hit in hits]
    _state["last_prompt"][ctx.user] = pieces
    return prompt


def modify_output(text: str, prompt: Prompt, ctx: ExtensionContext) -> str:
    labels = prompt.notes.get(ctx.name)
    return text.rstrip() + sources_footer(labels) if labels else text


def ui_tab(ctx: ExtensionContext) -> None:
    from .tab import build_tab

    build_tab(ctx, _library, last_prompt)


def api_router(ctx: ExtensionContext):
    from .routes import build_router

    return build_router(_library)


def add_files(paths: list[Path]) -> list[str]:
    """Add files to the library; one line per file, ✅ or ⚠️."""
    lines = []
    for path in paths:
        try:
            n = _library().add_file(Path(path))
            lines.append(f"✅ {Path(path).name}: {n} passage{'s' if n != 1 else ''}")
        except DocumentError as e:
            lines.append(f"⚠️ {e}")
    return lines


__all__ = ["FILE_TYPES", "add_files"]

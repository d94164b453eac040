"""The Chat tab's attachments and math: the Attach button and the files waiting for
the next message (chips, each refused file a one-line notice), a long paste kept as
an attachment (pasted.txt), each message's files shown above it in the chat as a
folded block (name, size, kind; the start of the text inside), and LaTeX math.

Reading, limits and the prompt are the chat core's (webui/chat/attachments.py); the
files waiting for the next message live in the browser session's ChatState.

A long paste: the page's paste handler (PASTE_JS) sees a paste into the message box
longer than ChatSettings.paste_attachment_chars and, instead of filling the box,
hands the text to a hidden box whose change event attaches it, with a notice saying
so. Automatic rather than a toggle: a 2,000-character paste in a one-line box is
hard to edit anyway, the notice says what happened, and the chip's ✕ (Remove
attachments) undoes it; 0 turns it off.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from webui.chat.attachments import Attachment, AttachmentLimits, add, of_message, pasted, read_attachment
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.notices import notice

# Math in the Chatbot (KaTeX): $$...$$ and \[...\] as display math, \(...\) inline.
# Not single dollars: "$5 and $10" would render "5 and " as math, and a chat about
# prices is commoner than one in TeX that cannot use \(...\).
LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
]
PREVIEW_CHARS = 600  # of a file's text inside its folded block: the chat is re-sent on every update

PASTE_JS = """
(limit) => {
  window.hearthPasteLimit = Number(limit) || 0;
  const install = () => {
    const box = document.querySelector('#chat-input textarea');
    if (!box) return false;
    if (box.dataset.hearthPaste) return true;
    box.dataset.hearthPaste = '1';
    box.addEventListener('paste', (event) => {
      const text = event.clipboardData ? event.clipboardData.getData('text/plain') : '';
      if (!(window.hearthPasteLimit > 0 && text.length > window.hearthPasteLimit)) return;
      const sink = document.querySelector('#chat-paste-sink textarea');
      if (!sink) return;
      event.preventDefault();
      sink.value = text;
      sink.dispatchEvent(new Event('input', {bubbles: true}));
    });
    return true;
  };
  if (!install()) new MutationObserver((_, observer) => { if (install()) observer.disconnect(); })
    .observe(document.body, {childList: true, subtree: true});
  return [];
}
"""


@dataclass
class AttachmentsPanel:
    upload: gr.UploadButton
    chips: gr.Markdown  # the files waiting for the next message
    clear: gr.Button
    paste: gr.Textbox  # hidden: the page's paste handler puts a long paste here
    paste_limit: gr.Number  # hidden: the threshold, for the paste handler


def limits(hearth: Hearth) -> AttachmentLimits:
    return AttachmentLimits.of(hearth.space().settings.load())


def layout(hearth: Hearth) -> AttachmentsPanel:
    settings = hearth.space().settings.load()
    with gr.Row(equal_height=True):
        upload = gr.UploadButton("📎 Attach", file_count="multiple", size="sm", scale=0, min_width=110,
                                 elem_id="chat-attach")
        chips = gr.Markdown(help_line(limits(hearth)), elem_id="chat-attachments")
        clear = gr.Button("✕ Remove attachments", size="sm", scale=0, min_width=170, visible=False,
                          elem_id="chat-attachments-clear")
    paste = gr.Textbox(visible="hidden", elem_id="chat-paste-sink")
    paste_limit = gr.Number(settings.paste_attachment_chars, visible="hidden", elem_id="chat-paste-limit")
    return AttachmentsPanel(upload, chips, clear, paste, paste_limit)


def help_line(lim: AttachmentLimits) -> str:
    paste = (f"; a paste over {lim.paste_chars:,} characters becomes an attachment (pasted.txt)"
             if lim.paste_chars else "")
    return (f"<small>Attach text, Markdown, code or PDF files (up to {lim.file_bytes / 2**20:g} MB each, "
            f"{lim.message_chars:,} characters of text a message){paste}.</small>")


def chips_text(pending: list[Attachment], lim: AttachmentLimits) -> str:
    if not pending:
        return help_line(lim)
    return "Attached to your next message: " + " ".join(f"`📎 {_plain(a.label)}`" for a in pending)


def _plain(text: str) -> str:
    return text.replace("`", "'")


def panel_updates(pending: list[Attachment], lim: AttachmentLimits) -> tuple[Any, Any]:
    return chips_text(pending, lim), gr.update(visible=bool(pending))


# --- in the chat --------------------------------------------------------------------
def chips(message: dict) -> list[dict]:
    """A message's files as folded blocks above it: the name, size and kind in the
    title, the start of the text inside (never the whole dump)."""
    out = []
    for a in of_message(message):
        preview = a.text[:PREVIEW_CHARS] + ("\n…" if len(a.text) > PREVIEW_CHARS else "")
        fence = "`" * max(3, _longest_backtick_run(preview) + 1)
        out.append({"role": message["role"], "content": f"{fence}text\n{preview}\n{fence}",
                    "metadata": {"title": f"📎 {a.label}", "status": "done"}})
    return out


def _longest_backtick_run(text: str) -> int:
    best = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        best = max(best, run)
    return best


# --- sending ------------------------------------------------------------------------
def sending(respond: Callable[..., Iterator[tuple]], hearth: Hearth) -> Callable[..., Iterator[tuple]]:
    """The Chat tab's send handler with the chips as one more output: the files leave
    the waiting list once their message is in the chat, and come back if the reply
    was refused and the message (with the typed text) given back."""
    def handler(text: str, state: Any, *rest: Any) -> Iterator[tuple]:
        sent = list(state.attachments)
        saved = [a.to_dict() for a in sent]
        for update in respond(text, state, *rest):
            extra: tuple[Any, Any] = (gr.skip(), gr.skip())
            if sent and state.attachments == sent and _in_chat(state, saved):
                state.attachments = []
                extra = panel_updates([], limits(hearth))
            yield (*update, *extra)
        if sent and not state.attachments and not _in_chat(state, saved):
            state.attachments = sent  # refused before any reply: the message was taken back
            yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), *panel_updates(sent, limits(hearth)))
    return handler


def _in_chat(state: Any, saved: list[dict]) -> bool:
    conv = state.conversation
    if conv is None:
        return False
    last_user = next((m for m in reversed(conv.messages) if m["role"] == "user"), None)
    return last_user is not None and last_user.get("attachments") == saved


def take_back(state: Any, before: list[dict], after: list[dict]) -> None:
    """Remove last gave the user's text back to the box: its files go back to the
    waiting list with it (before any still waiting), so nothing is lost."""
    removed = [m for m in before if m["role"] == "user" and not any(m is k for k in after)]
    files = [a for m in removed for a in of_message(m)]
    if files:
        names = {a.name for a in files}
        state.attachments = files + [a for a in state.attachments if a.name not in names]


def waiting(hearth: Hearth) -> Callable[[Any], tuple[Any, Any]]:
    """The chips and the Remove button for the files waiting now."""
    return lambda state: panel_updates(state.attachments, limits(hearth))


def refusal(state: Any, enabled_tools: Any) -> str | None:
    """Why the waiting files cannot go with this message, or None."""
    if state.attachments and enabled_tools:
        return "⚠ Attachments are not sent with tools on: switch the tools off, or remove the attachments"
    return None


# --- wiring -------------------------------------------------------------------------
def wire(hearth: Hearth, panel: AttachmentsPanel, state: gr.State, status: gr.Markdown,
         demo: gr.Blocks | None = None) -> None:
    def attach(files: list | None, chat: Any):
        lim = limits(hearth)
        problems = []
        for f in files or ():
            path = getattr(f, "name", f)
            name = getattr(f, "orig_name", None) or None
            try:
                chat.attachments = add(chat.attachments, read_attachment(path, name, lim), lim)
            except (UserError, ValueError) as e:
                problems.append(notice(e))
        shown = ", ".join(a.name for a in chat.attachments)
        message = problems[0] if len(problems) == 1 else \
            (f"{problems[0]} (and {len(problems) - 1} more refused)" if problems else f"Attached: {shown}.")
        return (*panel_updates(chat.attachments, lim), message, None)

    def attach_paste(text: str, chat: Any):
        lim = limits(hearth)
        if not text:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            chat.attachments = add(chat.attachments, pasted(text), lim)
        except (UserError, ValueError) as e:
            return gr.skip(), gr.skip(), notice(e), ""
        name = chat.attachments[-1].name
        message = (f"Your paste of {len(text):,} characters is attached as {name} (pastes over "
                   f"{lim.paste_chars:,} characters become attachments; ✕ removes it).")
        return (*panel_updates(chat.attachments, lim), message, "")

    def clear(chat: Any):
        chat.attachments = []
        return (*panel_updates([], limits(hearth)), "Attachments removed.")

    panel.upload.upload(attach, [panel.upload, state], [panel.chips, panel.clear, status, panel.upload],
                        queue=False)
    panel.paste.change(attach_paste, [panel.paste, state], [panel.chips, panel.clear, status, panel.paste],
                      queue=False)
    panel.clear.click(clear, [state], [panel.chips, panel.clear, status], queue=False)
    if demo is not None:
        demo.load(lambda: hearth.space().settings.load().paste_attachment_chars, None, [panel.paste_limit],
                  queue=False).then(None, [panel.paste_limit], None, js=PASTE_JS)

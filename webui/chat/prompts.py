"""Turning a conversation into a prompt for the loaded model, in one of three modes:

- `instruct`: a plain assistant; the history goes through the instruction template,
  after the user's system prompt.
- `chat-instruct`: a character, wrapped in the instruction template: the character's
  persona and example dialogue become the system message, the greeting the first
  assistant turn.
- `chat`: a character, as a plain transcript ("Name: text" lines after the persona)
  that the model continues, with no instruction template at all. This suits base
  models; instruction-tuned ones usually do better in chat-instruct.

Each mode fits the history into the context (see context.py) and always keeps the
system prompt or the character.

Fitting renders the template several times (probes that measure what it adds around a
message, the fixed part, the history from some turn on) and needs the model's
tokenizer, which is used only by the generation worker, while it holds the model. So
that the worker does not render untrusted templates while everyone waits for it,
`prerender_chat_prompt` renders, in the submitting thread, what fitting will ask for
when the whole history fits, and the worker finds those texts in the turn's
TemplateRenderer; it renders itself only when it must drop old turns or another model
was loaded meanwhile, bounded by what is left of the turn's time limit.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loaders.context_limit import overflow
from webui.characters.character import Character
from webui.characters.lorebook import Lorebook
from webui.chat.authors_note import AuthorsNote, note_shares, with_note
from webui.chat.budget import ContextBudget, PromptShare, measure_budget
from webui.chat.context import ContextOverflow, TokenCounter, fit_history
from webui.chat.group import GroupTurn
from webui.chat.lore import NO_LORE, LoreSelection, select_lore
from webui.chat.template_fallback import NO_FACTS, ModelFacts, choose_template
from webui.chat.templates import (
    InstructionTemplate,
    RenderCutOff,
    TemplateRenderer,
    render_chat_prompt,
)

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}
MODES = ("chat", "chat-instruct", "instruct")
DEFAULT_OVERHEAD = 8  # tokens a template adds around a message, when probing fails
# Put after an impersonated user's draft, then cut off with everything after it, so the
# user's turn is left open whatever the template writes after a message (no real text
# holds this private-use character).
IMPERSONATE_MARK = "\ue000impersonate\ue000"


def chat_prompt(chat_template: str | None, messages: Sequence[Message],
                system_prompt: str | None = "", facts: ModelFacts = NO_FACTS, **template_vars: Any) -> str:
    """The model's own template (from its GGUF metadata or tokenizer_config.json), or
    the one template_fallback.py picks from `facts` when it ships none. No truncation:
    the API's raw chat. `template_vars` (enable_thinking) go to the template as they are.
    An assistant message's `reasoning_content` reaches the template too: most drop it,
    and those that render earlier thinking (Qwen3's, for the turn in progress) ask for it."""
    convo = [{k: m[k] for k in ("role", "content", "reasoning_content") if k in m} for m in messages]
    if system_prompt and system_prompt.strip():
        convo.insert(0, {"role": "system", "content": system_prompt})
    return render_chat_prompt(choose_template(chat_template, facts).template.source, convo,
                              add_generation_prompt=True, **template_vars)


@dataclass
class ChatRequest:
    messages: Sequence[Message]  # the whole history, oldest first
    mode: str = "instruct"
    character: Character | None = None  # needed by the chat modes
    user_name: str = "You"
    system_prompt: str = ""  # instruct mode's system message
    template: InstructionTemplate | None = None  # None: the model's own
    continue_last: bool = False  # extend the last assistant message
    impersonate: bool = False  # write the user's next message after the last one, the user's draft
    group: GroupTurn | None = None  # a group chat's turn: who speaks, who else is there (chat/group.py)
    authors_note: AuthorsNote | None = None  # inserted at its depth from the end (chat/authors_note.py)
    lorebooks: Sequence[Lorebook] = ()  # the character's and the chat's (chat/lore.py picks entries)
    shares: Sequence[PromptShare] = ()  # other features' text in the prompt, for the budget view

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown chat mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode != "instruct" and self.character is None:
            raise ValueError(f"{self.mode} mode needs a character")
        if self.continue_last and (not self.messages or self.messages[-1]["role"] != "assistant"):
            raise ValueError("there is no reply to continue")
        if self.impersonate and (not self.messages or self.messages[-1]["role"] != "user"):
            raise ValueError("impersonate needs the user's draft as the last message")

    def stop_strings(self, template: InstructionTemplate | None) -> tuple[str, ...]:
        """Where a reply ends besides the model's own end-of-turn token."""
        if self.mode == "chat":
            stops = (f"\n{self.user_name}:", f"\n{self.character.name}:")
        else:
            stops = template.stop if template is not None else ()
        # A group member must not write the others' lines either.
        return tuple(dict.fromkeys(stops + (self.group.stop_strings(self.user_name) if self.group is not None else ())))


@dataclass
class ChatPrompt:
    text: str
    ids: list[int]
    first_kept: int  # messages before this index were left out to fit the context
    stop: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    budget: ContextBudget | None = None  # how the context was spent (chat/budget.py)
    lore: LoreSelection = NO_LORE  # the lorebook entries inserted

    @property
    def dropped(self) -> int:
        return self.first_kept


def build_chat_prompt(request: ChatRequest, counter: TokenCounter, model_template: str | None,
                      context_length: int, reserve: int,
                      renderer: TemplateRenderer | None = None, facts: ModelFacts = NO_FACTS) -> ChatPrompt:
    """Render the request into token ids that leave `reserve` tokens for the reply.
    `renderer` holds the turn's renders done ahead and its time limit (a fresh one
    with the whole limit if none); `facts` pick the template of a model that ships none.

    Raises ContextOverflow when even the newest message cannot fit, and
    ChatTemplateError when the template fails or runs past its limits."""
    budget = context_length - reserve
    renderer = renderer if renderer is not None else TemplateRenderer()
    messages = request.messages
    lore = select_lore(request.lorebooks, messages, counter.count, context_length) if request.lorebooks else NO_LORE
    shape = (_Transcript if request.mode == "chat" else _Templated)(request, counter, model_template, renderer,
                                                                    facts, lore)
    fixed = counter.count(shape.render(len(messages), fixed_only=True))
    window = fit_history(len(messages), shape.cost, budget - fixed, shape.can_start_at)
    start = window.start
    while True:
        text = shape.render(start)
        ids = counter.encode(text)
        # The cached counts are estimates; if the real prompt is longer, drop one more turn.
        if len(ids) <= budget or start >= len(messages) - 1:
            break
        start = _next_turn(start + 1, len(messages), shape.can_start_at)
    too_long = overflow(len(ids), context_length, reserve)
    if too_long is not None:
        raise ContextOverflow(too_long)
    budget = measure_budget(counter.count, context_length=context_length, prompt_tokens=len(ids),
                            system_prompt=request.system_prompt, character=shape.character_text,
                            lore=[(i.label, i.tokens) for i in lore.inserted],
                            kept=[m["content"] for m in messages[start:]],
                            dropped=[m["content"] for m in messages[:start]],
                            shares=[*request.shares, *note_shares(request.authors_note)],
                            reply_reserve=reserve, estimate=counter.estimate, lore_left_out=lore.over_budget,
                            prompt_text=text)
    return ChatPrompt(text, ids, start, request.stop_strings(shape.template), budget=budget, lore=lore)


def prerender_chat_prompt(request: ChatRequest, model_template: str | None,
                          renderer: TemplateRenderer, facts: ModelFacts = NO_FACTS) -> None:
    """Render ahead, into `renderer`, what build_chat_prompt asks for when the whole
    history fits: the template's probes, the fixed part and the whole history, in one
    round trip to a render process. Raises nothing: a template's error, or its
    running out of time or memory, is raised by build_chat_prompt at once, on the
    worker, without rendering again."""
    if request.mode == "chat":
        return  # a plain transcript: no template
    # Every triggered lorebook entry: the budget needs the tokenizer, and usually keeps them all.
    shape = _Templated(request, None, model_template, renderer, facts, select_lore(request.lorebooks,
                                                                                   request.messages))
    n = len(request.messages)
    renderer.prepare([*_probe_calls(shape.template.source), shape.call(n, fixed_only=True), shape.call(0)])


def _next_turn(start: int, n: int, can_start_at: Callable[[int], bool]) -> int:
    while start < n - 1 and not can_start_at(start):
        start += 1
    return start


class _Templated:
    """instruct and chat-instruct: messages through the instruction template."""

    def __init__(self, request: ChatRequest, counter: TokenCounter | None, model_template: str | None,
                 renderer: TemplateRenderer, facts: ModelFacts, lore: LoreSelection = NO_LORE):
        self.request = request
        self.counter = counter
        self.renderer = renderer
        self.template = request.template or choose_template(model_template, facts).template
        r = request
        before, after = lore.text("before_char"), lore.text("after_char")
        if r.mode == "instruct":
            self.character_text = ""
            system = "\n\n".join(p for p in (r.system_prompt.strip(), before, after) if p)
        else:
            c = r.character
            persona = c.persona(r.user_name)
            character = [persona]
            examples = c.examples(r.user_name)
            if examples:
                character.append(f"Example dialogue:\n{examples}")
            character.append(f"You are {c.name}. Stay in character and write {c.name}'s next reply "
                             f"to {r.user_name}.")
            self.character_text = "\n\n".join(p for p in character if p)
            # The lorebook goes before or after the character's description (as the entry says).
            parts = [r.system_prompt.strip(), before, persona, after, *character[1:]]
            system = "\n\n".join(p for p in parts if p)
        if r.group is not None:  # a group chat: the speaker, and a line on each other member
            self.character_text = r.group.system_text(r.user_name)
            # The speaker's lorebook entries go around the members' part, as around a character's.
            system = "\n\n".join(p for p in (r.system_prompt.strip(), before, self.character_text, after) if p)
        self.fixed = [{"role": "system", "content": system}] if system else []
        # Without a counter (rendering ahead, off the worker) nothing is measured.
        self.overhead = _role_overheads(self.template.source, counter, renderer) if counter is not None else {}

    def cost(self, i: int) -> int:
        m = self.request.messages[i]
        return self.counter.count(m["content"]) + self.overhead.get(m["role"], DEFAULT_OVERHEAD)

    def can_start_at(self, i: int) -> bool:
        return i == 0 or self.request.messages[i]["role"] == "user"

    def call(self, start: int, fixed_only: bool = False) -> tuple[str, list[Message], bool]:
        """What render() gives the template: (source, messages, add_generation_prompt)."""
        r = self.request
        continuing = (r.continue_last or r.impersonate) and not fixed_only
        # The note's depth counts the history's messages, before a group's are named and merged.
        noted = with_note([] if fixed_only else r.messages[start:], r.authors_note, continuing)
        kept = r.group.template_messages(noted, r.user_name) if r.group is not None else \
            [{"role": m["role"], "content": m["content"]} for m in noted]
        if r.impersonate and kept:  # where the user's open turn is cut (render)
            kept[-1] = {**kept[-1], "content": kept[-1]["content"] + IMPERSONATE_MARK}
        return self.template.source, self.fixed + kept, not continuing

    def render(self, start: int, fixed_only: bool = False) -> str:
        source, convo, add_generation_prompt = self.call(start, fixed_only)
        text = self.renderer.render(source, convo, add_generation_prompt)
        if add_generation_prompt:
            return text
        if self.request.impersonate and IMPERSONATE_MARK in text:
            return text[:text.rfind(IMPERSONATE_MARK)]
        # Continuing: cut after the reply's text, so the model goes on where it
        # stopped rather than after the template's end-of-turn marker.
        last = convo[-1]["content"]
        cut = text.rfind(last.strip()) if last.strip() else -1
        if cut == -1:
            return text
        return text[:cut + len(last.strip())]


_PROBES = [{"role": "system", "content": "x"}, {"role": "user", "content": "x"},
           {"role": "assistant", "content": "x"}]


def _probe_calls(source: str) -> list[tuple[str, list[Message], bool]]:
    """Growing probe conversations: none, then one message of each role more."""
    return [(source, _PROBES[:n], False) for n in range(len(_PROBES) + 1)]


def _role_overheads(source: str, counter: TokenCounter, renderer: TemplateRenderer) -> dict[str, int]:
    """Tokens the template adds around one message of each role, measured once per
    template and model by rendering growing probe conversations."""
    key = ("overhead", source)
    if key in counter.memo:
        return counter.memo[key]
    out = {}
    try:
        counts = [counter.count(renderer.render(*call)) for call in _probe_calls(source)]
        for n, probe in enumerate(_PROBES, 1):
            out[probe["role"]] = max(counts[n] - counts[n - 1] - 1, 0) + 1  # +1: a token of slack
    except RenderCutOff:
        raise  # out of time or memory, or stopped: not a verdict on the probe's shape
    except Exception:  # a strict template refusing a probe shape: use a safe guess
        out = {}
    counter.memo[key] = out
    return out


class _Transcript:
    """chat: a transcript the model continues, "Name: text" per line."""

    template = None

    def __init__(self, request: ChatRequest, counter: TokenCounter, model_template: str | None,
                 renderer: TemplateRenderer, facts: ModelFacts, lore: LoreSelection = NO_LORE):
        self.request = request
        self.counter = counter
        r, c = request, request.character
        persona, examples = c.persona(r.user_name), c.examples(r.user_name)
        self.character_text = "\n\n".join(p for p in (persona, examples) if p)
        parts = [r.system_prompt.strip(), lore.text("before_char"), persona, lore.text("after_char"), examples]
        self.header = "\n\n".join(p for p in parts if p) + "\n\n"
        if r.group is not None:
            self.character_text = r.group.system_text(r.user_name, instruct=False)
            parts = [r.system_prompt.strip(), lore.text("before_char"), self.character_text, lore.text("after_char")]
            self.header = "\n\n".join(p for p in parts if p) + "\n\n"
        self.names = {"user": r.user_name, "assistant": c.name, "system": "System"}
        self.name_cost = {role: counter.count(f"{name}: ") for role, name in self.names.items()}

    def cost(self, i: int) -> int:
        m = self.request.messages[i]
        return self.counter.count(m["content"]) + self.name_cost.get(m["role"], 2) + 1

    def can_start_at(self, i: int) -> bool:
        return i == 0 or self.request.messages[i]["role"] == "user"

    def _line(self, m: Message) -> str:
        name = m.get("name") if m["role"] == "assistant" else None  # who spoke, in a group chat
        return f"{name or self.names.get(m['role'], m['role'])}: {m['content'].strip()}\n"

    def render(self, start: int, fixed_only: bool = False) -> str:
        r = self.request
        me = self.names["assistant"]
        if fixed_only:
            return self.header + f"{me}:"
        msgs = with_note(r.messages[start:], r.authors_note, r.continue_last or r.impersonate)
        if r.impersonate:
            draft = msgs[-1]["content"].strip()
            return self.header + "".join(self._line(m) for m in msgs[:-1]) + f"{r.user_name}:" + \
                (f" {draft}" if draft else "")
        if r.continue_last:
            body = "".join(self._line(m) for m in msgs[:-1])
            return self.header + body + f"{me}: {msgs[-1]['content'].strip()}"
        return self.header + "".join(self._line(m) for m in msgs) + f"{me}:"


__all__ = ["ChatPrompt", "ChatRequest", "ContextOverflow", "MODES", "Message",
           "build_chat_prompt", "chat_prompt", "prerender_chat_prompt"]

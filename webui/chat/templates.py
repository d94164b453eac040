"""Instruction templates: the model's own (from its GGUF metadata or
tokenizer_config.json) and built-ins for the common formats, and how they are
rendered.

Templates are untrusted input (they come inside downloaded model files, and users
paste them). Every render happens in Jinja2's immutable sandbox (sandbox.py), and
every render of a template that is not one of Hearth's built-ins also happens in a
render process (render_pool.py) with a wall-clock limit (RENDER_LIMIT_S) and a memory
limit, so a template that loops for ever or doubles a string until the machine
swaps ends in a one-line ChatTemplateError instead of taking the server with it.

The built-ins stay in this process: each walks the messages once and joins their
text, so its time and memory grow linearly with the conversation, whose size the
faces already cap (the API's max_prompt_chars, the UI's text limit). So does a
pasted template whose text is exactly a built-in's.

What a render process costs a chat turn, measured with SmolLM2's own template on a
loaded 2-core machine: one round trip per turn (the submitting thread renders the
turn's probes, its fixed part and its whole history in one batch; see prompts.py
`prerender_chat_prompt`), 0.33 ms for a short chat and 0.47 ms for a 2000-token one,
where the worker used to spend 0.04 and 0.09 ms rendering in-process: +0.3-0.4 ms
a turn, off the worker.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from webui.chat.render_pool import RENDER_POOL, RenderCutOff, render_call
from webui.chat.sandbox import MAX_OUTPUT_CHARS, MAX_REPEAT_CHARS, ChatTemplateError, render_in_sandbox

Message = dict[str, Any]

# The wall-clock limit on rendering one prompt with a template that is not a
# built-in. A turn of a 2000-token chat with SmolLM2's own template takes 0.5 ms
# in a render process; two seconds is thousands of times that, and short enough
# that a hostile template costs its sender, never anyone else, a short wait.
RENDER_LIMIT_S = 2.0

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Alpaca (Stanford): the system text, or Alpaca's own preamble, then ### blocks.
ALPACA = (
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}"
    "{% else %}{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + '\\n\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)

# Llama 3 / 3.x (Meta). The tokenizer adds <|begin_of_text|> as BOS.
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Mistral [INST] (v0.1-v0.3 instruct). Mistral has no system role: the system text
# opens the first user turn, as llama.cpp's own Mistral formatter does. Unlike the
# official template this one does not refuse a conversation that opens with the
# assistant (a character's greeting).
MISTRAL = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + ns.system + message['content'] + ' [/INST]' }}{% set ns.system = '' %}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + '</s>' }}{% endif %}"
    "{% endfor %}"
)

# Gemma 1-3 (Google). No system role either: folded into the first user turn, as
# Gemma 3's official template does.
GEMMA = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] | trim + '\\n\\n' %}"
    "{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + ns.system + message['content'] | trim + '<end_of_turn>\\n' }}{% set ns.system = '' %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


# Phi-3 / 3.5 (Microsoft), as its published template writes each role.
PHI3 = (
    "{% for message in messages %}{% if message['role'] in ['system', 'user', 'assistant'] %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# A plain transcript for a model that knows no chat format (a base model): the system
# text, then "User:" and "Assistant:" lines, which the model continues. Its stop
# strings keep a base model from writing the user's next line itself.
PLAIN = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class InstructionTemplate:
    name: str
    source: str
    # Text that ends a reply in this format. Models trained on it stop by themselves
    # (an end-of-turn token); a model that was not, would run on into the next turn.
    stop: tuple[str, ...] = ()


MODEL_TEMPLATE = "Model's own"
CUSTOM_TEMPLATE = "Custom"
BUILTIN_TEMPLATES: dict[str, InstructionTemplate] = {t.name: t for t in (
    InstructionTemplate("ChatML", CHATML, ("<|im_end|>", "<|im_start|>")),
    InstructionTemplate("Alpaca", ALPACA, ("### Instruction:",)),
    InstructionTemplate("Llama-3", LLAMA3, ("<|eot_id|>", "<|start_header_id|>")),
    InstructionTemplate("Mistral", MISTRAL, ("</s>", "[INST]")),
    InstructionTemplate("Gemma", GEMMA, ("<end_of_turn>", "<start_of_turn>")),
    InstructionTemplate("Phi-3", PHI3, ("<|end|>", "<|user|>")),
    InstructionTemplate("Plain", PLAIN, ("\nUser:", "\nAssistant:")),
)}


def template_choices() -> list[str]:
    return [MODEL_TEMPLATE, *BUILTIN_TEMPLATES, CUSTOM_TEMPLATE]


def resolve_template(choice: str | None, custom_source: str = "") -> InstructionTemplate | None:
    """The template a chat chose: a built-in by name or the user's own text; None for
    the model's own (template_fallback.py says which that is for the loaded model)."""
    if choice in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[choice]
    if choice == CUSTOM_TEMPLATE:
        if not custom_source.strip():
            raise ChatTemplateError("the custom instruction template is empty")
        return InstructionTemplate(CUSTOM_TEMPLATE, custom_source)
    return None


def own_template(source: str) -> InstructionTemplate:
    """A model's own template. Its stop strings are the built-ins' markers that its text
    writes literally (<|im_end|>, <|eot_id|>, [INST] ...): the model ends a turn with its
    end-of-turn token, and a model that does not must not run on into the next turn."""
    stops = dict.fromkeys(s for t in BUILTIN_TEMPLATES.values() if t.name != "Plain"
                          for s in t.stop if s in source)
    return InstructionTemplate(MODEL_TEMPLATE, source, tuple(stops))


_BUILTIN_SOURCES = frozenset(t.source for t in BUILTIN_TEMPLATES.values())


def is_builtin(source: str) -> bool:
    """Whether this text is one of Hearth's built-in templates (rendered in-process)."""
    return source in _BUILTIN_SOURCES


class TemplateRenderer:
    """The renders of one prompt, bounded together.

    Built-ins render in this process (see the module docstring); any other template in
    a render process, and all the renders of one TemplateRenderer share one budget of
    `limit_s` seconds: a chat turn renders several times while it fits the history,
    and the whole turn, not each render, gets the limit. `stopped` is asked every 50 ms
    while a render runs; when it says yes the render is killed (Stop).

    Renders are remembered, so what `prepare` rendered ahead (off the generation
    worker, in one round trip) is not rendered again when the worker asks for it. A
    template's own error is remembered as its answer; a cut-off (time, memory, Stop)
    ends the budget: every later render of this renderer raises it at once."""

    def __init__(self, limit_s: float = RENDER_LIMIT_S, stopped: Callable[[], bool] | None = None):
        self.limit_s = limit_s
        self.stopped = stopped
        self.spent_s = 0.0  # seconds spent in render processes
        self._memo: dict[Any, str | ChatTemplateError] = {}
        self._cut_off: RenderCutOff | None = None

    def prepare(self, calls: Sequence[tuple[str, Sequence[Message], bool]]) -> None:
        """Render (template, messages, add_generation_prompt) calls ahead, in one round
        trip. Raises nothing: errors wait in the memo for `render` to raise them."""
        todo = []
        for source, messages, add_generation_prompt in calls:
            key = _memo_key(source, messages, add_generation_prompt)
            if key is None or key in self._memo:
                continue
            if is_builtin(source):
                self._memo[key] = _answer(source, messages, add_generation_prompt)
            else:
                todo.append((key, render_call(source, messages, add_generation_prompt)))
        if todo:
            try:
                results = self._in_render_process([call for _, call in todo])
            except RenderCutOff:
                return  # kept in self._cut_off
            self._memo.update((key, result) for (key, _), result in zip(todo, results, strict=True))

    def render(self, source: str, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        key = _memo_key(source, messages, add_generation_prompt)
        result = self._memo.get(key) if key is not None else None
        if result is None:
            if is_builtin(source):
                return render_in_sandbox(source, messages, add_generation_prompt=add_generation_prompt)
            [result] = self._in_render_process([render_call(source, messages, add_generation_prompt)])
            if key is not None:
                self._memo[key] = result
        if isinstance(result, ChatTemplateError):
            raise result.with_traceback(None)
        return result

    def forget(self) -> None:
        """Drop the remembered texts (a prompt's worth each) once the prompt is built."""
        self._memo.clear()

    def _in_render_process(self, calls: list[dict[str, Any]]) -> list[str | ChatTemplateError]:
        if self._cut_off is None and self.spent_s >= self.limit_s:
            self._cut_off = RenderCutOff(f"the chat template took longer than {self.limit_s:g} s to "
                                         "render; it was stopped")
        if self._cut_off is not None:
            raise self._cut_off.with_traceback(None)
        try:
            results, spent = RENDER_POOL.render(calls, self.limit_s - self.spent_s, self.stopped,
                                                limit_s=self.limit_s)
        except RenderCutOff as e:
            self._cut_off = e
            raise
        self.spent_s += spent
        return results


def render_chat_prompt(template: str, messages: Sequence[Message], *,
                       add_generation_prompt: bool = True, bos_token: str = "",
                       eos_token: str = "", **extra: Any) -> str:
    """One render, bounded: a built-in in this process, any other template in a render
    process within RENDER_LIMIT_S and its memory limit."""
    if is_builtin(template):
        return render_in_sandbox(template, messages, add_generation_prompt=add_generation_prompt,
                                 bos_token=bos_token, eos_token=eos_token, **extra)
    [result], _ = RENDER_POOL.render(
        [render_call(template, messages, add_generation_prompt, bos_token, eos_token, **extra)],
        RENDER_LIMIT_S, limit_s=RENDER_LIMIT_S)
    if isinstance(result, ChatTemplateError):
        raise result
    return result


def _memo_key(source: str, messages: Sequence[Message], add_generation_prompt: bool) -> Any:
    try:
        key = (source, bool(add_generation_prompt), tuple(tuple(sorted(m.items())) for m in messages))
        hash(key)
    except TypeError:  # a message holding a list or a dict: not remembered, rendered each time
        return None
    return key


def _answer(source: str, messages: Sequence[Message], add_generation_prompt: bool) -> str | ChatTemplateError:
    """An in-process render's text, or the template's error (kept for `render`)."""
    try:
        return render_in_sandbox(source, messages, add_generation_prompt=add_generation_prompt)
    except ChatTemplateError as e:
        return e


__all__ = ["BUILTIN_TEMPLATES", "CUSTOM_TEMPLATE", "MAX_OUTPUT_CHARS", "MAX_REPEAT_CHARS", "MODEL_TEMPLATE",
           "RENDER_LIMIT_S", "ChatTemplateError", "InstructionTemplate", "RenderCutOff", "TemplateRenderer",
           "is_builtin", "own_template", "render_chat_prompt", "resolve_template", "template_choices"]

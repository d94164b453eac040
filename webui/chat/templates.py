"""Instruction templates: the model's own (from its GGUF metadata or
tokenizer_config.json) and built-ins for the common formats.

Templates are untrusted input (they come inside downloaded model files, and users
paste them), so they are rendered in Jinja2's immutable sandbox: no access to Python
internals, no mutation of the objects we pass in, and a bound on the output size.
Where stock Jinja would quietly render an unsafe attribute as empty text, we stop
with an error, so a hostile template is reported instead of half-working.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Sequence

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from webui.errors import ErrorKind, UserError

# One prompt can hold at most a context's worth of text; a template that produces
# megabytes is broken or hostile.
MAX_OUTPUT_CHARS = 4_000_000
MAX_REPEAT_CHARS = 100_000

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
)}


def template_choices() -> list[str]:
    return [MODEL_TEMPLATE, *BUILTIN_TEMPLATES, CUSTOM_TEMPLATE]


def resolve_template(choice: str | None, model_template: str | None,
                     custom_source: str = "") -> InstructionTemplate:
    """The template a chat uses: a built-in by name, the user's own text, or the
    model's own (ChatML when the model ships none)."""
    if choice in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[choice]
    if choice == CUSTOM_TEMPLATE:
        if not custom_source.strip():
            raise ChatTemplateError("the custom instruction template is empty")
        return InstructionTemplate(CUSTOM_TEMPLATE, custom_source)
    return template_or_fallback(model_template)


def template_or_fallback(model_template: str | None) -> InstructionTemplate:
    """The model's own template; ChatML, with its stop strings, when the model ships
    none (a model not trained on ChatML may run on into the next turn)."""
    if model_template:
        return InstructionTemplate(MODEL_TEMPLATE, model_template)
    return BUILTIN_TEMPLATES["ChatML"]


class ChatTemplateError(UserError, ValueError):
    """A chat template failed to render; one line for the user."""

    kind = ErrorKind.INVALID


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:  # used by Llama 3.1+ templates
    return datetime.now().strftime(fmt)


class _HearthSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str):
        # Stock Jinja returns an Undefined that renders as "", so `{{ x.__class__ }}`
        # would pass silently. A template that reaches for internals is refused.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        # 'x' * 10**9 or 9**9**9 would eat the server's memory or CPU.
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise ChatTemplateError("the chat template raised a number to a huge power; it was stopped")
            return operator.pow(left, right)
        size = max(_repeat_size(left, right), _repeat_size(right, left))
        if size > MAX_REPEAT_CHARS:
            raise ChatTemplateError(f"the chat template tried to build a sequence of {size} items; "
                                    "it was stopped")
        return operator.mul(left, right)


def _repeat_size(seq: Any, n: Any) -> int:
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
        return len(seq) * n
    return 0


@lru_cache(maxsize=32)
def _compile(template: str):
    env = _HearthSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except JinjaTemplateError as e:
        raise ChatTemplateError(f"the chat template has a syntax error: {e}") from None


def render_chat_prompt(template: str, messages: Sequence[dict[str, Any]], *,
                       add_generation_prompt: bool = True, bos_token: str = "",
                       eos_token: str = "", **extra: Any) -> str:
    compiled = _compile(template)
    try:
        parts, size = [], 0
        for piece in compiled.generate(messages=[dict(m) for m in messages],
                                       add_generation_prompt=add_generation_prompt,
                                       bos_token=bos_token, eos_token=eos_token, **extra):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(f"the chat template produced more than {MAX_OUTPUT_CHARS} "
                                        "characters; it was stopped")
            parts.append(piece)
        return "".join(parts)
    except SecurityError as e:
        raise ChatTemplateError(f"the chat template tried to reach Python internals ({e}); "
                                "it was stopped") from None
    except ChatTemplateError:
        raise
    except (JinjaTemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
            OverflowError, RecursionError) as e:
        raise ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None

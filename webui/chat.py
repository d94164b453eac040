"""Turning a conversation into a prompt for the loaded model."""
from __future__ import annotations

from typing import Any, Sequence

from webui.templates import CHATML, render_chat_prompt

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}


def chat_prompt(chat_template: str | None, messages: Sequence[Message],
                system_prompt: str | None = "") -> str:
    """The model's own template (from its GGUF metadata or tokenizer_config.json);
    ChatML when the model ships none."""
    convo = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system_prompt and system_prompt.strip():
        convo.insert(0, {"role": "system", "content": system_prompt})
    return render_chat_prompt(chat_template or CHATML, convo, add_generation_prompt=True)

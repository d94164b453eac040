"""The context budget under a reply: a folded block (Gradio's thought message) whose
title sums it up and whose body lists each part of the prompt in tokens, the history
left out, and the room left for the reply (chat/budget.py measures it; the reply's
message keeps it as `context_budget`)."""
from __future__ import annotations

from typing import Any

from webui.chat.budget import LOREBOOK, ContextBudget

TITLE_PREFIX = "Context"


def budget_block(saved: Any) -> dict[str, Any] | None:
    """The Chatbot message that shows a reply's budget, or None when it has none."""
    budget = ContextBudget.from_dict(saved) if isinstance(saved, dict) else None
    if budget is None:
        return None
    rows = [f"| {p.name} | {p.tokens:,} | {_cell(p.detail)} |" for p in budget.parts]
    if budget.dropped_messages:
        rows.append(f"| History dropped | ~{budget.dropped_tokens:,} | {budget.dropped_messages} "
                    f"message{'s' if budget.dropped_messages != 1 else ''} left out |")
    rows.append(f"| Room left for the reply | {budget.room_left:,} | of {budget.context_length:,} |")
    body = "| Part | Tokens | |\n|---|---:|---|\n" + "\n".join(rows)
    lore = budget.part(LOREBOOK)
    summary = f"{budget.prompt_tokens:,} of {budget.context_length:,} tokens"
    if lore is not None and lore.detail:
        summary += f" · lorebook: {lore.detail}"
    if budget.dropped_messages:
        summary += f" · {budget.dropped_messages} dropped"
    return {"role": "assistant", "content": body,
            "metadata": {"title": f"{TITLE_PREFIX}: {summary}", "status": "done"}}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

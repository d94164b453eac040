"""How a chat turn's context was spent: the parts of the prompt in tokens (system
prompt, character, lorebook, history kept, what the template adds), the history left
out, and the room left for the reply. Built where the history is fitted
(prompts.py `build_chat_prompt`), carried on the job's `prompt.built.budget`, saved
with the reply (`to_dict`), and shown under it by the Chat tab (ui/chat_budget.py).

Other features that put text into the prompt report their share as a `PromptShare`
on the ChatRequest (`shares`): the text as it appears in the prompt, and which part it
sits inside (an attachment inside a message: HISTORY_KEPT; the author's note, a
message of its own: TEMPLATE, the rest). The budget counts it with the model's tokenizer and moves
those tokens out of that part into a line of their own, so the parts still add up.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = "System prompt"
CHARACTER = "Character"
LOREBOOK = "Lorebook"
HISTORY_KEPT = "History kept"
TEMPLATE = "Template"  # role markers and separators the template or transcript adds


@dataclass(frozen=True)
class BudgetPart:
    name: str
    tokens: int
    detail: str = ""  # e.g. "12 messages", the lorebook entries inserted


@dataclass(frozen=True)
class PromptShare:
    """Text of another feature inside the prompt (see the module's docstring)."""
    name: str
    text: str
    within: str = HISTORY_KEPT


@dataclass(frozen=True)
class ContextBudget:
    context_length: int
    prompt_tokens: int
    parts: tuple[BudgetPart, ...]  # what the prompt is made of; they add up to prompt_tokens
    dropped_messages: int = 0
    dropped_tokens: int = 0  # estimated from the cached counts
    reply_reserve: int = 0  # the room fitting kept free for the reply (max_new_tokens, capped)

    @property
    def room_left(self) -> int:
        return max(self.context_length - self.prompt_tokens, 0)

    def part(self, name: str) -> BudgetPart | None:
        return next((p for p in self.parts if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "prompt_tokens": self.prompt_tokens,
                "parts": [[p.name, p.tokens, p.detail] for p in self.parts],
                "dropped_messages": self.dropped_messages, "dropped_tokens": self.dropped_tokens,
                "reply_reserve": self.reply_reserve}

    @classmethod
    def from_dict(cls, data: Any) -> ContextBudget | None:
        """A saved budget, or None when it is not one (a damaged file loses only the view)."""
        try:
            parts = tuple(BudgetPart(str(n), int(t), str(d)) for n, t, d in data["parts"])
            return cls(int(data["context_length"]), int(data["prompt_tokens"]), parts,
                       int(data.get("dropped_messages", 0)), int(data.get("dropped_tokens", 0)),
                       int(data.get("reply_reserve", 0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def measure_budget(count: Callable[[str], int], *, context_length: int, prompt_tokens: int,
                   system_prompt: str, character: str, lore: Sequence[tuple[str, int]],
                   kept: Sequence[str], dropped: Sequence[str], shares: Sequence[PromptShare] = (),
                   reply_reserve: int = 0, estimate: Callable[[str], int] | None = None,
                   lore_left_out: Sequence[str] = (), prompt_text: str | None = None) -> ContextBudget:
    """The budget of a built prompt. `lore` is (label, tokens) per inserted entry; `kept`
    and `dropped` are the history's message texts; `count` the model's (cached) counter,
    `estimate` a count that does not tokenize (TokenCounter.estimate), for the dropped
    messages: a long chat's old turns are never tokenized just to be shown. With
    `prompt_text`, a share whose text is not in the prompt is left out."""
    estimate = estimate or count
    amounts = {SYSTEM_PROMPT: count(system_prompt.strip()) if system_prompt.strip() else 0,
               CHARACTER: count(character) if character.strip() else 0,
               LOREBOOK: sum(t for _, t in lore),  # shown when any entry was triggered
               HISTORY_KEPT: sum(count(t) for t in kept)}
    lore_detail = ", ".join(label for label, _ in lore)
    if lore_left_out:
        lore_detail += f" (over the budget: {', '.join(lore_left_out)})"
    details = {LOREBOOK: lore_detail.strip(),
               HISTORY_KEPT: f"{len(kept)} message{'s' if len(kept) != 1 else ''}"}
    extra: list[BudgetPart] = []
    for share in shares:
        if prompt_text is not None and share.text not in prompt_text:
            continue  # not in this prompt (inside a message dropped to fit, say)
        tokens = count(share.text)
        if share.within in amounts:
            tokens = min(tokens, amounts[share.within])
            amounts[share.within] -= tokens
        # Within TEMPLATE (a message of its own: the author's note) it comes out of the rest below.
        same = next((i for i, p in enumerate(extra) if p.name == share.name), None)
        if same is None:
            extra.append(BudgetPart(share.name, tokens))
        else:  # several of a kind (each message's attachments): one line
            extra[same] = BudgetPart(share.name, extra[same].tokens + tokens)
    parts = [BudgetPart(name, tokens, details.get(name, "")) for name, tokens in amounts.items()
             if tokens or name == HISTORY_KEPT or (name == LOREBOOK and lore_left_out)]
    parts += extra
    # The rest is the template's markers (and tokens merging across borders, either way).
    parts.append(BudgetPart(TEMPLATE, max(prompt_tokens - sum(p.tokens for p in parts), 0)))
    return ContextBudget(context_length, prompt_tokens, tuple(parts), len(dropped),
                         sum(estimate(t) for t in dropped), reply_reserve)


def keep_budget(message: dict[str, Any], job: Any) -> None:
    """Save a finished turn's budget with its reply (job.prompt.built, chat/turns.py)."""
    budget = getattr(getattr(getattr(job, "prompt", None), "built", None), "budget", None)
    if isinstance(budget, ContextBudget):
        message["context_budget"] = budget.to_dict()


def saved_budget(value: Any) -> dict[str, Any] | None:
    """A message's saved budget as this version reads it; None for anything else."""
    budget = ContextBudget.from_dict(value) if isinstance(value, dict) else None
    return budget.to_dict() if budget is not None else None

"""The folded context view under a reply: its title sums the budget up and names the
lorebook entries; its table lists every part, the history dropped and the room left;
a damaged saved budget shows nothing."""
from __future__ import annotations

from webui.chat.budget import BudgetPart, ContextBudget
from webui.ui.chat_budget import budget_block

BUDGET = ContextBudget(2048, 900, (BudgetPart("System prompt", 20), BudgetPart("Character", 300),
                                   BudgetPart("Lorebook", 80, "Dragons, Castle | Keep"),
                                   BudgetPart("History kept", 450, "12 messages"), BudgetPart("Template", 50)),
                       dropped_messages=7, dropped_tokens=610, reply_reserve=512)


def test_the_view_sums_up_and_lists_every_part():
    block = budget_block(BUDGET.to_dict())
    title = block["metadata"]["title"]
    assert title == "Context: 900 of 2,048 tokens · lorebook: Dragons, Castle | Keep · 7 dropped"
    assert block["metadata"]["status"] == "done"  # folded
    table = block["content"]
    for row in ("| Character | 300 |", "| History kept | 450 | 12 messages |", "| Lorebook | 80 | Dragons, Castle \\| Keep |",
                "| History dropped | ~610 | 7 messages left out |", "| Room left for the reply | 1,148 | of 2,048 |"):
        assert row in table


def test_no_view_without_a_budget():
    assert budget_block(None) is None
    assert budget_block({"parts": [["x"]]}) is None

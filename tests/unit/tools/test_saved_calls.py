"""A reply's tool calls are saved with the chat and come back when it is opened; a
hand-edited record that is not a call is left out, and the chat still opens."""
from __future__ import annotations

import json

from webui.chat.histories import HistoryStore

CALL = {"name": "calculator", "arguments": {"expression": "1+1"}, "status": "done", "result": "2",
        "seconds": 0.01, "safe": True}


def test_tool_calls_are_saved_and_opened_again(tmp_path):
    store = HistoryStore(tmp_path)
    history = store.new("Assistant")
    history.messages += [{"role": "user", "content": "1+1?"},
                         {"role": "assistant", "content": "2", "tool_events": [CALL]}]
    store.save(history)
    assert store.load("Assistant", history.id).messages[-1]["tool_events"] == [CALL]


def test_a_malformed_call_is_left_out(tmp_path):
    store = HistoryStore(tmp_path)
    history = store.new("Assistant")
    history.messages += [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    store.save(history)
    path = next(tmp_path.rglob("*.json"))
    data = json.loads(path.read_text())
    data["messages"][-1]["tool_events"] = [{"name": "x", "arguments": "not an object"}, 7, CALL]
    path.write_text(json.dumps(data))
    assert store.load("Assistant", history.id).messages[-1]["tool_events"] == [CALL]

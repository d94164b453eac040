"""Tool-call parsers on recorded outputs of each format (well-formed and broken), the
tools' checks, and the grammars built from schemas (parsed by llama.cpp's own parser)."""
from __future__ import annotations

import json

import pytest

from webui.chat.structured import (
    SchemaError,
    require_grammar,
    response_format_grammar,
    schema_grammar,
    tool_call_grammar,
)
from webui.chat.templates import CHATML
from webui.chat.tool_calls import ToolCallError, format_of_template, held_back, parse_tool_calls
from webui.chat.tools import check_tool_request, plan_tools, tool_messages
from webui.errors import UserError

# Recorded replies: Qwen2.5-7B-Instruct, Hermes-2-Pro-Llama-3-8B, Llama-3.1-8B-Instruct,
# Llama-3.2-3B-Instruct, Mistral-7B-Instruct-v0.3, Mistral-Small-3.2 and small models in JSON.
RECORDED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>',
     "", [("get_weather", {"city": "Paris", "days": 2})]),
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n'
     '{"name": "b", "arguments": {"x": [1, 2]}}\n</tool_call>', "Let me check.", [("a", {}), ("b", {"x": [1, 2]})]),
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {"q": "x"}}', "", [("a", {"q": "x"})]),  # cut before </tool_call>
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>', "",
     [("get_weather", {"city": "Paris"})]),
    ("llama3", '{"name": "a", "parameters": {"n": 1}}; {"name": "b", "parameters": {"s": "x;y"}}', "",
     [("a", {"n": 1}), ("b", {"s": "x;y"})]),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}]', "",
     [("get_weather", {"city": "Paris"})]),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"zone": "UTC"}', "",
     [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "UTC"})]),
    ("generic", '```json\n{"name": "a", "arguments": {"k": true}}\n```', "", [("a", {"k": True})]),
    ("generic", '{"tool_calls": [{"function": {"name": "a", "arguments": "{\\"k\\": 1}"}}]}', "", [("a", {"k": 1})]),
    ("hermes", '{"name": "a", "arguments": {"k": 2}}', "", [("a", {"k": 2})]),  # a small model drifting to bare JSON
    ("generic", "Paris is sunny today.", "Paris is sunny today.", []),
    ("generic", '{"answer": 42}', '{"answer": 42}', []),  # JSON that is not a call stays text
    ("hermes", "{not json at all", "{not json at all", []),
]


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), RECORDED)
def test_recorded_outputs_parse(fmt, text, content, calls):
    got_content, got = parse_tool_calls(text, fmt)
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in got] == calls


@pytest.mark.parametrize(("fmt", "text", "words"), [
    ("hermes", '<tool_call>\n{"name": "a", "arguments": {"k": }\n</tool_call>', "not valid JSON"),
    ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>', "without a function name"),
    ("llama3", '<|python_tag|>{"name": "a", "parameters": [1]}', "not a JSON object"),
    ("mistral", "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {", "not valid JSON"),
    ("mistral", '[TOOL_CALLS]a[ARGS]{"k": "unterminated}', "not valid JSON"),
    ("generic", '{"name": "a", "arguments": "{broken"}', "not JSON"),
])
def test_malformed_calls_are_one_line_errors(fmt, text, words):
    with pytest.raises(ToolCallError) as e:
        parse_tool_calls(text, fmt)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_format_is_chosen_from_the_template():
    assert format_of_template("{% for t in tools %}...<tool_call>...{% endfor %}") == "hermes"
    assert format_of_template("{{- '<|python_tag|>' }} ipython") == "llama3"
    assert format_of_template("[AVAILABLE_TOOLS] [TOOL_CALLS]") == "mistral"
    assert format_of_template(CHATML) == "generic"


def test_streaming_holds_back_from_a_marker():
    assert held_back("Sure. <tool_", "hermes") == len("Sure. ")
    assert held_back("Sure. <tool_call>{", "hermes") == len("Sure. ")
    assert held_back("Plain text.", "hermes") == len("Plain text.")
    assert held_back('  {"name"', "generic") == 0


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather?"}]


@pytest.mark.parametrize(("tools", "choice", "messages", "words"), [
    ([{"type": "function", "function": {"name": "has space"}}], None, ASK, "function.name"),
    ([WEATHER, WEATHER], None, ASK, "given twice"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "x"}}}],
     None, ASK, "not valid JSON Schema"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], None, ASK,
     "must describe an object"),
    ([WEATHER], {"type": "function", "function": {"name": "other"}}, ASK, "not among the tools"),
    ([WEATHER], "sometimes", ASK, "tool_choice must be"),
    ([], "required", ASK, "needs at least one tool"),
    ([WEATHER], None, [*ASK, {"role": "tool", "tool_call_id": "nope", "content": "x"}], "tool_call_id 'nope'"),
])
def test_bad_tool_requests_are_one_line(tools, choice, messages, words):
    with pytest.raises(UserError) as e:
        check_tool_request(tools, choice, None, messages)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_no_tools_means_no_tool_request():
    assert check_tool_request(None, None, None, ASK) is None


def test_a_forced_call_grammar_parses_in_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    plan = plan_tools(check_tool_request([WEATHER], "required", None, ASK), CHATML)
    assert plan.fmt == "hermes" and plan.grammar.count("root ::=") == 1
    assert 'root ::= "<tool_call>\\n" call "\\n</tool_call>"' in plan.grammar
    for grammar in (plan.grammar, response_format_grammar({"type": "json_object"}),
                    schema_grammar({"type": "object", "properties": {"n": {"type": "integer"}}})):
        assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)


def test_unconvertible_schema_is_one_line():
    with pytest.raises(SchemaError) as e:
        tool_call_grammar([{"name": "f", "parameters": {"$ref": "https://example.com/x.json"}}], "arguments", "", "")
    assert "cannot be turned into a grammar" in str(e.value)
    with pytest.raises(SchemaError, match="type 'xml' is not one of"):
        response_format_grammar({"type": "xml"})


def test_arguments_that_break_the_schema_fail_the_reply():
    plan = plan_tools(check_tool_request([WEATHER], "auto", None, ASK), CHATML)
    assert plan.parse('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')[1]
    with pytest.raises(UserError, match="do not match the schema"):
        plan.parse('<tool_call>\n{"name": "get_weather", "arguments": {"town": "Oslo"}}\n</tool_call>')
    with pytest.raises(UserError, match="not among the tools"):
        plan.parse('<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>')


def test_templates_without_tools_get_a_hermes_rewrite():
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    messages = [*ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "rain"}]
    request = check_tool_request([WEATHER], None, None, messages)
    out, extra = tool_messages(messages, request, CHATML)
    assert extra == {} and out[0]["role"] == "system" and "<tools>" in out[0]["content"]
    assert out[2] == {"role": "assistant",
                      "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'}
    assert out[3] == {"role": "user", "content": "<tool_response>\nrain\n</tool_response>"}
    own = "{% for t in tools %}{{ t }}{% endfor %}<tool_call>"
    out, extra = tool_messages(messages, request, own)
    assert extra["tools"] == [WEATHER] and out[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}


def test_backends_without_grammars_refuse_in_one_line():
    require_grammar(("temperature", "grammar"), "tool_choice")
    with pytest.raises(UserError, match="response_format needs a grammar, which this model's backend does not apply"):
        require_grammar(("temperature", "top_p"), "response_format")

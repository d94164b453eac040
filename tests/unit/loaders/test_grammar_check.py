"""The GBNF pre-check that runs before a grammar reaches llama.cpp: nesting, rules,
repetitions and length are bounded in one line; what is quoted, in a character
class or in a comment does not count; real grammars pass."""
from __future__ import annotations

import time

import pytest

from loaders.fields import SettingError, describe
from loaders.grammar_check import MAX_GRAMMAR_CHARS, MAX_NESTING, MAX_REPEAT, MAX_RULES, check_grammar
from loaders.params import GenerationParams

# llama.cpp's grammars/json.gbnf
JSON_GRAMMAR = r'''
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
'''


def nested(depth: int) -> str:
    return "root ::= " + "(" * depth + '"a"' + ")" * depth


def refusal(grammar: str) -> str:
    with pytest.raises(SettingError) as caught:
        GenerationParams(grammar=grammar)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200, message
    return message


def test_the_attack_grammar_is_refused_at_once():
    attack = "root ::= " + "(" * 20000 + '"a"' + ")" * 20000
    start = time.perf_counter()
    assert f"more than {MAX_NESTING} deep" in refusal(attack)
    assert time.perf_counter() - start < 0.5


def test_nesting_up_to_the_bound_passes():
    GenerationParams(grammar=nested(MAX_NESTING))
    assert "nests groups" in refusal(nested(MAX_NESTING + 1))


@pytest.mark.parametrize("grammar", [
    'root ::= "' + "(" * 500 + '"',  # inside a string
    'root ::= "\\"' + "(" * 500 + '"',  # after an escaped quote, still inside the string
    "root ::= [" + "(" * 500 + '] "a"',  # inside a character class
    "root ::= [\\]" + "(" * 500 + '] "a"',  # after an escaped bracket, still inside the class
    "# " + "(" * 500 + '\nroot ::= "a"',  # in a comment
])
def test_what_is_quoted_classed_or_commented_does_not_nest(grammar):
    check_grammar(grammar)


def test_repetitions_are_bounded_by_count_and_by_what_they_expand_to():
    check_grammar(f'root ::= "a"{{{MAX_REPEAT}}}')
    check_grammar(f'root ::= [0-9]{{1,{MAX_REPEAT}}}')
    assert "repeats an item 2,001 times" in refusal(f'root ::= "a"{{{MAX_REPEAT + 1}}}')
    assert "repeats an item" in refusal(f'root ::= "a"{{0,{MAX_REPEAT + 1}}}')
    # 30,000 characters copied 2,000 times: 60M symbols, 1.1 GB inside llama.cpp.
    assert "expands to more than" in refusal('root ::= "' + "a" * 30_000 + '"{2000}')
    # A group is one reference to its own rule, however long its content.
    check_grammar('root ::= ("' + "a" * 30_000 + '"){2000}')


def test_rules_are_counted():
    few = "".join(f"r{i} ::= \"a\"\n" for i in range(100))
    check_grammar("root ::= r0\n" + few)
    many = "".join(f"r{i} ::= r{i + 1}\n" for i in range(MAX_RULES + 1))
    assert f"more than {MAX_RULES:,} rules" in refusal(many)


def test_real_grammars_pass():
    check_grammar(JSON_GRAMMAR)
    GenerationParams(grammar='root ::= "yes" | "no"')
    GenerationParams(grammar="")


def test_the_length_bound_is_declared_and_checked():
    spec = next(s for s in describe(GenerationParams) if s.name == "grammar")
    assert spec.max_length == MAX_GRAMMAR_CHARS
    message = refusal('root ::= "a"' + " " * MAX_GRAMMAR_CHARS)
    assert f"at most {MAX_GRAMMAR_CHARS:,} characters" in message
    assert "root" not in message  # the text itself is not quoted back


def test_the_api_schema_shows_the_length_bound():
    from webui.api.schemas import CompletionRequest

    schema = CompletionRequest.model_json_schema()["properties"]["grammar"]
    assert MAX_GRAMMAR_CHARS in [alt.get("maxLength") for alt in schema.get("anyOf", [schema])]


def test_a_worst_case_scan_is_fast():
    grammar = "root ::= " + " ".join(f"r{i % 1000}" for i in range(MAX_GRAMMAR_CHARS // 8))
    start = time.perf_counter()
    check_grammar(grammar[:MAX_GRAMMAR_CHARS])
    assert time.perf_counter() - start < 0.2

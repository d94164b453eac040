"""Structured output: JSON Schemas checked and turned into GBNF grammars.

The grammars are what llama.cpp's grammar sampler (GenerationParams.grammar) enforces
token by token, so even a 135M model writes JSON that parses and matches the schema.
The schema-to-GBNF converter is llama-cpp-python's own (`llama_cpp.llama_grammar`,
a port of llama.cpp's json_schema_to_grammar); what it cannot convert is one line here.
Schemas are checked as JSON Schema with `jsonschema` first, and replies are validated
against them with it.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loaders.grammar_check import MAX_GRAMMAR_CHARS
from loaders.params import GenerationParams
from webui.errors import ErrorKind, UserError

# A schema's JSON text beyond this is refused before conversion: each property becomes
# a few grammar rules, and the grammar itself is bounded by MAX_GRAMMAR_CHARS.
MAX_SCHEMA_CHARS = 32 * 1024


class SchemaError(UserError):
    def __init__(self, message: str):
        super().__init__(message, kind=ErrorKind.INVALID)


def check_schema(schema: Any, what: str) -> None:
    """Raise SchemaError (one line) unless `schema` is a JSON Schema object."""
    import jsonschema

    if not isinstance(schema, Mapping):
        raise SchemaError(f"{what} must be a JSON Schema object")
    try:
        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            raise SchemaError(f"{what} is longer than {MAX_SCHEMA_CHARS} characters of JSON")
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the top level"
        raise SchemaError(f"{what} is not valid JSON Schema at {where}: {_first_line(e.message)}") from None
    except RecursionError:
        raise SchemaError(f"{what} nests too deeply") from None


def check_value(value: Any, schema: Mapping, what: str) -> None:
    """Raise a FAILED UserError (one line) unless `value` matches `schema`."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise UserError(f"{what} do not match the schema at {where}: {_first_line(error.message)}",
                        kind=ErrorKind.FAILED)


def response_format_grammar(response_format: Mapping[str, Any] | None) -> str:
    """The grammar for OpenAI's response_format ("" for text or none)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return ""
    if kind == "json_object":
        return json_object_grammar()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise SchemaError("response_format json_schema needs {\"json_schema\": {\"name\": ..., \"schema\": {...}}}")
        check_schema(spec["schema"], "response_format.json_schema.schema")
        return schema_grammar(spec["schema"], "response_format.json_schema.schema")
    raise SchemaError(f"response_format type {kind!r} is not one of text, json_object, json_schema")


def schema_text_grammar(text: str, what: str = "the JSON schema") -> str:
    """The grammar for a schema typed as JSON text (the Parameters tab's JSON mode)."""
    if not text.strip():
        raise SchemaError(f"{what} is empty; write a JSON Schema object, e.g. {{\"type\": \"object\"}}")
    if len(text) > MAX_SCHEMA_CHARS:
        raise SchemaError(f"{what} is longer than {MAX_SCHEMA_CHARS} characters")
    try:
        schema = json.loads(text)
    except ValueError as e:
        raise SchemaError(f"{what} is not valid JSON: {_first_line(str(e))}") from None
    except RecursionError:
        raise SchemaError(f"{what} nests too deeply") from None
    check_schema(schema, what)
    return schema_grammar(schema, what)


def with_response_format(params: GenerationParams, response_format: Mapping[str, Any] | None,
                         model) -> GenerationParams:
    """`params` constrained by OpenAI's response_format (unchanged for text or none), for a
    completion, which has no template or tools to weigh against it: handed on as it came
    to an engine that takes it (passed_through), else as Hearth's grammar."""
    grammar = response_format_grammar(response_format)
    if not grammar:
        return params
    if params.grammar:
        raise UserError("give only one of grammar and response_format", kind=ErrorKind.INVALID)
    as_is = passed_through(params, response_format, model)
    if as_is is not None:
        return as_is
    require_grammar(model.supported_params, "response_format")
    return dataclasses.replace(params, grammar=grammar)


def passed_through(params: GenerationParams, response_format: Mapping[str, Any], model) -> GenerationParams | None:
    """`params` carrying response_format as it came, for a model whose engine takes it
    (a remote vLLM or llama.cpp server: its own constraint, its own tokenizer); None for
    a backend that applies Hearth's grammar itself."""
    if not getattr(model, "takes_response_format", False):
        return None
    return dataclasses.replace(params, response_format=json.dumps(response_format))


def require_grammar(supported_params: Sequence[str], why: str) -> None:
    """One line when the loaded backend cannot constrain its output to a grammar."""
    if "grammar" not in supported_params:
        raise UserError(f"{why} needs a grammar, which this model's backend does not apply; load a GGUF "
                        "model (llama.cpp) or a llama.cpp engine", kind=ErrorKind.INVALID)


def _converter():
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={"name": 0, "arguments": 1, "parameters": 1}, allow_fetch=False,
                           dotall=False, raw_pattern=False)


def _convert(converter, schema: Mapping, rule: str, what: str) -> str:
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "input")
        return converter.visit(resolved, rule)
    except Exception as e:  # noqa: BLE001  (the converter's assertions and bugs alike: this schema's fault, one line)
        raise SchemaError(f"{what} cannot be turned into a grammar: {_first_line(str(e)) or type(e).__name__}") from None


def _finish(converter, extra_rules: str, what: str) -> str:
    grammar = converter.format_grammar() + extra_rules
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise SchemaError(f"{what} makes a grammar longer than {MAX_GRAMMAR_CHARS} characters")
    return grammar


def schema_grammar(schema: Mapping, what: str = "the json_schema") -> str:
    """GBNF for a JSON value that matches `schema` (already checked)."""
    converter = _converter()
    _convert(converter, schema, "", what)
    return _finish(converter, "", what)


def json_object_grammar() -> str:
    """GBNF for any JSON object (response_format json_object)."""
    return schema_grammar({"type": "object"}, "json_object")


def tool_call_grammar(tools: Sequence[Mapping], args_key: str, prefix: str, suffix: str) -> str:
    """GBNF for exactly one call of one of `tools` (each {"name", "parameters"}), as
    `prefix {"name": ..., args_key: {...}} suffix`."""
    converter, rule = _calls_converter(tools, args_key)
    root = f"\nroot ::= {_literal(prefix)} {rule} {_literal(suffix)}\n" if (prefix or suffix) else f"\nroot ::= {rule}\n"
    return _finish(converter, root, "the tools' schemas")


@dataclass(frozen=True)
class CallShape:
    """How a chat template writes tool calls: `marker` opens them in a reply ("" for
    none), then `opening`, the calls (objects with "name" and `args_key`) separated by
    `separator`, then `closing`. `bare`: a reply whose first text is "{" is a call
    without the marker (Llama 3's own form; a generic JSON call)."""
    args_key: str
    marker: str = ""
    opening: str = ""
    separator: str = ""
    closing: str = ""
    bare: bool = False


def text_or_call_grammar(tools: Sequence[Mapping], shape: CallShape, parallel: bool) -> str:
    """GBNF for tool_choice "auto": free text, in which the shape's marker cannot occur
    except to open calls of `tools` whose arguments match their schemas (one call, or
    several when `parallel`), after which the reply ends.

    Free text is a chain of states over how much of the marker was last seen (the
    Knuth-Morris-Pratt automaton of the marker), so every character is one step on
    a few grammar stacks and a reply that never starts a call pays little for it."""
    converter, call = _calls_converter(tools, shape.args_key)
    calls = f"{call} ( {_literal(shape.separator)} {call} )*" if parallel and shape.separator else call
    rules = {"tool-calls": calls}
    if shape.marker:
        after = " ".join(filter(None, [_literal(shape.opening), "tool-calls", _literal(shape.closing)]))
        rules.update(_free_text_rules(shape.marker, after))
        free = "free-text-0"
    else:
        rules["free-text-any"] = ". *"
        free = "free-text-any"
    if shape.bare:
        # Leading whitespace, then a call (the reply's first text is "{") or text that starts otherwise.
        first = _free_text_alternatives(shape.marker, 0, after, exclude="{ \t\n") if shape.marker \
            else ["[^{ \\t\\n] free-text-any"]
        rules["root"] = f"[ \\t\\n]* ( tool-calls | {' | '.join(first)} )?"
    else:
        rules["root"] = free
    extra = "".join(f"\n{name} ::= {body}" for name, body in rules.items()) + "\n"
    return _finish(converter, extra, "the tools' schemas")


def _free_text_rules(marker: str, on_marker: str) -> dict[str, str]:
    """Rules free-text-0 .. free-text-(n-1): text in which `marker` does not occur and
    which may end anywhere; free-text-i has just seen the marker's first i characters.
    Where the marker completes, `on_marker` follows instead."""
    return {f"free-text-{i}": f"( {' | '.join(_free_text_alternatives(marker, i, on_marker))} )?"
            for i in range(len(marker))}


def _free_text_alternatives(marker: str, state: int, on_marker: str, exclude: str = "") -> list[str]:
    alternatives, taken = [], set(exclude)
    for char in dict.fromkeys(marker):
        if char in taken:
            continue
        seen = _marker_prefix_after(marker, state, char)
        if seen == len(marker):
            alternatives.append(f"{_literal(char)} {on_marker}")
        elif seen > 0:
            alternatives.append(f"{_literal(char)} free-text-{seen}")
        else:
            continue
        taken.add(char)
    alternatives.append(f"[^{''.join(_class_char(c) for c in sorted(taken))}] free-text-0")
    return alternatives


def _marker_prefix_after(marker: str, state: int, char: str) -> int:
    """How much of `marker` the text ends with after its first `state` characters and `char`."""
    text = marker[:state] + char
    return next((k for k in range(min(len(text), len(marker)), 0, -1) if text.endswith(marker[:k])), 0)


def _class_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02X}" if code < 0x80 else f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"


def _calls_converter(tools: Sequence[Mapping], args_key: str) -> tuple[Any, str]:
    """A converter holding the rules of one call of one of `tools`, and that rule's name."""
    calls = [{"type": "object", "properties": {"name": {"const": t["name"]}, args_key: t["parameters"]},
              "required": ["name", args_key]} for t in tools]
    converter = _converter()
    return converter, _convert(converter, calls[0] if len(calls) == 1 else {"anyOf": calls}, "call",
                               "the tools' schemas")


def _literal(text: str) -> str:
    return json.dumps(text) if text else ""


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]

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
                         supported_params: Sequence[str]) -> GenerationParams:
    """`params` constrained by OpenAI's response_format (unchanged for text or none), for a
    completion, which has no template or tools to weigh against it."""
    grammar = response_format_grammar(response_format)
    if not grammar:
        return params
    if params.grammar:
        raise UserError("give only one of grammar and response_format", kind=ErrorKind.INVALID)
    require_grammar(supported_params, "response_format")
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
    calls = [{"type": "object", "properties": {"name": {"const": t["name"]}, args_key: t["parameters"]},
              "required": ["name", args_key]} for t in tools]
    converter = _converter()
    rule = _convert(converter, calls[0] if len(calls) == 1 else {"anyOf": calls}, "call", "the tools' schemas")
    root = f"\nroot ::= {_literal(prefix)} {rule} {_literal(suffix)}\n" if (prefix or suffix) else f"\nroot ::= {rule}\n"
    return _finish(converter, root, "the tools' schemas")


def _literal(text: str) -> str:
    return json.dumps(text) if text else ""


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]

"""Tools written as Python files: one public function per file, its JSON Schema read
from its signature, type hints and docstring (the summary, and an `Args:` section for
each parameter's description). A module-level `SAFE = True` marks a tool that may run
without the user's approval.

Each file is imported on its own, under a private module name; a file that fails to
import, defines no function or more than one, or has a parameter whose type has no
JSON Schema, is one line in the list of notices, and the others still load.
"""
from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.errors import ErrorKind, UserError
from webui.tools.calls import one_line

_JSON_TYPES: dict[Any, dict] = {str: {"type": "string"}, int: {"type": "integer"},
                                 float: {"type": "number"}, bool: {"type": "boolean"},
                                 dict: {"type": "object"}, list: {"type": "array"}}
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SECTIONS = ("args", "arguments", "parameters", "returns", "raises", "example", "examples", "note", "notes")


class ToolFileError(UserError):
    """A tool file that cannot be offered (one line)."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class PythonTool:
    name: str
    description: str
    parameters: dict
    safe: bool
    function: Callable[..., Any]
    path: Path


def _type_schema(hint: Any, where: str) -> dict:
    if hint in _JSON_TYPES:
        return dict(_JSON_TYPES[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        item = [a for a in args if a is not Ellipsis]
        return {"type": "array", **({"items": _type_schema(item[0], where)} if len(item) == 1 else {})}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return _type_schema(kinds[0], where)
        return {"anyOf": [_type_schema(k, where) for k in kinds]}
    raise ToolFileError(f"{where} has a type with no JSON Schema: {hint!r}")


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google-style docstring."""
    summary: list[str] = []
    params: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    indent: int | None = None  # of the Args section's parameter lines
    for line in inspect.cleandoc(doc or "").splitlines():
        stripped = line.strip()
        head = stripped.rstrip(":").lower()
        if stripped.endswith(":") and head in _SECTIONS:
            section = "args" if head in ("args", "arguments", "parameters") else "other"
            continue
        if section == "summary":
            if stripped or summary:
                summary.append(stripped)
        elif section == "args" and stripped:
            depth = len(line) - len(line.lstrip())
            m = _ARG_LINE.match(stripped)
            if m and (indent is None or depth <= indent):
                indent = depth
                current = m.group(1).lstrip("*")
                params[current] = m.group(2).strip()
            elif current:
                params[current] = (params[current] + " " + stripped).strip()
    return " ".join(" ".join(summary).split()), params


def schema_of(function: Callable[..., Any]) -> tuple[str, dict]:
    """(description, parameters schema) of a function."""
    name = function.__name__
    try:
        hints = typing.get_type_hints(function)
    except Exception as e:  # a hint naming something undefined
        raise ToolFileError(f"{name}'s type hints cannot be read: {one_line(str(e))}") from None
    summary, docs = _docstring_parts(function.__doc__ or "")
    properties: dict[str, dict] = {}
    required: list[str] = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolFileError(f"{name} takes *args or **kwargs: a tool's parameters must be named")
        if param.name not in hints:
            raise ToolFileError(f"{name}'s parameter {param.name!r} has no type hint")
        prop = _type_schema(hints[param.name], f"{name}'s parameter {param.name!r}")
        if param.name in docs:
            prop["description"] = docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif isinstance(param.default, (str, int, float, bool)) or param.default is None:
            prop["default"] = param.default
        properties[param.name] = prop
    schema = {"type": "object", "properties": properties, "required": required}
    return summary or name, schema


def _tool_function(module: types.ModuleType, path: Path) -> Callable[..., Any]:
    functions = [v for k, v in vars(module).items()
                 if inspect.isfunction(v) and not k.startswith("_") and v.__module__ == module.__name__]
    named = [f for f in functions if f.__name__ == path.stem]
    if named:
        return named[0]
    if len(functions) != 1:
        raise ToolFileError(f"{path.name} must define one public function (or one named {path.stem}); "
                            f"it defines {len(functions)}")
    return functions[0]


def load_tool_file(path: Path) -> PythonTool:
    """Import one tool file on its own; ToolFileError (one line) for anything wrong."""
    module_name = f"hearth_tool_{abs(hash(str(path.resolve())))}_{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ToolFileError(f"{path.name} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and get_type_hints look it up here
        spec.loader.exec_module(module)
    except ToolFileError:
        raise
    except BaseException as e:  # noqa: BLE001 - SyntaxError, SystemExit, anything a file raises
        sys.modules.pop(module_name, None)
        raise ToolFileError(f"{path.name} failed to import: {type(e).__name__}: {one_line(str(e))}") from None
    function = _tool_function(module, path)
    description, parameters = schema_of(function)
    return PythonTool(function.__name__, description, parameters, getattr(module, "SAFE", False) is True,
                      function, path)


def load_tool_folder(folder: Path) -> tuple[list[PythonTool], list[str]]:
    """Every *.py file in a folder (sorted): the tools, and one notice per file that failed."""
    tools: list[PythonTool] = []
    notices: list[str] = []
    if not folder.is_dir():
        return tools, notices
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tools.append(load_tool_file(path))
        except ToolFileError as e:
            notices.append(str(e) if str(e).startswith(path.name) else f"{path.name}: {e}")
    return tools, notices

"""Every tool by name: the shipped Python tools, the user's (a user file wins over a
shipped one of the same name), and the tools of the MCP servers in mcp.json. Loading
never raises: each file or server that fails is one notice, and the rest load.

Switched-on extensions may offer tools too (their `tools` hook, e.g. the documents
extension's search): asked each time the tools are listed, so they come and go with
their extension. A chat switches tools on by name (`request`): only those reach the model.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.chat.tools import ToolRequest, check_tool_request
from webui.errors import ErrorKind, UserError
from webui.tools.calls import ToolFailure, clip, run_with_limit
from webui.tools.mcp_client import McpTool, call_server_tool, list_server_tools, read_mcp_config
from webui.tools.python_tools import PythonTool, ToolFileError, load_tool_folder, schema_of

DEFAULT_CALL_TIMEOUT = 30.0  # seconds; a tool may ask for less, never more


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict
    safe: bool  # runs without asking the user
    source: str  # "shipped", "user" or "mcp:SERVER"
    invoke: Callable[[dict, float], str]  # (arguments, time limit) -> result text; raises ToolFailure

    def openai(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def _python_invoke(tool: PythonTool) -> Callable[[dict, float], str]:
    def invoke(arguments: dict, timeout: float) -> str:
        value = run_with_limit(tool.name, lambda: tool.function(**arguments), timeout)
        return clip(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return invoke


def _function_invoke(name: str, function: Callable[..., Any]) -> Callable[[dict, float], str]:
    def invoke(arguments: dict, timeout: float) -> str:
        value = run_with_limit(name, lambda: function(**arguments), timeout)
        return clip(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return invoke


def _mcp_invoke(tool: McpTool) -> Callable[[dict, float], str]:
    return lambda arguments, timeout: call_server_tool(tool, arguments, timeout)


class ToolRegistry:
    def __init__(self, python_folders: Sequence[tuple[Path, str]], mcp_config: Path | None = None,
                 extension_tools: Callable[[], list[tuple[str, Callable[..., Any]]]] | None = None):
        """python_folders: (folder, source) pairs, later ones winning; mcp_config: mcp.json;
        extension_tools: the switched-on extensions' (extension, function) pairs."""
        self.python_folders = list(python_folders)
        self.mcp_config = mcp_config
        self.extension_tools = extension_tools
        self.tools: dict[str, Tool] = {}
        self.notices: list[str] = []
        self.loaded = False
        self._lock = threading.Lock()

    def reload(self) -> list[str]:
        """Load every tool again; returns the notices (one line each)."""
        tools: dict[str, Tool] = {}
        notices: list[str] = []
        for folder, source in self.python_folders:
            found, problems = load_tool_folder(folder)
            notices += problems
            for t in found:
                tools[t.name] = Tool(t.name, t.description, t.parameters, t.safe, source, _python_invoke(t))
        if self.mcp_config is not None:
            servers, problems = read_mcp_config(self.mcp_config)
            notices += problems
            for server in servers:
                try:
                    listed = list_server_tools(server)
                except ToolFailure as e:
                    notices.append(str(e))
                    continue
                for t in listed:
                    if t.name in tools:
                        notices.append(f"MCP server {server.name!r}: {t.name} is named like another tool; left out")
                        continue
                    tools[t.name] = Tool(t.name, t.description, t.parameters, t.safe, f"mcp:{server.name}",
                                         _mcp_invoke(t))
        with self._lock:
            self.tools, self.notices, self.loaded = tools, notices, True
        return notices

    def ensure_loaded(self) -> None:
        if not self.loaded:
            self.reload()

    def _all(self) -> dict[str, Tool]:
        self.ensure_loaded()
        tools = dict(self.tools)
        for extension, function in self.extension_tools() if self.extension_tools else ():
            try:
                description, parameters = schema_of(function)
            except ToolFileError as e:
                if f"extension {extension}: {e}" not in self.notices:
                    self.notices = [*self.notices, f"extension {extension}: {e}"]
                continue
            tools.setdefault(function.__name__, Tool(function.__name__, description, parameters,
                                                     getattr(function, "safe", False) is True,
                                                     f"extension:{extension}",
                                                     _function_invoke(function.__name__, function)))
        return tools

    def names(self) -> list[str]:
        return sorted(self._all())

    def get(self, name: str) -> Tool:
        tool = self._all().get(name)
        if tool is None:
            raise UserError(f"there is no tool {name!r}", kind=ErrorKind.NOT_FOUND)
        return tool

    def request(self, enabled: Sequence[str], choice: Any = "auto") -> ToolRequest | None:
        """The checked ToolRequest for a chat's switched-on tools; None when none is on."""
        tools = [self.get(n).openai() for n in enabled]
        if not tools:
            return None
        if isinstance(choice, str) and choice not in ("none", "auto", "required"):
            choice = {"type": "function", "function": {"name": choice}}  # a tool's name forces that tool
        return check_tool_request(tools, choice, True, [])

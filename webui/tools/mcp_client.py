"""MCP servers as tools, through the official SDK (`mcp`): stdio servers started as
child processes and Streamable HTTP servers at a URL, listed in the user's mcp.json.

Each listing and each call opens its own connection in a fresh event loop and closes
it (a stdio server is started and stopped each time): slower than one long session
(measured on 2 shared cores: ~2 s per call to a small Python stdio server, most of it
its start-up; ~0.4 s per call over Streamable HTTP), but a server that hangs, crashes or
writes garbage can only spoil the one call, and a chat's thread needs no event loop.
Every failure is one line (`ToolFailure`); the whole operation, connection and
clean-up included, is bounded by the call's time limit plus a few seconds.

mcp.json (Claude Desktop's shape, with Hearth's `safe` and `timeout` added):

    {"mcpServers": {
        "files": {"command": "python", "args": ["server.py"], "env": {}, "safe": ["read"]},
        "web":   {"url": "http://127.0.0.1:8000/mcp", "safe": true, "timeout": 20}}}
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.tools.calls import ToolFailure, clip, one_line, run_with_limit

DEFAULT_TIMEOUT = 20.0  # seconds for one call; a listing gets the same
_CLEANUP_GRACE = 5.0  # stopping a stdio server (the SDK waits ~2 s before it kills)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    safe: bool | tuple[str, ...] = False  # True, or the names of the tools that are safe
    timeout: float = DEFAULT_TIMEOUT

    def is_safe(self, tool: str) -> bool:
        return self.safe is True or (isinstance(self.safe, tuple) and tool in self.safe)


@dataclass(frozen=True)
class McpTool:
    server: McpServerConfig
    remote_name: str  # the server's name for it
    name: str  # Hearth's: server__tool, letters digits _ - only (OpenAI's rule)
    description: str
    parameters: dict
    safe: bool


def read_mcp_config(path: Path) -> tuple[list[McpServerConfig], list[str]]:
    """The servers in mcp.json, and one notice per entry (or for the file) that is wrong."""
    if not path.is_file():
        return [], []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        servers = data["mcpServers"]
        if not isinstance(servers, dict):
            raise TypeError("mcpServers is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], [f"{path.name}: cannot be read ({one_line(str(e), 120)}); expected {{\"mcpServers\": {{...}}}}"]
    configs: list[McpServerConfig] = []
    notices: list[str] = []
    for name, entry in servers.items():
        try:
            configs.append(_server_config(name, entry))
        except (TypeError, ValueError) as e:
            notices.append(f"{path.name}: server {name!r}: {one_line(str(e), 160)}")
    return configs, notices


def _server_config(name: str, entry: Any) -> McpServerConfig:
    if not isinstance(entry, dict):
        raise TypeError("must be an object with a command or a url")
    command, url = entry.get("command", ""), entry.get("url", "")
    if bool(command) == bool(url):
        raise ValueError("give exactly one of command (stdio) and url (Streamable HTTP)")
    if url and not re.match(r"^https?://", str(url)):
        raise ValueError("url must start with http:// or https://")
    args = entry.get("args", [])
    env = entry.get("env", {})
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise TypeError("args must be a list of strings")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise TypeError("env must map names to strings")
    safe = entry.get("safe", False)
    if isinstance(safe, list):
        safe = tuple(str(s) for s in safe)
    elif not isinstance(safe, bool):
        raise TypeError("safe must be true, false or a list of tool names")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise ValueError("timeout must be a number of seconds from 0 to 600")
    return McpServerConfig(name, str(command), tuple(args), dict(env), entry.get("cwd"), str(url), safe,
                           float(timeout))


def _client(config: McpServerConfig) -> Any:
    from mcp import Client, StdioServerParameters  # heavy: anyio, httpx, pydantic models

    if config.url:
        return Client(config.url, read_timeout_seconds=config.timeout, cache=None)
    params = StdioServerParameters(command=config.command, args=list(config.args), env=config.env or None,
                                   cwd=config.cwd)
    return Client(params, read_timeout_seconds=config.timeout, cache=None)


def _run(config: McpServerConfig, what: str, operation: Any, timeout: float) -> Any:
    """operation(client) in a fresh event loop, on its own connection; one line on failure."""
    async def main() -> Any:
        async with _client(config) as client:
            return await operation(client)

    def in_loop() -> Any:
        try:
            return asyncio.run(asyncio.wait_for(main(), timeout))
        except TimeoutError:
            raise ToolFailure(f"MCP server {config.name!r} gave no answer to {what} within {timeout:g} s") from None
        except ToolFailure:
            raise
        except BaseException as e:  # noqa: BLE001 - ExceptionGroups, OSError, protocol errors
            raise ToolFailure(f"MCP server {config.name!r} failed at {what}: {_describe(e)}") from None

    return run_with_limit(f"{config.name}:{what}", in_loop, timeout + _CLEANUP_GRACE)


def _describe(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:  # anyio's task groups wrap the cause
        e = e.exceptions[0]
    return one_line(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, 200)


def hearth_name(server: str, tool: str) -> str:
    return _NAME_CHARS.sub("_", f"{server}__{tool}")[:64]


def list_server_tools(config: McpServerConfig) -> list[McpTool]:
    """The tools a server offers (ToolFailure, one line, when it cannot say)."""
    async def op(client: Any) -> Any:
        return await client.list_tools()

    listing = _run(config, "tools/list", op, config.timeout)
    tools = []
    for t in getattr(listing, "tools", None) or ():
        schema = t.input_schema if isinstance(getattr(t, "input_schema", None), dict) else {"type": "object"}
        tools.append(McpTool(config, t.name, hearth_name(config.name, t.name), t.description or t.name,
                             schema, config.is_safe(t.name)))
    return tools


def call_server_tool(tool: McpTool, arguments: dict, timeout: float | None = None) -> str:
    """The text of a call's result; ToolFailure (one line) for an error result or any failure."""
    limit = min(timeout, tool.server.timeout) if timeout else tool.server.timeout

    async def op(client: Any) -> Any:
        return await client.call_tool(tool.remote_name, arguments)

    result = _run(tool.server, f"{tool.remote_name}()", op, limit)
    text = _result_text(result)
    if getattr(result, "is_error", False):
        raise ToolFailure(f"{tool.name} failed: {one_line(text or 'the server reported an error')}")
    return clip(text)


def _result_text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        else:  # images, audio, resources: a small model cannot read them; say what came
            parts.append(f"[{kind or 'unknown'} content left out]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)

"""The chat's tools end to end: real MCP servers made with the official SDK (stdio
child processes and a Streamable HTTP server on a free port) listed and called through
Hearth's registry, and servers that hang, crash or write garbage each one line. The
loop with the real built-in model is tests/browser/test_chat_tools.py (a forced call,
approved in Chromium, its result in the reply)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import free_port, stop_process
from webui.extensions import SHIPPED_EXTENSIONS, ExtensionManager
from webui.extensions.store import ExtensionStore
from webui.runtime.embeddings import Embeddings
from webui.runtime.model_manager import ModelManager
from webui.tools.calls import ToolFailure
from webui.tools.registry import ToolRegistry
from webui.userdata.folders import SHIPPED_TOOLS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def stdio(script: str, *args: str, timeout: float, safe=False) -> dict:
    return {"command": sys.executable, "args": [str(FIXTURES / script), *args], "timeout": timeout, "safe": safe}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ToolRegistry:
    """Shipped tools plus four stdio servers: one that works and three that misbehave."""
    folder = tmp_path_factory.mktemp("tools")
    config = folder / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "good": stdio("mcp_server.py", "stdio", timeout=20, safe=["add"]),
        # Listing must succeed within the limit (a Python MCP server starts in ~2 s on 2 busy cores).
        "hang": stdio("mcp_misbehaving.py", "hang", timeout=6, safe=True),
        "crash": stdio("mcp_misbehaving.py", "crash", timeout=20),
        "garbage": stdio("mcp_misbehaving.py", "garbage", timeout=3),
        "broken": {"command": "x", "url": "http://127.0.0.1:1/mcp"},
    }}))
    registry = ToolRegistry([(SHIPPED_TOOLS, "shipped")], config)
    registry.reload()
    return registry


def test_stdio_servers_are_listed_and_misbehaving_ones_are_one_line_each(registry):
    names = registry.names()
    assert {"good__add", "good__shout", "good__fail", "hang__work", "crash__work", "calculator"} <= set(names)
    assert registry.get("good__add").safe and not registry.get("good__shout").safe
    assert registry.get("good__add").parameters["required"] == ["a", "b"]
    notices = registry.notices
    assert len(notices) == 2 and all("\n" not in n for n in notices), notices
    assert any("'garbage' gave no answer to tools/list within 3 s" in n for n in notices)
    assert any("server 'broken': give exactly one of command" in n for n in notices)


def test_a_stdio_tool_is_called_and_its_errors_are_one_line(registry):
    assert registry.get("good__add").invoke({"a": 2, "b": 40}, 20) == "42"
    with pytest.raises(ToolFailure, match="good__fail failed: ") as failed:
        registry.get("good__fail").invoke({"reason": "no"}, 20)
    assert "\n" not in str(failed.value)
    with pytest.raises(ToolFailure, match="MCP server 'crash' failed at work\\(\\): .*closed") as crashed:
        registry.get("crash__work").invoke({"text": "x"}, 20)
    assert "\n" not in str(crashed.value)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "the MCP HTTP server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the MCP HTTP server did not start"
            time.sleep(0.1)


def test_a_streamable_http_server_is_listed_and_called(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "mcp_server.py"), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        (tmp_path / "mcp.json").write_text(json.dumps(
            {"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp", "timeout": 20}}}))
        registry = ToolRegistry([], tmp_path / "mcp.json")
        assert registry.reload() == []
        assert registry.names() == ["web__add", "web__fail", "web__shout"]
        assert registry.get("web__shout").invoke({"text": "quiet"}, 20) == "QUIET"
    finally:
        stop_process(proc)
    with pytest.raises(ToolFailure, match="MCP server 'web' failed at shout\\(\\)"):
        registry.get("web__shout").invoke({"text": "gone"}, 5)


def test_a_hanging_server_is_one_line_within_the_call_limit(registry):
    started = time.perf_counter()
    with pytest.raises(ToolFailure) as hung:
        registry.get("hang__work").invoke({"text": "x"}, 2)
    assert str(hung.value) == "MCP server 'hang' gave no answer to work() within 2 s"
    assert time.perf_counter() - started < 10  # the limit, plus stopping the server


def test_the_documents_extension_offers_its_search_while_it_is_on(tmp_path):
    """The real extension, its library and the built-in MiniLM encoder; no chat model needed."""
    manager = ExtensionManager(None, None, roots=[SHIPPED_EXTENSIONS], store=ExtensionStore(None),
                               data_root=tmp_path / "extension_data", setup_timeout=60.0,
                               embeddings=Embeddings(ModelManager()))
    manager.discover()
    registry = ToolRegistry([(SHIPPED_TOOLS, "shipped")], None, manager.tools)
    assert "search_documents" not in registry.names()
    manager.enable("documents", persist=False)
    try:
        notes = tmp_path / "lighthouse.md"
        notes.write_text("# Lighthouse keeper's notes\n\nThe lighthouse on Maple Island was built in 1887 "
                         "by the engineer Clara Voss.\n")
        assert manager.get("documents").module.add_files([notes]) == ["✅ lighthouse.md: 1 passage"]
        tool = registry.get("search_documents")
        assert tool.safe and tool.source == "extension:documents"
        assert tool.parameters["required"] == ["query"]
        found = tool.invoke({"query": "Who built the lighthouse?"}, 20)
        assert found.startswith("[lighthouse.md, lines 1-3]") and "Clara Voss" in found
    finally:
        manager.disable("documents", persist=False)
    assert "search_documents" not in registry.names()

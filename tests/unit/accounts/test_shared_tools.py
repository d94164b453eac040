"""The Python tools in user_data/tools/ and the MCP servers in user_data/mcp.json are
shared by design: they run code in the server process, for every user. So no UI event
and no API route may change them; only someone with the server's files (an admin at the
shell) does. These checks read Hearth's source: a path that wrote them would have to
name them, or write from the tools package."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Who may name the shared tool folder and MCP file: where they are (folders.py), who
# reads them (hearth.py builds the registry from them) and the migration, which leaves them.
ALLOWED = {"webui/userdata/folders.py", "webui/hearth.py", "webui/accounts/migration.py"}
WRITES = {"write_text", "write_bytes", "write_text_atomic", "write_bytes_atomic", "mkdir", "unlink", "touch",
          "rmtree"}
FILE_MODULES = {"os", "shutil"}  # os.replace writes a file; dataclasses.replace does not
FILE_CALLS = {"replace", "rename", "remove", "rmdir", "makedirs", "copy", "copyfile", "copy2", "copytree", "move"}


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_only_the_facade_names_the_shared_tools_and_mcp_file():
    named = set()
    for path in sources("webui", "extensions"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and (
                    node.attr == "mcp_file"
                    or (node.attr == "tools" and isinstance(node.value, ast.Attribute)
                        and node.value.attr == "user_data")):
                named.add(path.relative_to(ROOT).as_posix())
    assert named and named <= ALLOWED, named - ALLOWED


def test_the_tools_package_reads_its_files_and_never_writes_them():
    for path in sources("webui/tools"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                module = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
                writes = name in WRITES or (module in FILE_MODULES and name in FILE_CALLS)
                assert not writes, f"{path.name}:{node.lineno} calls {module or '...'}.{name}"
                if name == "open" and len(node.args) > 1:
                    mode = node.args[1]
                    assert isinstance(mode, ast.Constant) and "r" in mode.value, f"{path.name}:{node.lineno}"

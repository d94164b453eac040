"""The house rules, read from the source: arrows point one way, core imports no web
framework, no import cycles (function-local and TYPE_CHECKING imports included), and
Hearth's own modules are imported at the top of a module, never hidden in a function.

The checker reads files with `ast`, so it sees every import whether or not it runs.
Its own tests at the bottom build small trees that break each rule, so a checker that
stopped seeing a violation would fail here too.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lower layers never import higher ones; a package may import its own modules and
# anything of a lower rank. Packages of equal rank are siblings and import neither.
LAYERS: dict[str, int] = {
    "loaders": 0,
    "webui": 1,  # the package itself: __version__ only
    "webui.errors": 1,
    "webui.userdata": 1,
    "webui.accounts": 2,  # users, roles, keys, sessions, whose request runs: below chat and extensions
    "webui.runtime": 2,
    "webui.modelfiles": 2,
    "webui.characters": 2,
    "webui.chat": 3,
    "webui.extensions": 3,
    "webui.config": 4,
    "webui.tools": 4,  # the chat's tools: uses chat/tools.py's requests, used by the facade
    "webui.hearth": 5,
    "webui.api": 6,
    "webui.ui": 6,
    "webui.app": 7,
    "webui.__main__": 8,
}
# Only the faces and the composition root may import a web framework.
FACES = ("webui.api", "webui.ui", "webui.app")
WEB_FRAMEWORKS = ("gradio", "fastapi", "starlette", "uvicorn")
# The composition root may import the faces lazily: they import Gradio and FastAPI at
# their top, which takes seconds that `hearth --help` must not pay.
LAZY_FACES_FROM = "webui.app"
# The one module of webui that third-party extensions may import.
EXTENSION_CONTRACT = "webui.extensions.api"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or name, for "from x import y")
    line: int
    nested: bool  # inside a function (a lazy import)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path) -> list[Import]:
    module = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[Import] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(module, a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", child)
                for a in child.names:
                    # "from webui.chat import prompts" names a module; keep the deepest.
                    out.append(Import(module, f"{target}.{a.name}" if a.name != "*" else target,
                                      child.lineno, nested))
            visit(child, inner)

    visit(tree, False)
    return out


def internal_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def owning_module(target: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `target` (a module or module.name) lies in."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def layer_of(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return cycles


def violations(root: Path, packages: tuple[str, ...] = ("loaders", "webui")) -> list[str]:
    modules = internal_modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems: list[str] = []
    for module, path in modules.items():
        where = f"{path.relative_to(root)}"
        seen: set[tuple[int, str]] = set()
        source_layer = layer_of(module)
        if source_layer is None:
            problems.append(f"{where}: {module} is in no layer (add it to LAYERS)")
            continue
        for imp in imports_of(path, root):
            top = imp.target.split(".")[0]
            if top in WEB_FRAMEWORKS and not module.startswith(FACES):
                problems.append(f"{where}:{imp.line}: core module {module} imports {top}")
            target = owning_module(imp.target, modules)
            if target is None or target == module or (imp.line, target) in seen:
                continue
            seen.add((imp.line, target))
            graph[module].add(target)
            lazy_face = module.startswith(LAZY_FACES_FROM) and target.startswith(FACES) \
                and not target.startswith(LAZY_FACES_FROM)
            if imp.nested and not lazy_face:
                problems.append(f"{where}:{imp.line}: {module} imports {target} inside a function "
                                "(only heavy third-party libraries may be imported lazily)")
            target_layer = layer_of(target)
            if target_layer is None:
                continue
            same_package = source_layer[0] == target_layer[0]
            if not same_package and target_layer[1] >= source_layer[1]:
                problems.append(f"{where}:{imp.line}: {module} (layer {source_layer[0]}) imports "
                                f"{target} (layer {target_layer[0]}), which is not below it")
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_the_house_keeps_its_rules():
    problems = violations(ROOT)
    assert not problems, "\n".join(problems)


def test_every_webui_package_has_a_layer():
    packages = {module_name(p.parent, ROOT) for p in (ROOT / "webui").glob("*/__init__.py")}
    modules = {module_name(p, ROOT) for p in (ROOT / "webui").glob("*.py")}
    missing = sorted(m for m in packages | modules if m not in LAYERS and m != "webui")
    assert not missing, f"no layer declared for {missing}"


def test_shipped_extensions_use_the_extension_contract_only():
    modules = internal_modules(ROOT, ("webui",))
    for path in sorted((ROOT / "extensions").rglob("*.py")):
        for imp in imports_of(path, ROOT):
            target = owning_module(imp.target, modules)
            if target is not None:
                assert target == EXTENSION_CONTRACT, f"{path.relative_to(ROOT)}:{imp.line} imports {target}"


# --- the checker's own tests: each rule broken once in a small tree --------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("loaders", "webui"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


def test_checker_sees_an_upward_import(tmp_path):
    root = _tree(tmp_path, {"webui/runtime/__init__.py": "", "webui/runtime/engine.py": "import webui.hearth\n",
                            "webui/hearth.py": ""})
    assert any("not below it" in p for p in violations(root))


def test_checker_sees_a_cycle_hidden_in_type_checking_and_functions(tmp_path):
    root = _tree(tmp_path, {
        "webui/chat/__init__.py": "",
        "webui/chat/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from webui.chat.b import B\n",
        "webui/chat/b.py": "def f():\n    from webui.chat import a\n",
    })
    problems = violations(root)
    assert any(p.startswith("import cycle: webui.chat.a -> webui.chat.b") for p in problems)
    assert any("inside a function" in p for p in problems)


def test_checker_sees_a_web_framework_in_core_and_loaders_reaching_up(tmp_path):
    root = _tree(tmp_path, {"webui/chat/__init__.py": "import gradio\n",
                            "loaders/llama.py": "from webui.chat import x\n"})
    problems = violations(root)
    assert any("imports gradio" in p for p in problems)
    assert any("loaders.llama (layer loaders) imports webui.chat" in p for p in problems)


def test_checker_allows_what_the_faces_may_do(tmp_path):
    root = _tree(tmp_path, {"webui/ui/__init__.py": "import gradio\nfrom webui import hearth\n",
                            "webui/hearth.py": "from webui.chat import prompts\ndef f():\n    import torch\n",
                            "webui/chat/__init__.py": "", "webui/chat/prompts.py": "from . import templates\n",
                            "webui/chat/templates.py": "import jinja2\n"})
    assert violations(root) == []

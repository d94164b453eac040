"""Which model answers: OpenAI's /v1/models, and Hearth's load/unload/info (named
as text-generation-webui names them, so scripts written for it keep working)."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

import loaders
from loaders.base import LoadError
from loaders.fields import to_dict
from loaders.lora import MAX_ADAPTERS
from webui.api.auth import require_admin
from webui.api.deps import get_hearth
from webui.api.errors import APIError
from webui.api.schemas import (
    ErrorResponse,
    LoadModelRequest,
    ModelCard,
    ModelChoiceCard,
    ModelChoiceList,
    ModelInfo,
    ModelList,
)
from webui.hearth import Hearth

_SECRET_WORDS = ("key", "token", "password", "secret")


def _redacted(options: dict) -> dict:
    return {k: ("***" if v and any(w in k for w in _SECRET_WORDS) else v) for k, v in options.items()}


def model_info(hearth) -> ModelInfo:
    loaded = hearth.models.current
    queue = hearth.engine.queue_length
    if loaded is None:
        return ModelInfo(model_name=None, queue_length=queue)
    template = hearth.chat_template()
    return ModelInfo(model_name=loaded.name, loader=loaded.loader, path=str(loaded.path),
                     options=_redacted(to_dict(loaded.options)),
                     context_length=loaded.model.context_length,
                     supported_params=sorted(loaded.model.supported_params),
                     chat_template=template.name if template else None,
                     chat_template_reason=template.reason if template else None, queue_length=queue)


router = APIRouter()
# Every /v1/internal/model/ route: only an admin's key loads, unloads or lists models.
ADMIN_ONLY = [Depends(require_admin)]


@router.get("/v1/models", response_model=ModelList, tags=["OpenAI-compatible"],
            summary="The loaded model (Hearth answers every request with it)")
def list_models(hearth: Hearth = Depends(get_hearth)) -> ModelList:
    name = _answering_model(hearth)
    return ModelList(data=[ModelCard(id=name)] if name else [])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, tags=["OpenAI-compatible"],
            summary="One model, if it is the loaded one",
            responses={404: {"model": ErrorResponse, "description": "That model is not the loaded one."}})
def get_model(model_id: str, hearth: Hearth = Depends(get_hearth)) -> ModelCard:
    name = _answering_model(hearth)
    if name is None or model_id != name:
        raise APIError(404, f"model {model_id!r} is not loaded", param="model", code="model_not_found")
    return ModelCard(id=name)


def _answering_model(hearth: Hearth) -> str | None:
    """The model a request gets: the loaded one, or the one unloaded for being idle
    (--idle-unload), which the next request loads again; asking does not wake it."""
    loaded, parked = hearth.models.current, hearth.models.parked
    return loaded.name if loaded else parked.name if parked else None


@router.get("/v1/internal/model/info", dependencies=ADMIN_ONLY, response_model=ModelInfo, tags=["Models"],
            summary="The loaded model, its options and the queue")
def info(hearth: Hearth = Depends(get_hearth)) -> ModelInfo:
    return model_info(hearth)


@router.get("/v1/internal/model/list", dependencies=ADMIN_ONLY, response_model=ModelChoiceList, tags=["Models"],
            summary="Models that can be loaded, and the loaders")
def list_choices(hearth: Hearth = Depends(get_hearth)) -> ModelChoiceList:
    return ModelChoiceList(models=[ModelChoiceCard(name=c.label, loader=c.loader)
                                   for c in hearth.model_choices()], loaders=loaders.names())


@router.post("/v1/internal/model/load", dependencies=ADMIN_ONLY, response_model=ModelInfo, tags=["Models"],
             summary="Load a model (waits for the reply being generated, if any)")
async def load(body: LoadModelRequest, hearth: Hearth = Depends(get_hearth)) -> ModelInfo:
    try:
        # Loading takes seconds and waits for the running generation: off the loop.
        await anyio.to_thread.run_sync(hearth.load_model, body.model_name or None, body.loader, body.args)
    except LoadError as e:
        raise APIError(400, str(e), param="model_name", code="load_failed") from None
    except (OSError, ValueError) as e:  # a path the OS refuses (a NUL byte, too long, ...)
        raise APIError(400, f"cannot open {body.model_name!r}: {e}", param="model_name",
                       code="load_failed") from None
    return model_info(hearth)


class SetLoraRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora: list[str] = Field(default_factory=list, max_length=MAX_ADAPTERS, description=(
        "The LoRA adapters the loaded model applies from now on, each PATH or PATH:SCALE (a path or a name in "
        "models/; scale -4 to 4, default 1): GGUF LoRA files on llama.cpp, PEFT adapter folders on Transformers. "
        "[] removes them all."))


@router.post("/v1/internal/model/lora", dependencies=ADMIN_ONLY, response_model=ModelInfo, tags=["Models"],
             summary="Set the loaded model's LoRA adapters without reloading it (waits for the reply being "
                     "generated, if any)")
async def set_lora(body: SetLoraRequest, hearth: Hearth = Depends(get_hearth)) -> ModelInfo:
    try:
        await anyio.to_thread.run_sync(hearth.set_adapters, body.lora)
    except (OSError, ValueError) as e:  # a path the OS refuses (a NUL byte, too long, ...)
        reason = getattr(e, "strerror", None) or type(e).__name__  # never the path itself
        raise APIError(400, f"cannot open a LoRA adapter ({reason})", param="lora", code="invalid_value") from None
    return model_info(hearth)


@router.post("/v1/internal/model/unload", dependencies=ADMIN_ONLY, response_model=ModelInfo, tags=["Models"],
             summary="Unload the model and free its memory")
async def unload(hearth: Hearth = Depends(get_hearth)) -> ModelInfo:
    await anyio.to_thread.run_sync(hearth.unload_model)
    return model_info(hearth)

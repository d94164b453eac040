"""The API's typed request and response bodies (OpenAI's shapes).

The sampler fields are generated from `GenerationParams` (its help text, bounds and
choices), so a sampler added there appears here, in /docs and in validation without
being written twice. OpenAI's own names map onto Hearth's (`max_tokens` is
`max_new_tokens`); `to_generation_params` is the one place that mapping lives. Each
loader's options are documented the same way, from its `Options` dataclass.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, create_model, field_validator

import loaders
from loaders.fields import SettingSpec, describe
from loaders.logprobs import MAX_TOP_LOGPROBS
from loaders.params import GenerationParams

# OpenAI's name -> GenerationParams' name, where they differ.
OPENAI_NAMES = {"max_tokens": "max_new_tokens"}
_HEARTH_TO_OPENAI = {v: k for k, v in OPENAI_NAMES.items()}
_PY_TYPES = {int: int, float: float, bool: bool, str: str, tuple: list[str]}


def setting_field(spec: SettingSpec, *, unset_is_default: bool = True) -> tuple[Any, Any]:
    """(annotation, Field) for one declared setting: its help, bounds and choices.

    unset_is_default: the field is optional and None means "the declared default" (a
    request's samplers); otherwise the field shows the declared default itself."""
    if spec.name == "stop":  # OpenAI allows one string or a list
        annotation: Any = Union[str, list[str]]  # noqa: UP007  (built at run time, see below)
    elif spec.choices is not None:
        annotation = Literal[spec.choices]  # type: ignore[valid-type]
    else:
        annotation = _PY_TYPES[spec.type]
    bounds: dict[str, Any] = {}
    if spec.minimum is not None:
        bounds["gt" if spec.exclusive_minimum else "ge"] = spec.minimum
    if spec.maximum is not None:
        bounds["le"] = spec.maximum
    if spec.max_length is not None:
        bounds["max_length"] = spec.max_length
    if spec.type is float:
        bounds["allow_inf_nan"] = False
    default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    if unset_is_default:
        # Optional[], not `| None`: the annotation is built at run time and may be a typing
        # form (a Literal of a tuple) that has no `|`.
        field = Field(None, description=f"{spec.help} Default: {default!r}.", **bounds)
        return Optional[annotation], field  # noqa: UP045
    return annotation, Field(default, description=spec.help, **bounds)


SAMPLER_FIELDS = {_HEARTH_TO_OPENAI.get(s.name, s.name): setting_field(s) for s in describe(GenerationParams)}


def _refuse_if_set(cls, value, info):
    """Validator for a field accepted only empty (OpenAI clients send some as null)."""
    if value:
        raise ValueError(f"{info.field_name} is not supported")
    return value


# OpenAI's `user` and Anthropic's metadata.user_id: an opaque id (a hash, an e-mail), kept short.
END_USER_CHARS = 256


class _Strict(BaseModel):
    # A misspelt sampler that is silently ignored is an error nobody ever finds.
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = Field(False, description="Send a last chunk with the token counts.")


class _OpenAICommon(_Strict):
    model: str | None = Field(None, description="Ignored: Hearth answers with the loaded model "
                                 "(load another with /v1/internal/model/load).")
    stream: bool = Field(False, description="Send the reply as server-sent events, a chunk at a time.")
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1, le=1, description="Replies per request: only 1 is supported.")
    user: str | None = Field(None, max_length=END_USER_CHARS, description=(
        "The end user this request is for (an app serving many people with one key): the generation "
        "queue takes turns between a key's end users as it does between Hearth's users, within that "
        "key's user's turns and per-user limit (--max-queue-per-user). Only an owner in the queue: the "
        "request still runs as the key's user, with their role and data."))
    logit_bias: dict[str, float] | None = Field(None, description="Not supported: must be empty.")

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value):
        if value:
            raise ValueError("logit_bias is not supported")
        return value


_CompletionBase = create_model("_CompletionBase", __base__=_OpenAICommon, **SAMPLER_FIELDS)


class CompletionRequest(_CompletionBase):
    prompt: str = Field(..., min_length=1, description="The text to continue.")
    echo: bool = Field(False, description="Put the prompt before the reply.")
    suffix: str | None = Field(None, description="Not supported: must be empty.")
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="Log-probabilities of the "
                                 "reply's tokens (with echo, the prompt's too), with this many likeliest "
                                 "alternatives each (llama.cpp).")
    max_tokens: int | None = Field(None, ge=0, description="Most tokens to generate; 0 with echo scores the "
                                   "prompt without generating.")
    best_of: int | None = Field(1, ge=1, le=1, description="Only 1 is supported.")
    response_format: dict[str, Any] | None = Field(None, description="As for chat completions: {\"type\": "
                                                   "\"json_object\"} or {\"type\": \"json_schema\", ...}, "
                                                   "enforced by a grammar (llama.cpp), or handed on as it came "
                                                   "to a remote vLLM or llama.cpp server.")

    _unsupported = field_validator("suffix")(_refuse_if_set)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FileData(_Strict):
    filename: str | None = Field(None, description="The file's name; its suffix tells Markdown, code or PDF.")
    file_data: str | None = Field(None, description="The file's bytes: a data: URL "
                                  "(data:application/pdf;base64,...) or plain base64.")
    file_id: str | None = Field(None, description="Not supported: Hearth keeps no uploaded files; send file_data.")


class FilePart(_Strict):
    """A text, Markdown, code or PDF file in a user message: its text goes into that
    message quoted as untrusted data, as the Chat tab's attachments do."""
    type: Literal["file"]
    file: FileData


class FunctionCall(_Strict):
    name: str
    arguments: str = Field(description="The arguments as a JSON text of an object.")


class ToolCallMessagePart(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | FilePart] | None = ""
    name: str | None = None
    tool_calls: list[ToolCallMessagePart] | None = Field(None, description="An assistant's calls of tools.")
    tool_call_id: str | None = Field(None, description="With role tool: the call this message answers.")
    reasoning_content: str | None = Field(None, description="An assistant's thinking, as a reply gave it: "
                                          "passed to the template, which drops it unless it renders earlier thinking.")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if isinstance(p, TextPart))  # files: api/file_parts.py
        return self.content or ""


class ChatCompletionRequest(_CompletionBase):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens.")
    logprobs: bool | None = Field(None, description="Log-probabilities of the reply's tokens (llama.cpp).")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="With logprobs: this many "
                                     "likeliest alternatives per token.")
    # Checked by the core (webui/chat/tools.py, structured.py) in one line each.
    tools: list[dict[str, Any]] | None = Field(None, description="Functions the model may call: "
                                               "{\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}.")
    tool_choice: str | dict[str, Any] | None = Field(None, description="none, auto, required, or {\"type\": "
                                                     "\"function\", \"function\": {\"name\": ...}}; required and a "
                                                     "named function constrain the reply with a grammar (llama.cpp); "
                                                     "auto leaves text free and, once the model begins a call, "
                                                     "forces arguments matching the schema (server flag "
                                                     "--tool-grammar auto, the default; required-only: no "
                                                     "grammar for auto).")
    parallel_tool_calls: bool | None = Field(None, description="Allow several calls in one reply (default true).")
    response_format: dict[str, Any] | None = Field(None, description="{\"type\": \"text\"}, {\"type\": "
                                                   "\"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": "
                                                   "{\"name\", \"schema\"}}: enforced by a grammar (llama.cpp).")
    enable_thinking: bool | None = Field(None, description="Switch a reasoning model's thinking on or off, for "
                                         "templates that read enable_thinking (Qwen3 and the like); unset: the "
                                         "template's default. The thinking comes back as reasoning_content.")
    chat_template_kwargs: dict[str, Any] | None = Field(None, description="Variables for the chat template, as "
                                                        "llama-server and vLLM take them; only enable_thinking "
                                                        "is read.")



def to_generation_params(request: BaseModel) -> GenerationParams:
    """The request's sampler fields as GenerationParams; unset fields keep Hearth's
    defaults. Raises SettingError (one line) for a value GenerationParams refuses."""
    values = {}
    for name in SAMPLER_FIELDS:
        value = getattr(request, name)
        if value is not None:
            values[OPENAI_NAMES.get(name, name)] = value
    if getattr(request, "max_completion_tokens", None) is not None:
        values["max_new_tokens"] = request.max_completion_tokens
    return GenerationParams.from_mapping(values)


# --- responses -------------------------------------------------------------------
class CompletionTokensDetails(BaseModel):
    # OpenAI's names for predicted-output tokens; here, speculative decoding's drafts.
    accepted_prediction_tokens: int
    rejected_prediction_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = Field(
        None, description="With speculative decoding on: drafted tokens the model kept and rejected.")


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallMessagePart] | None = None
    reasoning_content: str | None = Field(None, description="A reasoning model's thinking (the text between "
                                          "its template's markers, such as <think>...</think>), apart from content; "
                                          "streamed in deltas of its own. Absent when the reply has none.")


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "hearth"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def loader_options_model(name: str) -> type[BaseModel]:
    """A loader's `Options` as a schema for /docs. Documentation only: the values are
    checked by `build()` when the model loads, so an error reads the same from the
    API, the UI and the command line."""
    options = loaders.get(name).Options
    fields = {spec.name: setting_field(spec, unset_is_default=False) for spec in describe(options)}
    return create_model(options.__name__, __base__=_Strict, __doc__=f"Options of the {name} loader (with "
                        f"\"loader\": \"{name}\"); any left out keep their default.", **fields)


LOADER_OPTIONS: dict[str, type[BaseModel]] = {name: loader_options_model(name) for name in loaders.names()}


class LoadModelRequest(_Strict):
    model_name: str = Field("", description="A name from /v1/internal/model/list, a path, or a remote "
                            "engine's URL; empty = the built-in model.")
    loader: str | None = Field(None, description="Backend (default: detected from the file or URL).")
    # Documented as each loader's options; passed on as the object it is (the loader
    # is known only from `loader` or the file), and checked by build() when loading.
    # Union[] over a tuple built at run time: `|` cannot spell that.
    args: SkipValidation[Optional[Union[tuple(LOADER_OPTIONS.values())]]] = Field(  # type: ignore[valid-type]  # noqa: UP007, UP045
        None, description="The loader's options, e.g. {\"n_ctx\": 4096}: the fields of one of the loaders' "
        "option objects.")

    @field_validator("args")
    @classmethod
    def _args_are_an_object(cls, value):
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be an object of the loader's options, e.g. {\"n_ctx\": 4096}")
        return value


class ModelInfo(BaseModel):
    model_name: str | None = Field(description="The loaded model, or null when none is.")
    loader: str | None = None
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="Load options; keys are hidden.")
    context_length: int | None = None
    supported_params: list[str] = Field(default_factory=list)
    chat_template: str | None = Field(None, description="The template chats use when they ask for the model's own: "
                                      "\"Model's own\", or the built-in picked for a model that ships none.")
    chat_template_reason: str | None = Field(None, description="Why that template.")
    queue_length: int = 0


class ModelChoiceCard(BaseModel):
    name: str
    loader: str | None


class ModelChoiceList(BaseModel):
    models: list[ModelChoiceCard]
    loaders: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
